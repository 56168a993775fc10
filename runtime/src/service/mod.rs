//! Many conversations over one loaded model, from many threads: LLMS's
//! "LLM as a system service" API (`newLLMCtx` / `callLLM` / `delLLMCtx`)
//! as [`Service::create_context`], [`Service::call`] and
//! [`Service::delete_context`].
//!
//! A context lives until deleted. A call appends its input to the
//! context's conversation (chat messages rendered with the model's chat
//! template, or raw text) and evaluates only what the context does not
//! hold yet, then generates, handing each piece of text to the caller's
//! `on_token`, which may stop it.
//!
//! **One evaluator at a time, by a mutex, not a worker thread.** The
//! session has one arena and one compute pool, so evaluations must be
//! serialized either way. With a `Mutex<Session>` the call runs on the
//! caller's own thread, so `on_token` can write straight to the caller's
//! client and stop generation the moment that write fails, with no
//! channel per token and no `'static` bound on the callback; a worker
//! thread would buy nothing but a hop. The context table has a lock of
//! its own, held only for bookkeeping, so creating, listing and deleting
//! contexts never wait behind a running generation; a context in a call
//! is checked out of the table (a [`Lease`]) and a second call on it, or
//! its deletion, is refused as busy rather than queued. The mutex is not
//! fair: under contention any waiting call may go next.
//!
//! KV memory is decided in one place, `room.rs`, which drives LLMS's
//! lifecycle (`kv_life`): idle contexts are parked (compressed by
//! density) and their chunks evicted by LCTRU when a call needs room, a
//! called context is restored from DRAM copies, the swap area and
//! recomputation, and a call's new chunks are swapped out when it
//! returns ([`Service::with_swap`]).

mod call;
mod error;
#[cfg(test)]
mod life_tests;
mod room;
#[cfg(test)]
mod tests;
mod text;
mod types;
#[cfg(test)]
mod window_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::context::Context;
use crate::session::Session;

pub use error::{CallError, CreateError, DeleteError, ServiceErrorKind};
pub use types::{
    CallOptions, CallSummary, ContextId, ContextInfo, Finish, Input, LifeStats, Message,
    ServiceOptions, ShutdownReport,
};

use crate::kv_life::{CostModels, KvPolicy};
use crate::swap_store::{SwapError, SwapStore};

/// A conversation's text: what rendering the next chat turn needs.
#[derive(Debug, Default)]
struct Conversation {
    system: Option<String>,
    messages: Vec<Message>,
    /// For a conversation recovered from the swap area, whose messages
    /// are gone: its tokens, closed as a finished turn. Chat calls then
    /// render `messages` as turns that continue it.
    base: Option<Vec<u32>>,
}

/// A context in the table. While a call runs, its `ctx` and `conv` are
/// checked out to the call's [`Lease`].
#[derive(Debug)]
struct Entry {
    ctx: Option<Context>,
    conv: Conversation,
    busy: bool,
    tokens: usize,
    chunks: usize,
    last_used: SystemTime,
}

#[derive(Debug, Default)]
struct Table {
    entries: BTreeMap<ContextId, Entry>,
    next: u64,
}

/// One model serving many contexts to many threads.
pub struct Service {
    session: Mutex<Session>,
    table: Mutex<Table>,
    /// Calls running; shutdown waits for it to reach 0.
    calls: Mutex<usize>,
    idle: Condvar,
    closing: AtomicBool,
    max_contexts: usize,
    kv: KvPolicy,
    swap: Option<SwapStore>,
    models: Mutex<CostModels>,
    life: Mutex<LifeStats>,
    last_swap_error: Mutex<Option<String>>,
}

