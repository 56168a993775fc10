//! The exported functions and structures, one to one with
//! `include/lode_runtime.h`.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use lode_kernel::arena::DramArena;
use lode_kernel::model::MAX_CONTEXT;
use lode_runtime::{
    generate, Budget, DeviceSpec, ErrorKind, GenerateOptions, ModelFile, Quiet, SamplerConfig,
    Session, SessionOptions, Stop, StreamStats,
};

use crate::registry;

pub use crate::types::*;

/// A failure: its code and message.
pub(crate) struct Fail {
    code: c_int,
    msg: String,
}

pub(crate) fn fail(code: c_int, msg: impl Into<String>) -> Fail {
    Fail {
        code,
        msg: msg.into(),
    }
}

pub(crate) fn code_of(kind: ErrorKind) -> c_int {
    match kind {
        ErrorKind::Io => LODE_RT_ERR_IO,
        ErrorKind::BadModel => LODE_RT_ERR_BAD_MODEL,
        ErrorKind::BadOptions => LODE_RT_ERR_INVALID,
        ErrorKind::OutOfMemory => LODE_RT_ERR_NO_MEMORY,
        ErrorKind::Device => LODE_RT_ERR_DEVICE,
        ErrorKind::BadPrompt => LODE_RT_ERR_BAD_PROMPT,
        ErrorKind::ContextFull => LODE_RT_ERR_CONTEXT_FULL,
        _ => LODE_RT_ERR_OTHER,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `body` with panics caught; records the failure's message for
/// [`lode_rt_last_error`].
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Fail>) -> c_int {
    let (code, msg) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => (LODE_RT_OK, String::new()),
        Ok(Err(f)) => (f.code, f.msg),
        Err(_) => (LODE_RT_ERR_PANIC, "internal error (a panic in lode)".into()),
    };
    LAST_ERROR.with(|l| *l.borrow_mut() = msg);
    code
}

/// The string at `p`, `None` for NULL.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string
    // that lives for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|_| fail(LODE_RT_ERR_INVALID, format!("{what} is not UTF-8")))
}

/// The structure at `p` after checking NULL, alignment and its size field.
///
/// # Safety
/// `p` is NULL or points to a readable `T` whose first field is a `u32`
/// size.
pub(crate) unsafe fn read_struct<T: Copy>(p: *const T, what: &str) -> Result<Option<T>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    if !p.is_aligned() {
        return Err(fail(LODE_RT_ERR_INVALID, format!("{what} is misaligned")));
    }
    // SAFETY: non-NULL and aligned; the caller promises it points to a `T`,
    // whose first field is the `u32` size this reads first.
    let size = unsafe { p.cast::<u32>().read() };
    if size as usize != size_of::<T>() {
        return Err(fail(
            LODE_RT_ERR_INVALID,
            format!(
                "{what}.size is {size}; this library's is {}",
                size_of::<T>()
            ),
        ));
    }
    // SAFETY: as above, and its size field matches this library's layout.
    Ok(Some(unsafe { p.read() }))
}

fn session_options(o: &LodeRtOptions, room: usize) -> Result<SessionOptions, Fail> {
    let bad = |m: String| fail(LODE_RT_ERR_INVALID, m);
    let max_context = match o.max_context as usize {
        0 => 512.min(room),
        n if n > room => {
            return Err(bad(format!(
                "max_context {n}: this model holds at most {room} positions"
            )))
        }
        n => n,
    };
    // SAFETY (both): the caller promises NULL or NUL-terminated strings.
    let budget = unsafe { opt_str(o.dram_budget, "dram_budget") }?
        .map(Budget::parse)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    let device = unsafe { opt_str(o.device, "device") }?
        .map(DeviceSpec::parse)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    Ok(SessionOptions {
        contexts: (o.contexts as usize).max(1),
        threads: (o.threads != 0).then_some(o.threads as usize),
        batch: if o.batch == 0 { 64 } else { o.batch as usize },
        budget,
        device,
        sparsity: o.sparsity,
        verify: o.flags & LODE_RT_NO_VERIFY == 0,
        neuron_cache: o.flags & LODE_RT_NO_NEURON_CACHE == 0,
        ..SessionOptions::new(max_context)
    })
}

