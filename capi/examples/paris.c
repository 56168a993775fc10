/*
 * paris.c: generates from SmolLM2 through lode's C interface and checks
 * what it gets, so CI proves the C ABI end to end.
 *
 *   paris MODEL [DRAM_BUDGET [DEVICE]]
 *
 * MODEL is a GGUF (held in DRAM) or a lode image (streamed under
 * DRAM_BUDGET, e.g. 33%, from DEVICE, e.g. fake:ufs40). Two contexts share
 * the session: the first generates after "The capital of France is" and
 * must begin with " Paris"; the second must generate the same text while
 * the first holds its own KV cache; the first then continues. Bad calls
 * must fail with the documented codes. Exits 0 when all of it holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lode_runtime.h"

_Static_assert(sizeof(struct lode_rt_options) == 48, "lode_rt_options layout");
_Static_assert(sizeof(struct lode_rt_generate) == 32, "lode_rt_generate layout");
_Static_assert(sizeof(struct lode_rt_stats) == 72, "lode_rt_stats layout");

struct text {
    char bytes[1024];
    size_t len;
};

static int on_token(void *user, uint32_t id, const char *piece, size_t len) {
    struct text *t = (struct text *)user;
    (void)id;
    if (t->len + len < sizeof t->bytes) {
        memcpy(t->bytes + t->len, piece, len);
        t->len += len;
        t->bytes[t->len] = '\0';
    }
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static int failed(const char *what, int rc) {
    char msg[512];
    lode_rt_last_error(msg, sizeof msg);
    fprintf(stderr, "paris: %s: %s (%d): %s\n", what, lode_rt_strerror(rc), rc, msg);
    return 1;
}

static int expect(const char *what, int rc, int want) {
    if (rc != want) {
        fprintf(stderr, "paris: %s returned %d (%s), expected %d\n", what, rc,
                lode_rt_strerror(rc), want);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: paris MODEL [DRAM_BUDGET [DEVICE]]\n");
        return 2;
    }
    struct lode_rt_options opts;
    memset(&opts, 0, sizeof opts);
    opts.size = sizeof opts;
    opts.max_context = 64;
    opts.contexts = 2;
    opts.threads = 2;
    opts.dram_budget = argc > 2 ? argv[2] : NULL;
    opts.device = argc > 3 ? argv[3] : NULL;

    lode_rt_session session = 0;
    int rc = lode_rt_session_open(argv[1], &opts, &session);
    if (rc != LODE_RT_OK) return failed("open", rc);
    lode_rt_context first = 0, second = 0;
    if ((rc = lode_rt_context_new(session, &first)) != LODE_RT_OK) return failed("context", rc);
    if ((rc = lode_rt_context_new(session, &second)) != LODE_RT_OK) return failed("context", rc);

    struct lode_rt_generate gen;
    memset(&gen, 0, sizeof gen);
    gen.size = sizeof gen;
    gen.max_tokens = 8;
    struct lode_rt_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.size = sizeof stats;

    struct text a = {{0}, 0}, b = {{0}, 0}, c = {{0}, 0};
    const char *prompt = "The capital of France is";
    rc = lode_rt_generate(session, first, prompt, &gen, on_token, &a, &stats);
    if (rc != LODE_RT_OK) return failed("generate", rc);
    printf("\n[paris] %u prompt tokens, %u generated, %.1f tok/s decode, arena peak %llu of %llu "
           "bytes, %.0f bytes read a token\n",
           stats.prompt_tokens, stats.generated_tokens, stats.decode_tokens_per_s,
           (unsigned long long)stats.peak_arena_bytes, (unsigned long long)stats.arena_bytes,
           stats.bytes_read_per_token);
    if (strncmp(a.bytes, " Paris", 6) != 0) {
        fprintf(stderr, "paris: expected \" Paris...\", got \"%s\"\n", a.bytes);
        return 1;
    }
    rc = lode_rt_generate(session, second, prompt, &gen, on_token, &b, NULL);
    if (rc != LODE_RT_OK) return failed("generate (second context)", rc);
    printf("\n");
    if (strcmp(a.bytes, b.bytes) != 0) {
        fprintf(stderr, "paris: the second context generated \"%s\", the first \"%s\"\n", b.bytes,
                a.bytes);
        return 1;
    }
    /* The first conversation goes on where it stopped. */
    rc = lode_rt_generate(session, first, "", &gen, on_token, &c, &stats);
    if (rc != LODE_RT_OK) return failed("generate (continued)", rc);
    printf("\n[paris] the first context now holds %u positions\n", stats.context_tokens);
    if (stats.context_tokens < 5 + 8 + 7) {
        fprintf(stderr, "paris: the continued context holds only %u positions\n",
                stats.context_tokens);
        return 1;
    }

    /* Mistakes are codes, not crashes. */
    int bad = 0;
    bad |= expect("generate on a freed context",
                  (lode_rt_context_free(session, second),
                   lode_rt_generate(session, second, prompt, &gen, NULL, NULL, NULL)),
                  LODE_RT_ERR_BAD_HANDLE);
    bad |= expect("generate with a NULL prompt",
                  lode_rt_generate(session, first, NULL, &gen, NULL, NULL, NULL), LODE_RT_ERR_NULL);
    bad |= expect("open a missing file", lode_rt_session_open("/nonexistent.gguf", NULL, &session),
                  LODE_RT_ERR_IO);
    struct lode_rt_options wrong = opts;
    wrong.size = 4;
    lode_rt_session unused = 0;
    bad |= expect("open with a wrong size field", lode_rt_session_open(argv[1], &wrong, &unused),
                  LODE_RT_ERR_INVALID);
    bad |= expect("close", lode_rt_session_close(session), LODE_RT_OK);
    bad |= expect("close twice", lode_rt_session_close(session), LODE_RT_ERR_BAD_HANDLE);
    if (bad) return 1;
    printf("[paris] ok\n");
    return 0;
}
