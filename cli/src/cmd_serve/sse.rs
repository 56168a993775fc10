//! The event stream of `"stream": true`: OpenAI's `data: {chunk}` events
//! and `data: [DONE]`, written as HTTP/1.1 chunks and flushed per event
//! (tiny_http's own chunked writer buffers 8 KiB, which would hold a
//! reply's first tokens back). A failed write is how a client that left
//! is noticed: the caller then stops generating.

use std::io::Write;

use serde_json::Value;
use tiny_http::Request as HttpRequest;

use super::api::Head;
use super::http::respond;

/// A response that becomes a server-sent event stream on its first piece
/// (so an error before any text is still a plain JSON error), written as
/// HTTP/1.1 chunks and flushed per event.
pub(super) struct Sse<'h> {
    req: Option<HttpRequest>,
    out: Option<Box<dyn Write + Send>>,
    head: &'h Head,
    first: bool,
}

impl<'h> Sse<'h> {
    pub(super) fn new(req: HttpRequest, head: &'h Head) -> Sse<'h> {
        Sse {
            req: Some(req),
            out: None,
            head,
            first: true,
        }
    }

    pub(super) fn started(&self) -> bool {
        self.out.is_some()
    }

    /// Sends a piece of text; `false` once the client is gone.
    pub(super) fn piece(&mut self, text: &str) -> bool {
        let chunk = self.head.chunk(text, self.first);
        self.first = false;
        self.event(&chunk.to_string())
    }

    /// Writes one event, starting the stream if needed.
    fn event(&mut self, data: &str) -> bool {
        if self.out.is_none() {
            let Some(req) = self.req.take() else {
                return false;
            };
            let mut w = req.into_writer();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                        Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
            if w.write_all(head.as_bytes()).is_err() {
                return false;
            }
            self.out = Some(w);
        }
        let Some(w) = self.out.as_mut() else {
            return false;
        };
        let event = format!("data: {data}\n\n");
        let r = write!(w, "{:x}\r\n{event}\r\n", event.len()).and_then(|()| w.flush());
        if r.is_err() {
            self.out = None;
            self.req = None;
        }
        r.is_ok()
    }

    /// The last event (after a chat's role chunk if nothing was sent),
    /// `[DONE]` and the end of the body.
    pub(super) fn end(mut self, last: &Value) {
        if self.first && self.head.chat && !self.piece("") {
            return;
        }
        if self.event(&last.to_string()) && self.event("[DONE]") {
            if let Some(w) = self.out.as_mut() {
                let _ = w.write_all(b"0\r\n\r\n").and_then(|()| w.flush());
            }
        }
    }

    /// A plain JSON response, when the stream has not started.
    pub(super) fn respond(mut self, status: u16, body: &Value) {
        if let Some(req) = self.req.take() {
            respond(req, status, body);
        }
    }
}
