//! The service functions of `include/lode_runtime.h`: many conversations
//! over one model under one DRAM budget (LLMS's new context / call /
//! delete), idle ones compressed, swapped to flash and restored by the
//! runtime's `Service`.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lode_kernel::arena::DramArena;
use lode_runtime::kv_life::KvPolicy;
use lode_runtime::swap_store::{model_fingerprint, SwapSpec, SwapStore};
use lode_runtime::{
    CallOptions, ContextId, Finish, Input, Service, ServiceErrorKind, ServiceOptions,
};

use crate::ffi::{call_args, fail, guard, load_session, opt_str, read_struct, Fail};
use crate::registry::next_handle;
use crate::types::*;

/// A service and the handles of its contexts.
struct Entry {
    service: Service,
    contexts: Mutex<BTreeMap<u64, ContextId>>,
}

static SERVICES: Mutex<BTreeMap<u64, Arc<Entry>>> = Mutex::new(BTreeMap::new());

fn services() -> MutexGuard<'static, BTreeMap<u64, Arc<Entry>>> {
    SERVICES.lock().unwrap_or_else(|p| p.into_inner())
}

fn get(h: u64) -> Result<Arc<Entry>, Fail> {
    services()
        .get(&h)
        .cloned()
        .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such service"))
}

fn context(e: &Entry, h: u64) -> Result<ContextId, Fail> {
    e.contexts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&h)
        .copied()
        .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such context in this service"))
}

fn service_code(kind: ServiceErrorKind) -> c_int {
    match kind {
        ServiceErrorKind::UnknownContext => LODE_RT_ERR_BAD_HANDLE,
        ServiceErrorKind::InputTooLong => LODE_RT_ERR_BAD_PROMPT,
        ServiceErrorKind::OutOfKvMemory => LODE_RT_ERR_NO_MEMORY,
        ServiceErrorKind::BadRequest | ServiceErrorKind::TooManyContexts => LODE_RT_ERR_INVALID,
        _ => LODE_RT_ERR_OTHER,
    }
}

fn policy(bits: f32) -> Result<KvPolicy, Fail> {
    match bits {
        b if b < 0.0 => Ok(KvPolicy::EXACT),
        0.0 => Ok(KvPolicy::LLMS),
        b if (2.0..=8.0).contains(&b) => Ok(KvPolicy {
            mean_bits: Some(b),
            ..KvPolicy::LLMS
        }),
        b => Err(fail(
            LODE_RT_ERR_INVALID,
            format!("kv_bits {b}: 2 to 8, 0 or negative"),
        )),
    }
}

/// Opens `service` with a swap area on `spec`, recovering what it holds.
fn with_swap(service: Service, spec: &str, size: u64) -> Result<Service, Fail> {
    let spec = SwapSpec::parse(spec).map_err(|m| fail(LODE_RT_ERR_INVALID, m))?;
    let size = if size == 0 { 1 << 30 } else { size };
    let (fp, chunk) = service.with_session(|s| (model_fingerprint(s), s.kv_layout().max_payload()));
    let device = |e: lode_runtime::swap_store::SwapError| fail(LODE_RT_ERR_DEVICE, e.to_string());
    let store = SwapStore::open(&spec, size, fp.map_err(device)?, chunk).map_err(device)?;
    service.with_swap(store).map_err(device)
}

/// Opens the model at `path` as a service.
///
/// # Safety
/// `path` is a NUL-terminated string; `options` and `service_options` are
/// NULL or point to their structures, whose strings are NULL or
/// NUL-terminated; `service` points to writable memory for a `u64`.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_service_open(
    path: *const c_char,
    options: *const LodeRtOptions,
    service_options: *const LodeRtServiceOptions,
    service: *mut u64,
) -> c_int {
    guard(|| {
        if path.is_null() || service.is_null() {
            return Err(fail(LODE_RT_ERR_NULL, "path and service are required"));
        }
        // SAFETY: the caller's promises above.
        let so = unsafe { read_struct(service_options, "service_options") }?
            .unwrap_or(LodeRtServiceOptions::DEFAULT);
        let swap = unsafe { opt_str(so.swap, "swap") }?;
        let session = unsafe { load_session(path, options) }?;
        let max_contexts = if so.max_contexts == 0 {
            16
        } else {
            so.max_contexts as usize
        };
        let svc_opts = ServiceOptions {
            kv: policy(so.kv_bits)?,
            ..ServiceOptions::new(max_contexts)
        };
        let mut svc = Service::new(session, svc_opts);
        if let Some(spec) = swap {
            svc = with_swap(svc, spec, so.swap_size)?;
        }
        let contexts = svc
            .contexts()
            .into_iter()
            .map(|c| (next_handle(), c.id))
            .collect();
        let h = next_handle();
        services().insert(
            h,
            Arc::new(Entry {
                service: svc,
                contexts: Mutex::new(contexts),
            }),
        );
        // SAFETY: non-NULL, and the caller promises room for a u64.
        unsafe { service.write_unaligned(h) };
        Ok(())
    })
}