/// Loads the model at `path` (required) under `options` (NULL: the
/// defaults): what opening a session and opening a service share.
///
/// # Safety
/// As [`lode_rt_session_open`]'s for `path` and `options`.
pub(crate) unsafe fn load_session(
    path: *const c_char,
    options: *const LodeRtOptions,
) -> Result<Session, Fail> {
    // SAFETY: the caller's promises.
    let path = unsafe { opt_str(path, "path") }?.unwrap_or_default();
    let opts = unsafe { read_struct(options, "options") }?.unwrap_or(LodeRtOptions::DEFAULT);
    let file =
        ModelFile::open(path.as_ref()).map_err(|e| fail(code_of(e.kind()), e.to_string()))?;
    let room = file.config().context.min(MAX_CONTEXT);
    let so = session_options(&opts, room)?;
    Session::load(file, &so, so.batch, &mut Quiet)
        .map_err(|e| fail(code_of(e.kind()), e.to_string()))
}

/// Opens the model at `path` as a session.
///
/// # Safety
/// `path` is a NUL-terminated string; `options` is NULL or points to a
/// `struct lode_rt_options` whose strings are NULL or NUL-terminated;
/// `session` points to writable memory for a `u64`.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_session_open(
    path: *const c_char,
    options: *const LodeRtOptions,
    session: *mut u64,
) -> c_int {
    guard(|| {
        if path.is_null() || session.is_null() {
            return Err(fail(LODE_RT_ERR_NULL, "path and session are required"));
        }
        // SAFETY: the caller's promises above.
        let s = unsafe { load_session(path, options) }?;
        let h = registry::insert(s);
        // SAFETY: non-NULL, and the caller promises room for a u64.
        unsafe { session.write_unaligned(h) };
        Ok(())
    })
}

/// Closes a session and frees its contexts.
#[no_mangle]
pub extern "C" fn lode_rt_session_close(session: u64) -> c_int {
    guard(|| {
        registry::remove(session)
            .map(drop)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such session"))
    })
}

/// A new, empty conversation in `session`.
///
/// # Safety
/// `context` points to writable memory for a `u64`.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_context_new(session: u64, context: *mut u64) -> c_int {
    guard(|| {
        if context.is_null() {
            return Err(fail(LODE_RT_ERR_NULL, "context is required"));
        }
        let e = registry::get(session)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such session"))?;
        let mut entry = registry::lock(&e);
        let ctx = entry.session.new_context();
        let h = registry::next_handle();
        entry.contexts.insert(h, ctx);
        // SAFETY: non-NULL, and the caller promises room for a u64.
        unsafe { context.write_unaligned(h) };
        Ok(())
    })
}

/// Frees a conversation's KV cache.
#[no_mangle]
pub extern "C" fn lode_rt_context_free(session: u64, context: u64) -> c_int {
    guard(|| {
        let e = registry::get(session)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such session"))?;
        let mut entry = registry::lock(&e);
        let ctx = entry
            .contexts
            .remove(&context)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such context in this session"))?;
        entry
            .session
            .delete_context(ctx)
            .map_err(|e| fail(code_of(e.kind()), e.to_string()))
    })
}

fn generate_options(g: Option<LodeRtGenerate>) -> Result<GenerateOptions, Fail> {
    let Some(g) = g else {
        return Ok(GenerateOptions::greedy(32));
    };
    let top_p = if g.top_p == 0.0 { 1.0 } else { g.top_p };
    let sampler = SamplerConfig::new(g.temperature, g.top_k as usize, top_p);
    sampler
        .validate()
        .map_err(|e| fail(LODE_RT_ERR_INVALID, format!("sampling: {e}")))?;
    Ok(GenerateOptions {
        max_tokens: g.max_tokens as usize,
        sampler,
        seed: g.seed,
    })
}

/// The arguments every generating call checks: the text (required), the
/// generation options and the stats structure.
///
/// # Safety
/// As [`lode_rt_generate`]'s for `text`, `options` and `stats`.
pub(crate) unsafe fn call_args<'a>(
    text: *const c_char,
    options: *const LodeRtGenerate,
    stats: *mut LodeRtStats,
    what: &str,
) -> Result<(&'a str, GenerateOptions, Option<LodeRtStats>), Fail> {
    if text.is_null() {
        return Err(fail(LODE_RT_ERR_NULL, format!("{what} is required")));
    }
    // SAFETY: the caller's promises.
    let text = unsafe { opt_str(text, what) }?.unwrap_or_default();
    let gen = generate_options(unsafe { read_struct(options, "options") }?)?;
    let out_stats = unsafe { read_struct(stats.cast_const(), "stats") }?;
    Ok((text, gen, out_stats))
}

