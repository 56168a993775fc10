/*
 * lode_runtime.h: the C interface of lode's runtime (crate lode-capi).
 *
 * Open a model (a GGUF held in DRAM, or a lode image streamed from flash
 * under a DRAM budget) as a session, make conversations (contexts) in it,
 * feed each a prompt and receive the generated tokens through a callback,
 * then read what the generation measured. Link liblode_capi.a (with
 * -lpthread -ldl -lm) or liblode_capi.so.
 *
 * Rules for every function:
 * - It returns LODE_RT_OK (0) or a negative LODE_RT_ERR_* code;
 *   lode_rt_strerror() names a code and lode_rt_last_error() copies the
 *   calling thread's message of its last failure. No function aborts or
 *   unwinds into the caller.
 * - A NULL pointer where one is required is LODE_RT_ERR_NULL. Strings are
 *   NUL-terminated UTF-8. Structures start with a `size` field that must
 *   be sizeof the structure as this header declares it.
 * - Sessions and contexts are numbers, never reused: a closed or unknown
 *   one is LODE_RT_ERR_BAD_HANDLE, never a crash. 0 is never valid.
 *   Closing a session frees its contexts.
 * - Every function may be called from any thread; calls on one session
 *   are serialised (a session computes one token at a time).
 */
#ifndef LODE_RUNTIME_H
#define LODE_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LODE_RT_OK 0
#define LODE_RT_ERR_NULL (-1)          /* a required pointer was NULL */
#define LODE_RT_ERR_BAD_HANDLE (-2)    /* not an open session or context */
#define LODE_RT_ERR_INVALID (-3)       /* an option out of range, bad UTF-8, a wrong size field */
#define LODE_RT_ERR_IO (-4)            /* a file could not be read */
#define LODE_RT_ERR_BAD_MODEL (-5)     /* not a model lode can run, or corrupt data */
#define LODE_RT_ERR_NO_MEMORY (-6)     /* the DRAM budget or the arena is too small */
#define LODE_RT_ERR_DEVICE (-7)        /* the flash device failed a read */
#define LODE_RT_ERR_BAD_PROMPT (-8)    /* empty, or longer than the context's room */
#define LODE_RT_ERR_CONTEXT_FULL (-9)  /* the context has no room left */
#define LODE_RT_ERR_PANIC (-10)        /* an internal bug, caught at the boundary */
#define LODE_RT_ERR_OTHER (-11)

/* lode_rt_options.flags */
#define LODE_RT_NO_VERIFY 1u      /* skip checking an image's data against its CRCs */
#define LODE_RT_NO_NEURON_CACHE 2u /* sparse runs without the neuron cache */

/* lode_rt_stats.stop */
#define LODE_RT_STOP_LENGTH 0  /* max_tokens were generated */
#define LODE_RT_STOP_EOS 1     /* the model ended its turn */
#define LODE_RT_STOP_CONTEXT 2 /* the context is full */
#define LODE_RT_STOP_CALLER 3  /* the token callback asked to stop */

typedef uint64_t lode_rt_session;
typedef uint64_t lode_rt_context;

/* How a session is sized and where it reads. Zero fields take defaults. */
struct lode_rt_options {
    uint32_t size;           /* sizeof(struct lode_rt_options) */
    uint32_t max_context;    /* positions one context may reach; 0: 512 */
    uint32_t contexts;       /* contexts whose KV the budget reserves; 0: 1 */
    uint32_t threads;        /* compute threads; 0: every core */
    uint32_t batch;          /* prompt positions per pass; 0: 64 */
    uint32_t flags;          /* LODE_RT_* flags */
    float sparsity;          /* FFN neurons skipped per token, [0, 1); split images */
    uint32_t reserved;       /* zero */
    const char *dram_budget; /* NULL: all resident; "33%", "32MiB", "1G" */
    const char *device;      /* NULL: the image's file; "file:<path>", "fake:ufs40" */
};

/* How to generate. */
struct lode_rt_generate {
    uint32_t size;       /* sizeof(struct lode_rt_generate) */
    uint32_t max_tokens; /* most tokens to generate */
    float temperature;   /* 0: greedy */
    uint32_t top_k;      /* 0: no limit */
    float top_p;         /* 1 (or 0): no limit */
    uint32_t reserved;   /* zero */
    uint64_t seed;       /* the sampler's seed */
};

