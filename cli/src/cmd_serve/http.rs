//! Routing and responses: each request on its own thread, evaluation
//! serialized by the [`Service`]. Errors are OpenAI's
//! `{"error": {"message", "type", "code"}}` with a 4xx for the client's
//! mistakes and a 5xx for the server's.

use std::collections::HashMap;
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use lode_runtime::{
    CallError, CallOptions, CallSummary, ContextId, Input, Message, Service, ServiceErrorKind,
};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request as HttpRequest, Response};

use super::api::{Head, Request, MAX_SESSION_BYTES};
use super::sse::Sse;

/// Most bytes of a request body.
const MAX_BODY: u64 = 4 << 20;
/// Tokens a completion generates when `max_tokens` is absent (OpenAI's).
const DEFAULT_COMPLETION_TOKENS: usize = 16;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A 400.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The `{"error": ...}` body.
    fn body(&self) -> Value {
        let kind = if self.status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        json!({"error": {"message": self.message, "type": kind, "code": self.code}})
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> ApiError {
        let (status, code) = match e.kind() {
            ServiceErrorKind::UnknownContext => (404, "session_not_found"),
            ServiceErrorKind::Busy => (409, "session_busy"),
            ServiceErrorKind::InputTooLong => (400, "context_length_exceeded"),
            ServiceErrorKind::TooManyContexts => (429, "too_many_sessions"),
            ServiceErrorKind::OutOfKvMemory => (503, "out_of_memory"),
            ServiceErrorKind::BadRequest => (400, "invalid_value"),
            ServiceErrorKind::ShuttingDown => (503, "shutting_down"),
            _ => (500, "generation_failed"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// What every request thread shares.
pub struct App {
    pub service: Service,
    /// The model's name in responses (its file name).
    pub model: String,
    /// Conversation ids clients chose, to the service's contexts.
    sessions: Mutex<HashMap<String, ContextId>>,
    next: AtomicU64,
    /// Requests being answered: a shutdown waits until their responses
    /// are written, not only until their generations end.
    requests: Mutex<usize>,
    answered: Condvar,
}

/// Counts one request in [`App::requests`] while it lives.
struct InFlight(Arc<App>);

impl InFlight {
    fn new(app: Arc<App>) -> InFlight {
        *app.requests.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        InFlight(app)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = self.0.requests.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.0.answered.notify_all();
    }
}

impl App {
    pub fn new(service: Service, model: String) -> App {
        App {
            service,
            model,
            sessions: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            requests: Mutex::new(0),
            answered: Condvar::new(),
        }
    }

    /// Waits until no request is being answered, or `deadline`; `true`
    /// if none is.
    pub fn wait_answered(&self, deadline: Instant) -> bool {
        let mut n = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .answered
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContextId>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The context of conversation `name`, made (with `system`) on first
    /// use; and whether it was made now.
    fn context(&self, name: &str, system: Option<&str>) -> Result<(ContextId, bool), ApiError> {
        let mut map = self.sessions();
        if let Some(&id) = map.get(name) {
            return Ok((id, false));
        }
        let id = self.service.create_context(system).map_err(|e| {
            let call = match e.kind() {
                ServiceErrorKind::ShuttingDown => CallError::ShuttingDown,
                _ => CallError::TooManyContexts {
                    max: self.service.max_contexts(),
                },
            };
            ApiError::from(call)
        })?;
        map.insert(name.to_string(), id);
        Ok((id, true))
    }
}

/// Answers one request on a thread of its own, counted (for shutdown)
/// from before the thread starts until its response is written.
pub fn spawn(app: &Arc<App>, req: HttpRequest) -> std::io::Result<()> {
    let guard = InFlight::new(Arc::clone(app));
    // 8 MiB, a main thread's stack: generation runs on this thread.
    std::thread::Builder::new()
        .name("lode-request".into())
        .stack_size(8 << 20)
        .spawn(move || {
            handle(&guard.0, req);
            drop(guard);
        })?;
    Ok(())
}

/// Answers one request.
fn handle(app: &App, mut req: HttpRequest) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let method = req.method().clone();
    let mut body = Vec::new();
    let read = req.as_reader().take(MAX_BODY + 1).read_to_end(&mut body);
    if read.is_err() {
        return; // The client went away while sending.
    }
    if body.len() as u64 > MAX_BODY {
        let e = ApiError::new(413, "body_too_large", format!("at most {MAX_BODY} bytes"));
        return respond(req, e.status, &e.body());
    }
    let result = match (&method, path.as_str()) {
        (Method::Get, "/health") => Ok(json!({
            "status": "ok",
            "contexts": app.service.contexts().len(),
            "max_contexts": app.service.max_contexts(),
        })),
        (Method::Get, "/v1/models") => Ok(json!({"object": "list", "data": [
            {"id": app.model, "object": "model", "created": 0, "owned_by": "lode"}
        ]})),
        (Method::Get, "/v1/sessions") => Ok(list_sessions(app)),
        (Method::Post, "/v1/completions") => return complete(app, req, &body, false),
        (Method::Post, "/v1/chat/completions") => return complete(app, req, &body, true),
        (Method::Delete, p) if p.starts_with("/v1/sessions/") => {
            delete_session(app, &p["/v1/sessions/".len()..])
        }
        (_, "/health" | "/v1/models" | "/v1/sessions" | "/v1/completions")
        | (_, "/v1/chat/completions") => Err(ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(404, "not_found", format!("no route {path}"))),
    };
    match result {
        Ok(v) => respond(req, 200, &v),
        Err(e) => respond(req, e.status, &e.body()),
    }
}

/// A JSON response.
pub(super) fn respond(req: HttpRequest, status: u16, body: &Value) {
    let json = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]);
    let mut r = Response::from_string(body.to_string()).with_status_code(status);
    if let Ok(h) = json {
        r = r.with_header(h);
    }
    // A failed write means the client left; there is no one to tell.
    let _ = req.respond(r);
}

fn list_sessions(app: &App) -> Value {
    let names: HashMap<ContextId, String> = app
        .sessions()
        .iter()
        .map(|(k, &v)| (v, k.clone()))
        .collect();
    let data: Vec<Value> = app
        .service
        .contexts()
        .into_iter()
        .filter_map(|c| {
            let name = names.get(&c.id)?;
            let age = c.last_used.elapsed().map_or(0, |d| d.as_secs());
            Some(
                json!({"id": name, "tokens": c.tokens, "kv_chunks": c.chunks,
                        "idle_seconds": age, "busy": c.busy}),
            )
        })
        .collect();
    json!({"object": "list", "data": data})
}

fn delete_session(app: &App, name: &str) -> Result<Value, ApiError> {
    let mut map = app.sessions();
    let Some(&id) = map.get(name) else {
        return Err(ApiError::new(
            404,
            "session_not_found",
            format!("no session {name:?}"),
        ));
    };
    match app.service.delete_context(id) {
        Ok(()) => {
            map.remove(name);
            Ok(json!({"id": name, "object": "session", "deleted": true}))
        }
        Err(e) if e.kind() == ServiceErrorKind::Busy => Err(ApiError::new(
            409,
            "session_busy",
            format!("session {name:?} is in a call; delete it after the call"),
        )),
        Err(e) => {
            map.remove(name);
            Err(ApiError::new(500, "delete_failed", e.to_string()))
        }
    }
}

/// The session id of a request: the body's `session`, else the
/// `X-Lode-Session` header.
fn session_name(req: &HttpRequest, body: &Request) -> Result<Option<String>, ApiError> {
    let header = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-Lode-Session"))
        .map(|h| h.value.as_str().to_string());
    match body.session.clone().or(header) {
        Some(s) if s.is_empty() || s.len() > MAX_SESSION_BYTES || s.contains('/') => {
            Err(ApiError::bad_request(
                "invalid_value",
                format!("session: 1 to {MAX_SESSION_BYTES} bytes, no '/'"),
            ))
        }
        s => Ok(s),
    }
}

/// A call's parsed request.
struct Call {
    head: Head,
    opts: CallOptions,
    system: Option<String>,
    messages: Vec<Message>,
    prompt: String,
    session: Option<String>,
    stream: bool,
}

fn parse_call(app: &App, req: &HttpRequest, body: &[u8], chat: bool) -> Result<Call, ApiError> {
    let r = Request::parse(body)?;
    let session = session_name(req, &r)?;
    let (opts, system, messages, prompt) = if chat {
        let (system, messages) = r.messages()?;
        (r.options(usize::MAX)?, system, messages, String::new())
    } else {
        let p = r.prompt()?.to_string();
        (r.options(DEFAULT_COMPLETION_TOKENS)?, None, Vec::new(), p)
    };
    let n = app.next.fetch_add(1, Ordering::Relaxed);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let head = Head {
        id: format!("{}-{n}", if chat { "chatcmpl" } else { "cmpl" }),
        created,
        model: app.model.clone(),
        chat,
        session: session.clone(),
    };
    Ok(Call {
        head,
        opts,
        system,
        messages,
        prompt,
        session,
        stream: r.stream.unwrap_or(false),
    })
}

/// `POST /v1/completions` and `/v1/chat/completions`.
fn complete(app: &App, req: HttpRequest, body: &[u8], chat: bool) {
    let call = match parse_call(app, &req, body, chat) {
        Ok(c) => c,
        Err(e) => return respond(req, e.status, &e.body()),
    };
    let mut sse = Sse::new(req, &call.head);
    let result = run_call(app, &call, |piece| {
        if !call.stream {
            return ControlFlow::Continue(());
        }
        if sse.piece(piece) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    if let Ok(s) = &result {
        eprintln!("{}", log_line(&call, s));
    }
    match (result, call.stream) {
        (Ok(s), true) => sse.end(&call.head.last_chunk(&s)),
        (Ok(s), false) => sse.respond(200, &call.head.response(&s)),
        (Err(e), true) if sse.started() => sse.end(&e.body()),
        (Err(e), _) => sse.respond(e.status, &e.body()),
    }
}

/// The line a finished call logs (to stderr): its id and session, its
/// tokens and times, and how its conversation was restored if it had been
/// parked (where the chunks came from and the read/recompute split).
fn log_line(call: &Call, s: &CallSummary) -> String {
    let session = call.head.session.as_deref().unwrap_or("-");
    let mut line = format!(
        "lode serve: {} session {session}: {} tokens in ({:.1} ms), {} out ({:.1} ms)",
        call.head.id,
        s.evaluated_tokens,
        s.prompt_seconds * 1e3,
        s.generated_tokens,
        s.decode_seconds * 1e3,
    );
    if let Some(r) = &s.restore {
        line.push_str("; restored in ");
        line.push_str(&r.describe());
    }
    line
}

/// Runs the call in the request's session, or in a one-shot context.
fn run_call(
    app: &App,
    call: &Call,
    on_token: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<CallSummary, ApiError> {
    let input = if call.head.chat {
        Input::Chat(&call.messages)
    } else {
        Input::Text(&call.prompt)
    };
    let system = call.system.as_deref();
    let r = match &call.session {
        Some(name) => {
            let (id, made) = app.context(name, system)?;
            // A system message after the first use is one more message.
            let mut late = Vec::new();
            let input = match (input, system) {
                (Input::Chat(ms), Some(sys)) if !made => {
                    late.push(Message::new("system", sys));
                    late.extend_from_slice(ms);
                    Input::Chat(&late)
                }
                (i, _) => i,
            };
            app.service.call(id, input, &call.opts, on_token)
        }
        None => app.service.call_once(system, input, &call.opts, on_token),
    };
    Ok(r?)
}