/// Shuts a service down: waits up to 30 s for running calls, commits
/// every conversation to its swap area (if any), and frees it.
#[no_mangle]
pub extern "C" fn lode_rt_service_close(service: u64) -> c_int {
    guard(|| {
        let e = services()
            .remove(&service)
            .ok_or_else(|| fail(LODE_RT_ERR_BAD_HANDLE, "no such service"))?;
        e.service.shutdown(Duration::from_secs(30));
        Ok(())
    })
}

/// A new conversation (`newLLMCtx`), with an optional system prompt.
///
/// # Safety
/// `system_prompt` is NULL or NUL-terminated; `context` points to
/// writable memory for a `u64`.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_service_context_new(
    service: u64,
    system_prompt: *const c_char,
    context: *mut u64,
) -> c_int {
    guard(|| {
        if context.is_null() {
            return Err(fail(LODE_RT_ERR_NULL, "context is required"));
        }
        // SAFETY: the caller's promise above.
        let system = unsafe { opt_str(system_prompt, "system_prompt") }?;
        let e = get(service)?;
        let id = e
            .service
            .create_context(system)
            .map_err(|x| fail(service_code(x.kind()), x.to_string()))?;
        let h = next_handle();
        e.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(h, id);
        // SAFETY: non-NULL, and the caller promises room for a u64.
        unsafe { context.write_unaligned(h) };
        Ok(())
    })
}

/// Deletes a conversation (`delLLMCtx`): its KV in DRAM and on flash.
#[no_mangle]
pub extern "C" fn lode_rt_service_context_delete(service: u64, context: u64) -> c_int {
    guard(|| {
        let e = get(service)?;
        let id = self::context(&e, context)?;
        e.service
            .delete_context(id)
            .map_err(|x| fail(service_code(x.kind()), x.to_string()))?;
        e.contexts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&context);
        Ok(())
    })
}

/// Appends `input` to a conversation and generates (`callLLM`), calling
/// `on_token` with each piece of text (whole UTF-8 characters; the id
/// argument is 0).
///
/// # Safety
/// `input` is NUL-terminated; `options` is NULL or points to a `struct
/// lode_rt_generate`; `on_token` is NULL or may be called with `user`
/// during this call; `stats` is NULL or points to a writable `struct
/// lode_rt_stats` whose `size` field is set.
#[no_mangle]
pub unsafe extern "C" fn lode_rt_service_call(
    service: u64,
    context: u64,
    input: *const c_char,
    options: *const LodeRtGenerate,
    on_token: LodeRtTokenFn,
    user: *mut c_void,
    stats: *mut LodeRtStats,
) -> c_int {
    guard(|| {
        // SAFETY: the caller's promises above.
        let (input, gen, out_stats) = unsafe { call_args(input, options, stats, "input") }?;
        let e = get(service)?;
        let id = self::context(&e, context)?;
        let opts = CallOptions {
            max_tokens: gen.max_tokens,
            sampler: gen.sampler,
            seed: gen.seed,
            stop: Vec::new(),
        };
        let summary = e
            .service
            .call(id, Input::Text(input), &opts, |piece| {
                let Some(f) = on_token else {
                    return ControlFlow::Continue(());
                };
                // SAFETY: the caller promises `f` may be called with
                // `user` now; the piece is valid for the call.
                match unsafe { f(user, 0, piece.as_ptr().cast(), piece.len()) } {
                    0 => ControlFlow::Continue(()),
                    _ => ControlFlow::Break(()),
                }
            })
            .map_err(|x| fail(service_code(x.kind()), x.to_string()))?;
        if out_stats.is_some() {
            let per_s = |n: usize, t: f64| if t > 0.0 { n as f64 / t } else { 0.0 };
            let (load, arena, peak) = e.service.with_session(|s| {
                (
                    s.load_seconds(),
                    s.arena().capacity() as u64,
                    s.arena().peak() as u64,
                )
            });
            let st = LodeRtStats {
                size: size_of::<LodeRtStats>() as u32,
                stop: match summary.finish {
                    Finish::Length => 0,
                    Finish::Eos => 1,
                    Finish::ContextFull => 2,
                    _ => 3,
                },
                prompt_tokens: summary.evaluated_tokens as u32,
                generated_tokens: summary.generated_tokens as u32,
                context_tokens: summary.context_tokens as u32,
                reserved: 0,
                prompt_tokens_per_s: per_s(summary.evaluated_tokens, summary.prompt_seconds),
                decode_tokens_per_s: per_s(
                    summary.generated_tokens.saturating_sub(1),
                    summary.decode_seconds,
                ),
                load_seconds: load,
                bytes_read_per_token: 0.0,
                arena_bytes: arena,
                peak_arena_bytes: peak,
            };
            // SAFETY: non-NULL (checked by read_struct), aligned, and the
            // caller promises it is writable.
            unsafe { stats.write(st) };
        }
        Ok(())
    })
}