/// A lock, taken even if a thread panicked while holding it: the data
/// behind these locks stays consistent at every await-free step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Service {
    /// A service over `session`.
    pub fn new(session: Session, opts: ServiceOptions) -> Service {
        Service {
            session: Mutex::new(session),
            table: Mutex::new(Table::default()),
            calls: Mutex::new(0),
            idle: Condvar::new(),
            closing: AtomicBool::new(false),
            max_contexts: opts.max_contexts.max(1),
            kv: opts.kv,
            swap: None,
            models: Mutex::new(CostModels::default()),
            life: Mutex::new(LifeStats::default()),
            last_swap_error: Mutex::new(None),
        }
    }

    /// The service with a swap area: idle contexts' chunks are committed
    /// there when their calls return, and the contexts the area already
    /// holds (a previous run's, shut down or cut off by a power loss) are
    /// recovered, parked with every chunk on flash, under their ids.
    pub fn with_swap(mut self, store: SwapStore) -> Result<Service, SwapError> {
        let saved = store.list()?;
        {
            let session = lock(&self.session);
            let mut t = lock(&self.table);
            for s in saved {
                if t.entries.len() >= self.max_contexts {
                    break;
                }
                let mut ctx = session.new_context();
                crate::kv_life::recover(&mut ctx, &s);
                let conv = Conversation {
                    base: call::closed_turn(&session, ctx.tokens()),
                    ..Conversation::default()
                };
                let id = ContextId(s.id);
                t.next = t.next.max(s.id);
                t.entries.insert(
                    id,
                    Entry {
                        tokens: ctx.len(),
                        chunks: 0,
                        ctx: Some(ctx),
                        conv,
                        busy: false,
                        last_used: SystemTime::UNIX_EPOCH,
                    },
                );
            }
        }
        self.swap = Some(store);
        Ok(self)
    }

    /// What the KV lifecycle has done so far.
    pub fn life_stats(&self) -> LifeStats {
        *lock(&self.life)
    }

    /// Why the last swap-out failed, if one did.
    pub fn last_swap_error(&self) -> Option<String> {
        lock(&self.last_swap_error).clone()
    }

    /// The fitted cost models of chunk reads and recomputation, as text.
    pub fn cost_models(&self) -> String {
        lock(&self.models).describe()
    }

    /// The swap area, when there is one.
    pub fn swap(&self) -> Option<&SwapStore> {
        self.swap.as_ref()
    }

    /// A new, empty context (`newLLMCtx`). `system_prompt` opens its
    /// conversation: as the system message of chat calls, or as text
    /// before the first completion call's input. Nothing is evaluated
    /// until the first call.
    pub fn create_context(&self, system_prompt: Option<&str>) -> Result<ContextId, CreateError> {
        if self.closing.load(Ordering::Acquire) {
            return Err(CreateError::ShuttingDown);
        }
        let mut t = lock(&self.table);
        if t.entries.len() >= self.max_contexts {
            return Err(CreateError::TooManyContexts {
                max: self.max_contexts,
            });
        }
        t.next += 1;
        let id = ContextId(t.next);
        let conv = Conversation {
            system: system_prompt.map(str::to_string),
            ..Conversation::default()
        };
        t.entries.insert(
            id,
            Entry {
                ctx: None,
                conv,
                busy: false,
                tokens: 0,
                chunks: 0,
                last_used: SystemTime::now(),
            },
        );
        Ok(id)
    }

    /// Appends `input` to context `id` and generates (`callLLM`), handing
    /// each piece of text to `on_token` (whole UTF-8 characters; return
    /// `ControlFlow::Break(())` to stop). Waits while another context's
    /// call evaluates.
    pub fn call(
        &self,
        id: ContextId,
        input: Input<'_>,
        opts: &CallOptions,
        mut on_token: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<CallSummary, CallError> {
        let mut lease = self.lease(id)?;
        let mut session = lock(&self.session);
        let ctx = lease.ctx.get_or_insert_with(|| session.new_context());
        let r = room::ensure_resident(self, &mut session, ctx, id).and_then(|restore| {
            call::turn(
                self,
                &mut session,
                ctx,
                &mut lease.conv,
                input,
                opts,
                &mut on_token,
            )
            .map(|s| CallSummary { restore, ..s })
        });
        room::after_call(self, &mut session, ctx, id);
        // The next call may come from another thread (a server answers
        // each request on its own).
        let settled = session.settle().map_err(CallError::Generate);
        drop(session);
        r.and_then(|s| settled.map(|()| s))
    }

    /// A context made, called once and deleted: a one-shot request.
    pub fn call_once(
        &self,
        system_prompt: Option<&str>,
        input: Input<'_>,
        opts: &CallOptions,
        on_token: impl FnMut(&str) -> ControlFlow<()>,
    ) -> Result<CallSummary, CallError> {
        let id = self.create_context(system_prompt).map_err(|e| match e {
            CreateError::ShuttingDown => CallError::ShuttingDown,
            CreateError::TooManyContexts { max } => CallError::TooManyContexts { max },
        })?;
        let r = self.call(id, input, opts, on_token);
        // Neither unknown nor busy: this thread made it and its call is
        // over; a bookkeeping error freeing chunks leaves nothing to do.
        let _ = self.delete_context(id);
        r
    }

    /// Deletes context `id` and frees its KV chunks (`delLLMCtx`).
    pub fn delete_context(&self, id: ContextId) -> Result<(), DeleteError> {
        let entry = {
            let mut t = lock(&self.table);
            match t.entries.get(&id) {
                None => return Err(DeleteError::UnknownContext(id)),
                Some(e) if e.busy => return Err(DeleteError::Busy(id)),
                Some(_) => t.entries.remove(&id),
            }
        };
        if let Some(ctx) = entry.and_then(|e| e.ctx) {
            lock(&self.session)
                .delete_context(ctx)
                .map_err(DeleteError::Free)?;
        }
        if let Some(store) = &self.swap {
            store.delete(id.0).map_err(DeleteError::Swap)?;
        }
        Ok(())
    }

    /// Every context, oldest id first.
    pub fn contexts(&self) -> Vec<ContextInfo> {
        lock(&self.table)
            .entries
            .iter()
            .map(|(&id, e)| ContextInfo {
                id,
                tokens: e.tokens,
                chunks: e.chunks,
                last_used: e.last_used,
                busy: e.busy,
            })
            .collect()
    }

    /// Most contexts held at once.
    pub fn max_contexts(&self) -> usize {
        self.max_contexts
    }

    /// Runs `f` with the session (its model, tokenizer, arena), waiting
    /// while a call evaluates.
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        f(&lock(&self.session))
    }

    /// Takes no new work, waits up to `wait` for running calls to finish,
    /// then hands every context to the swap-out hook (`room.rs`).
    pub fn shutdown(&self, wait: Duration) -> ShutdownReport {
        let deadline = Instant::now() + wait;
        let mut calls = lock(&self.calls);
        self.closing.store(true, Ordering::Release);
        while *calls > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            calls = self
                .idle
                .wait_timeout(calls, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let finished = *calls == 0;
        drop(calls);
        ShutdownReport {
            finished,
            swapped_out: room::swap_out_all(self),
        }
    }

    /// Checks context `id` out of the table for one call.
    fn lease(&self, id: ContextId) -> Result<Lease<'_>, CallError> {
        let mut calls = lock(&self.calls);
        if self.closing.load(Ordering::Acquire) {
            return Err(CallError::ShuttingDown);
        }
        let mut t = lock(&self.table);
        let e = t
            .entries
            .get_mut(&id)
            .ok_or(CallError::UnknownContext(id))?;
        if e.busy {
            return Err(CallError::Busy(id));
        }
        e.busy = true;
        *calls += 1;
        Ok(Lease {
            svc: self,
            id,
            ctx: e.ctx.take(),
            conv: std::mem::take(&mut e.conv),
        })
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("max_contexts", &self.max_contexts)
            .field("contexts", &lock(&self.table).entries.len())
            .finish_non_exhaustive()
    }
}

/// A context checked out for one call; dropping it (however the call
/// ends, a panic in `on_token` included) puts the context back.
struct Lease<'s> {
    svc: &'s Service,
    id: ContextId,
    ctx: Option<Context>,
    conv: Conversation,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut t = lock(&self.svc.table);
        if let Some(e) = t.entries.get_mut(&self.id) {
            e.busy = false;
            e.tokens = self.ctx.as_ref().map_or(0, Context::len);
            e.chunks = self.ctx.as_ref().map_or(0, Context::chunks);
            e.ctx = self.ctx.take();
            e.conv = std::mem::take(&mut self.conv);
            e.last_used = SystemTime::now();
        }
        drop(t);
        let mut calls = lock(&self.svc.calls);
        *calls = calls.saturating_sub(1);
        self.svc.idle.notify_all();
    }
}