/* What one generation measured. */
struct lode_rt_stats {
    uint32_t size;             /* sizeof(struct lode_rt_stats), set by the caller */
    uint32_t stop;             /* LODE_RT_STOP_* */
    uint32_t prompt_tokens;    /* tokens evaluated before the first sample */
    uint32_t generated_tokens; /* tokens handed to the callback */
    uint32_t context_tokens;   /* positions the context holds now */
    uint32_t reserved;
    double prompt_tokens_per_s;
    double decode_tokens_per_s;
    double load_seconds;          /* of the session */
    double bytes_read_per_token;  /* from flash; 0 when all is resident */
    uint64_t arena_bytes;         /* the DRAM budget (arena capacity) */
    uint64_t peak_arena_bytes;    /* most of it held at once */
};

/* Called with each generated token: its id and its text bytes (a token may
 * end inside a UTF-8 character; control tokens have none). Return 0 to go
 * on, anything else to stop. */
typedef int (*lode_rt_token_fn)(void *user, uint32_t id, const char *piece, size_t len);

/* Opens the model at `path` (GGUF or lode image) as a session. */
int lode_rt_session_open(const char *path, const struct lode_rt_options *options,
                         lode_rt_session *session);

/* Closes a session and frees its contexts. */
int lode_rt_session_close(lode_rt_session session);

/* A new, empty conversation in `session`. */
int lode_rt_context_new(lode_rt_session session, lode_rt_context *context);

/* Frees a conversation's KV cache. */
int lode_rt_context_free(lode_rt_session session, lode_rt_context context);

/* Evaluates `prompt` in `context` (a beginning-of-text token first when the
 * context is empty and the model wants one) and generates, calling
 * `on_token` (may be NULL) with each token. `stats` may be NULL. The
 * context keeps everything: a later call continues the conversation. */
int lode_rt_generate(lode_rt_session session, lode_rt_context context, const char *prompt,
                     const struct lode_rt_generate *options, lode_rt_token_fn on_token,
                     void *user, struct lode_rt_stats *stats);

/*
 * The service: many conversations over one model under one DRAM budget
 * (LLMS's new context / call / delete). `lode_rt_options.contexts` is how
 * many conversations' full KV caches the budget holds at once; idle ones
 * beyond it give up their memory (compressed by the attention they
 * receive, swapped to the swap area, or dropped) and are restored when
 * called, by reading and recomputing. With a swap area, conversations are
 * committed when their calls return, crash-consistently, and a service
 * opened again on the same area serves them again under new handles.
 */
typedef uint64_t lode_rt_service;

struct lode_rt_service_options {
    uint32_t size;         /* sizeof(struct lode_rt_service_options) */
    uint32_t max_contexts; /* most conversations at once; 0: 16 */
    float kv_bits;         /* mean bits of idle conversations' KV, 2 to 8; 0: 4; < 0: exact */
    uint32_t reserved;     /* zero */
    const char *swap;      /* NULL: none; "file:<path>" or "fake:ufs40" */
    uint64_t swap_size;    /* bytes of a swap file made now; 0: 1 GiB */
};

/* Opens the model at `path` as a service; `options` and `service_options`
 * may be NULL. */
int lode_rt_service_open(const char *path, const struct lode_rt_options *options,
                         const struct lode_rt_service_options *service_options,
                         lode_rt_service *service);

/* Waits (at most 30 s) for running calls, commits every conversation to
 * the swap area if there is one, and frees the service. */
int lode_rt_service_close(lode_rt_service service);

/* A new conversation; `system_prompt` may be NULL. */
int lode_rt_service_context_new(lode_rt_service service, const char *system_prompt,
                                lode_rt_context *context);

/* Appends `input` to the conversation and generates, calling `on_token`
 * (may be NULL) with each piece of text: whole UTF-8 characters, id 0.
 * `stats` may be NULL. */
int lode_rt_service_call(lode_rt_service service, lode_rt_context context, const char *input,
                         const struct lode_rt_generate *options, lode_rt_token_fn on_token,
                         void *user, struct lode_rt_stats *stats);

/* Deletes a conversation: its KV in DRAM and in the swap area. */
int lode_rt_service_context_delete(lode_rt_service service, lode_rt_context context);

/* A static description of an error code. */
const char *lode_rt_strerror(int code);

/* Copies the calling thread's message of its last failure into `buf` (at
 * most `len` bytes, NUL-terminated) and returns its full length, or 0 when
 * there is none. */
size_t lode_rt_last_error(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LODE_RUNTIME_H */
