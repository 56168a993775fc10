/*
 * lode.h: the C interface of lode's Android binding (crate lode-hal-android).
 *
 * An app (Java through JNI, or native code) opens the model it was handed as
 * a file descriptor, optionally a window of it (an uncompressed asset inside
 * the APK), reads blocks of it, asks for its geometry and cost model, and
 * forwards onTrimMemory levels so the engine's DRAM budget shrinks under
 * pressure. Link the static library (liblode_hal_android.a).
 *
 * Rules for every function:
 * - It returns LODE_OK (0) or a negative LODE_ERR_* code; lode_strerror()
 *   describes a code. No function aborts or unwinds into the caller.
 * - A NULL pointer where one is required is LODE_ERR_NULL. Other pointers
 *   must point to memory of the stated size; lode cannot check that.
 * - Handles are numbers, never reused: a closed or unknown handle is
 *   LODE_ERR_BAD_HANDLE, never a crash. 0 is never a valid handle.
 * - Every function may be called from any thread. Reads on one handle are
 *   serialised; lode_trim and lode_budget never wait for a read.
 */
#ifndef LODE_H
#define LODE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LODE_OK 0
#define LODE_ERR_NULL (-1)             /* a required pointer was NULL */
#define LODE_ERR_BAD_HANDLE (-2)       /* not an open handle */
#define LODE_ERR_INVALID_ARGUMENT (-3) /* a value outside its documented range */
#define LODE_ERR_MISALIGNED (-4)       /* offset or length not a multiple of the block size */
#define LODE_ERR_OUT_OF_RANGE (-5)     /* past the end of the device or window */
#define LODE_ERR_TOO_LARGE (-6)        /* larger than the device allows */
#define LODE_ERR_IO (-7)               /* the operating system reported an I/O error */
#define LODE_ERR_UNSUPPORTED (-8)      /* e.g. direct I/O required but refused */
#define LODE_ERR_NO_MEMORY (-9)        /* buffers could not be mapped */
#define LODE_ERR_BUSY (-10)            /* an earlier failure left the handle unusable */
#define LODE_ERR_PANIC (-11)           /* an internal bug, caught at the boundary */
#define LODE_ERR_OTHER (-12)

/* lode_options.flags */
#define LODE_OPEN_DIRECT 1u /* try O_DIRECT (needs a block-aligned window) */
#define LODE_OPEN_DSYNC 2u  /* writes durable on return (not used by reads) */

/* onTrimMemory levels (android.content.ComponentCallbacks2) */
#define LODE_TRIM_NONE 0 /* pressure over: restore the full budget */
#define LODE_TRIM_RUNNING_MODERATE 5
#define LODE_TRIM_RUNNING_LOW 10
#define LODE_TRIM_RUNNING_CRITICAL 15
#define LODE_TRIM_UI_HIDDEN 20
#define LODE_TRIM_BACKGROUND 40
#define LODE_TRIM_MODERATE 60
#define LODE_TRIM_COMPLETE 80

/* An open device. 0 is never valid. */
typedef uint64_t lode_handle;

/* The read-cost model the engine's scheduler plans with: a batch of n reads
 * of b bytes costs command_ns + max((n-1) * command_ns / queue_depth,
 * b * 1e9 / bytes_per_sec) nanoseconds. */
struct lode_cost_model {
    uint32_t command_ns;    /* fixed cost of one read command */
    uint16_t queue_depth;   /* commands that overlap their fixed cost, >= 1 */
    uint16_t reserved;      /* zero */
    uint64_t bytes_per_sec; /* sequential bandwidth, >= 1 */
};

struct lode_geometry {
    uint32_t block_size;   /* offsets and lengths of reads are multiples of it */
    uint32_t max_transfer; /* largest single read the device takes */
    uint64_t capacity;     /* readable bytes (the window rounded down to blocks) */
    uint16_t queue_depth;  /* reads the device accepts at once */
    uint16_t reserved[3];  /* zero */
};

struct lode_options {
    uint32_t size;          /* sizeof(struct lode_options) */
    uint32_t flags;         /* LODE_OPEN_* */
    uint32_t queue_depth;   /* 1..256, default 32 */
    uint32_t max_transfer;  /* bytes, a multiple of 512, default 512 KiB */
    uint64_t bounce_bytes;  /* read buffers owned by lode, default 4 MiB */
    int32_t io_cpu;         /* pin the I/O thread to this CPU; -1 = don't */
    uint32_t reserved;      /* zero */
    uint64_t budget_bytes;  /* DRAM budget with no memory pressure */
    uint64_t budget_floor;  /* trims never go below this; <= budget_bytes */
    struct lode_cost_model cost; /* all zero = the uncalibrated UFS 3.1 model */
};

/* Fill *out with the defaults (size set, no pinning, zero budget). */
int32_t lode_options_default(struct lode_options *out);

/* Open a device over descriptor fd, exposing length bytes from offset
 * (length 0: to the end of the file). lode duplicates fd; the caller keeps
 * and may close its own. options may be NULL for the defaults. */
int32_t lode_open_fd(int fd, uint64_t offset, uint64_t length,
                     const struct lode_options *options, lode_handle *out);

/* Read len bytes at device offset into buf (any alignment). offset and len
 * must be multiples of the block size; len 0 reads nothing. */
int32_t lode_read(lode_handle handle, uint64_t offset, void *buf, size_t len);

int32_t lode_geometry(lode_handle handle, struct lode_geometry *out);

int32_t lode_cost_model(lode_handle handle, struct lode_cost_model *out);

/* Replace the cost model (for example with one a calibration stored). */
int32_t lode_set_cost_model(lode_handle handle, const struct lode_cost_model *model);

/* Forward an onTrimMemory level. The budget shrinks to the level's share and
 * never grows, except on LODE_TRIM_NONE, which restores it. Unknown levels
 * count as the closest known one below; negative ones are invalid.
 * *allowed (may be NULL) receives the bytes now allowed. */
int32_t lode_trim(lode_handle handle, int32_t level, uint64_t *allowed);

/* The bytes the engine may use now, and a counter of budget changes (either
 * may be NULL). */
int32_t lode_budget(lode_handle handle, uint64_t *allowed, uint64_t *epoch);

/* Close the handle; reads in progress on other threads finish first. */
int32_t lode_close(lode_handle handle);

/* A static, NUL-terminated description of a code (never NULL). */
const char *lode_strerror(int32_t code);

#ifdef __cplusplus
}
#endif

#endif /* LODE_H */