/// Evaluates `prompt` in `context` and generates, calling `on_token` with
/// each token.
///
/// # Safety
/// `prompt` is a NUL-terminated string; `options` is NULL or points to a
/// `struct lode_rt_generate`; `on_token` is NULL or a function that may be
/// called with `user` during this call; `stats` is NULL or points to a
/// writable `struct lode_rt_stats` whose `size` field is set.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_generate(
    session: u64,
    context: u64,
    prompt: *const c_char,
    options: *const LodeRtGenerate,
    on_token: LodeRtTokenFn,
    user: *mut c_void,
    stats: *mut LodeRtStats,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises above.
        let (prompt, gen, out_stats) = unsafe { call_args(prompt, options, stats, "prompt") }?;
        let e = registry::get(session)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such session"))?;
        let mut entry = registry::lock(&e);
        let mut ctx = entry
            .contexts
            .remove(&context)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such context in this session"))?;
        let s = &mut entry.session;
        let bos = ctx.is_empty() && ctx.pending().is_none() && s.tokenizer().specials().add_bos;
        let ids = s.tokenizer().encode(prompt, bos);
        let result = generate(s, &mut ctx, &ids, &gen, |t| {
            let Some(f) = on_token else {
                return ControlFlow::Continue(());
            };
            // SAFETY: the caller promises `f` may be called with `user`
            // now; the piece is valid for the call.
            let stop = unsafe { f(user, t.id, t.piece.as_ptr().cast(), t.piece.len()) };
            if stop == 0 {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        });
        let context_tokens = ctx.len();
        entry.contexts.insert(context, ctx);
        // The next call may come from another thread.
        let settled = entry.session.settle();
        let g = result.map_err(|e| fail(code_of(e.kind()), e.to_string()))?;
        settled.map_err(|e| fail(code_of(e.kind()), e.to_string()))?;
        if out_stats.is_some() {
            let s = &entry.session;
            let per_s = |n: usize, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
            let st = LodeRtStats {
                size: size_of::<LodeRtStats>() as u32,
                stop: match g.stop {
                    Stop::Length => 0,
                    Stop::Eos => 1,
                    Stop::Context => 2,
                    Stop::Caller => 3,
                },
                prompt_tokens: g.prompt_tokens as u32,
                generated_tokens: g.generated.len() as u32,
                context_tokens: context_tokens as u32,
                reserved: 0,
                prompt_tokens_per_s: per_s(g.prompt_tokens, g.prompt_seconds),
                decode_tokens_per_s: per_s(g.decode_tokens, g.decode_seconds),
                load_seconds: s.load_seconds(),
                bytes_read_per_token: StreamStats::new(s, &g).map_or(0.0, |x| x.bytes_per_token),
                arena_bytes: s.arena().capacity() as u64,
                peak_arena_bytes: s.arena().peak() as u64,
            };
            // SAFETY: non-NULL (checked by read_struct), aligned, and the
            // caller promises it is writable.
            unsafe { stats.write(st) };
        }
        Ok(())
    })
}

/// A static description of an error code.
#[no_mangle]
pub extern "C" fn lode_rt_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        LODE_RT_OK => c"ok",
        LODE_RT_ERR_NULL => c"a required pointer was NULL",
        LODE_RT_ERR_BAD_HANDLE => c"not an open session or context",
        LODE_RT_ERR_INVALID => c"an option out of range, bad UTF-8 or a wrong size field",
        LODE_RT_ERR_IO => c"a file could not be read",
        LODE_RT_ERR_BAD_MODEL => c"not a model lode can run, or corrupt data",
        LODE_RT_ERR_NO_MEMORY => c"the DRAM budget or the arena is too small",
        LODE_RT_ERR_DEVICE => c"the flash device failed a read",
        LODE_RT_ERR_BAD_PROMPT => c"the prompt is empty or longer than the context's room",
        LODE_RT_ERR_CONTEXT_FULL => c"the context is full",
        LODE_RT_ERR_PANIC => c"an internal error in lode",
        _ => c"unknown error",
    };
    s.as_ptr()
}

/// Copies the calling thread's last failure message into `buf`.
///
/// # Safety
/// `buf` is NULL (with any `len`) or points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|l| {
        let msg = l.borrow();
        if !buf.is_null() && len > 0 {
            let n = msg.len().min(len - 1);
            // SAFETY: `buf` has `len` writable bytes (the caller's promise)
            // and `n + 1 <= len`; the message's bytes do not overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), n);
                buf.add(n).write(0);
            }
        }
        msg.len()
    })
}

#[cfg(test)]
mod tests;
