/*
 * service.c: three conversations through lode's C service interface,
 * under a DRAM budget that holds one of them, so CI proves the service's
 * create / call / delete end to end.
 *
 *   service MODEL
 *
 * Each conversation opens with a different history; the plan holds one
 * conversation's KV at a time, so every switch parks the others (exactly,
 * kv_bits < 0) into a fake swap area and restores the called one. The
 * second turns must equal what one conversation alone generates, and
 * bad calls must fail with the documented codes. Exits 0 when all of it
 * holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_runtime.h"

_Static_assert(sizeof(struct lode_rt_service_options) == 32, "lode_rt_service_options layout");

struct text {
    char bytes[512];
    size_t len;
};

static int on_piece(void *user, uint32_t id, const char *piece, size_t len) {
    struct text *t = (struct text *)user;
    (void)id;
    if (t->len + len < sizeof t->bytes) {
        memcpy(t->bytes + t->len, piece, len);
        t->len += len;
        t->bytes[t->len] = '\0';
    }
    return 0;
}

static int failed(const char *what, int rc) {
    char msg[512];
    lode_rt_last_error(msg, sizeof msg);
    fprintf(stderr, "service: %s: %s (%d): %s\n", what, lode_rt_strerror(rc), rc, msg);
    return 1;
}

static const char *history[3] = {
    "Paris has been a centre of finance, diplomacy, commerce, fashion and science for "
    "centuries. The capital of France is",
    "The old sailor told the children a story about the sea and the storms he had seen. "
    "Once upon a time",
    "# Compute Fibonacci numbers recursively, with a cache for the values seen so far.\n"
    "def fib(n):",
};
static const char *next[3] = {" The river", " there lived", "\n    return"};

/* Opens a service; `alone` gives it room for all three conversations. */
static int open_service(const char *model, int alone, lode_rt_service *s) {
    struct lode_rt_options opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.max_context = 128;
    opts.contexts = alone ? 3 : 1;
    opts.threads = 2;
    struct lode_rt_service_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.max_contexts = 4;
    so.kv_bits = -1; /* exact: the texts must match */
    so.swap = alone ? NULL : "fake:ufs40";
    so.swap_size = 64u << 20;
    return lode_rt_service_open(model, &opts, &so, s);
}

/* Both turns of the three conversations, interleaved, into `out`. */
static int run(lode_rt_service s, struct text out[6]) {
    lode_rt_context c[3];
    struct lode_rt_generate gen;
    memset(&gen, 0, sizeof gen);
    gen.size = sizeof gen;
    gen.max_tokens = 12;
    for (int i = 0; i < 3; i++) {
        int rc = lode_rt_service_context_new(s, NULL, &c[i]);
        if (rc != LODE_RT_OK) return failed("context", rc);
    }
    for (int turn = 0; turn < 2; turn++) {
        for (int i = 0; i < 3; i++) {
            const char *in = turn == 0 ? history[i] : next[i];
            struct text *t = &out[turn * 3 + i];
            int rc = lode_rt_service_call(s, c[i], in, &gen, on_piece, t, NULL);
            if (rc != LODE_RT_OK) return failed("call", rc);
        }
    }
    for (int i = 0; i < 3; i++) {
        int rc = lode_rt_service_context_delete(s, c[i]);
        if (rc != LODE_RT_OK) return failed("delete", rc);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: service MODEL\n");
        return 2;
    }
    lode_rt_service all = 0, one = 0;
    int rc = open_service(argv[1], 1, &all);
    if (rc != LODE_RT_OK) return failed("open (room for all)", rc);
    rc = open_service(argv[1], 0, &one);
    if (rc != LODE_RT_OK) return failed("open (room for one)", rc);
    struct text want[6], got[6];
    memset(want, 0, sizeof want);
    memset(got, 0, sizeof got);
    if (run(all, want) || run(one, got)) return 1;
    for (int i = 0; i < 6; i++) {
        printf("[service] %d: \"%s\"\n", i, got[i].bytes);
        if (strcmp(want[i].bytes, got[i].bytes) != 0) {
            fprintf(stderr, "service: turn %d gave \"%s\" through one context's room, \"%s\" with "
                            "room for all\n", i, got[i].bytes, want[i].bytes);
            return 1;
        }
    }
    int bad = 0;
    lode_rt_context gone = 12345;
    bad |= lode_rt_service_call(one, gone, "x", NULL, NULL, NULL, NULL) != LODE_RT_ERR_BAD_HANDLE;
    bad |= lode_rt_service_call(one, gone, NULL, NULL, NULL, NULL, NULL) != LODE_RT_ERR_NULL;
    bad |= lode_rt_service_close(all) != LODE_RT_OK;
    bad |= lode_rt_service_close(one) != LODE_RT_OK;
    bad |= lode_rt_service_close(one) != LODE_RT_ERR_BAD_HANDLE;
    if (bad) {
        fprintf(stderr, "service: a bad call did not give its documented code\n");
        return 1;
    }
    printf("[service] ok\n");
    return 0;
}
