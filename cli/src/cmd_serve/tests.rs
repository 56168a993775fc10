//! `lode serve` in process on port 0 with the real model (skipped when it
//! is absent), spoken to with plain `TcpStream` HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{start, ServeArgs};
use crate::cmd_run::RunArgs;
use crate::testutil::real_model;

fn args(max_context: usize) -> Option<ServeArgs> {
    Some(ServeArgs {
        model: RunArgs::greedy_json(real_model()?).model,
        host: "127.0.0.1".into(),
        port: 0,
        max_contexts: 8,
        kv_contexts: 8,
        kv_bits: "4".into(),
        swap: None,
        swap_size: "64M".into(),
        max_context,
        shutdown_wait: 5,
    })
}

/// One server for every test of this file, answering until the process
/// ends.
fn server() -> Option<SocketAddr> {
    static ADDR: OnceLock<Option<SocketAddr>> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let server = start(&args(256)?, &mut Vec::new()).unwrap();
        let addr = server.addr;
        std::thread::spawn(move || {
            server
                .serve(&mut std::io::sink())
                .map_err(|e| e.to_string())
        });
        Some(addr)
    })
}

/// Status and body of one request (`Connection: close`; a chunked body
/// is decoded).
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    request_with(addr, method, path, "", body)
}

/// [`request`] with more header lines (each ending in CRLF).
fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: lode\r\nConnection: close\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(rest) } else { rest.into() })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = request(addr, "POST", path, &body.to_string());
    (status, serde_json::from_str(&text).unwrap())
}

/// The `data:` payloads of an event stream.
fn events(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect()
}

fn paris(stream: bool) -> Value {
    serde_json::json!({"prompt": "The capital of France is", "max_tokens": 3,
                       "temperature": 0, "stream": stream})
}

#[test]
fn a_completion_is_lode_runs_greedy_text() {
    let Some(addr) = server() else { return };
    let mut out = Vec::new();
    crate::cmd_run::run(&RunArgs::greedy_json(real_model().unwrap()), &mut out).unwrap();
    let run: Value = serde_json::from_slice(&out).unwrap();
    let (status, v) = post(addr, "/v1/completions", paris(false));
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with(" Paris"), "{v}");
    assert_eq!(text, run["text"].as_str().unwrap());
    assert_eq!(v["usage"]["prompt_tokens"], 5, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
}

#[test]
fn a_streamed_completion_concatenates_to_the_same_text() {
    let Some(addr) = server() else { return };
    let (_, whole) = post(addr, "/v1/completions", paris(false));
    let (status, body) = request(addr, "POST", "/v1/completions", &paris(true).to_string());
    assert_eq!(status, 200, "{body}");
    let ev = events(&body);
    assert_eq!(ev.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, whole["choices"][0]["text"].as_str().unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length", "{last}");
    assert_eq!(last["usage"]["completion_tokens"], 3, "{last}");
}

fn chat(question: &str, session: Option<&str>) -> Value {
    let mut v = serde_json::json!({"messages": [{"role": "user", "content": question}],
                                   "max_tokens": 4, "temperature": 0});
    if let Some(s) = session {
        v["session"] = s.into();
    }
    v
}

#[test]
fn two_clients_at_once_on_their_own_sessions() {
    let Some(addr) = server() else { return };
    let questions = ["What is the capital of France?", "Name a colour."];
    let alone: Vec<Value> = questions
        .iter()
        .map(|q| post(addr, "/v1/chat/completions", chat(q, None)).1)
        .collect();
    let clients: Vec<_> = questions
        .into_iter()
        .enumerate()
        .map(|(i, q)| {
            let session = format!("both-{i}");
            std::thread::spawn(move || post(addr, "/v1/chat/completions", chat(q, Some(&session))))
        })
        .collect();
    for (client, alone) in clients.into_iter().zip(alone) {
        let (status, v) = client.join().unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"], alone["choices"][0]["message"]);
        assert_eq!(v["object"], "chat.completion");
    }
}

#[test]
fn a_session_continues_over_two_requests() {
    let Some(addr) = server() else { return };
    // The first request names the session in its body, the second in
    // the X-Lode-Session header.
    let ask = |prompt: &str, in_body: bool| {
        let mut body = serde_json::json!({"prompt": prompt, "max_tokens": 3, "temperature": 0});
        let mut header = "X-Lode-Session: continued\r\n";
        if in_body {
            body["session"] = "continued".into();
            header = "";
        }
        let (status, text) =
            request_with(addr, "POST", "/v1/completions", header, &body.to_string());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["session"], "continued", "{v}");
        v["usage"].clone()
    };
    let first = ask("The capital of France is", true);
    let second = ask(" The capital of Italy is", false);
    let n = |u: &Value, k: &str| u[k].as_u64().unwrap();
    // Only the new text (and the token left pending) is evaluated, and
    // the context holds both requests.
    assert!(n(&second, "prompt_tokens") < 10, "{second}");
    assert_eq!(
        n(&second, "context_tokens"),
        n(&first, "context_tokens") + n(&second, "prompt_tokens") + n(&second, "completion_tokens")
            - 1,
        "{first} {second}"
    );
    let (status, _) = request(addr, "DELETE", "/v1/sessions/continued", "");
    assert_eq!(status, 200);
    let (status, body) = request(addr, "DELETE", "/v1/sessions/continued", "");
    assert_eq!(status, 404, "{body}");
}

/// The session `name` as `/v1/sessions` lists it.
fn listed(addr: SocketAddr, name: &str) -> Option<Value> {
    let (_, body) = request(addr, "GET", "/v1/sessions", "");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == name)
        .cloned()
}

#[test]
fn a_client_that_disconnects_mid_stream_stops_its_generation() {
    let Some(addr) = server() else { return };
    let body = serde_json::json!({"prompt": "Once upon a time", "max_tokens": 200,
                                  "temperature": 0, "stream": true, "session": "gone"})
    .to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: lode\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first event");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(s);
    let t = Instant::now();
    let session = loop {
        match listed(addr, "gone") {
            Some(v) if v["busy"] == false => break v,
            _ => assert!(t.elapsed() < Duration::from_secs(60), "still generating"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let tokens = session["tokens"].as_u64().unwrap();
    assert!(
        tokens < 100,
        "generation went on after the client left: {session}"
    );
    // The server still answers, and the conversation goes on.
    let (status, _) = request(addr, "GET", "/health", "");
    assert_eq!(status, 200);
    let more = serde_json::json!({"prompt": " The end.", "max_tokens": 2, "temperature": 0,
                                  "session": "gone"});
    let (status, v) = post(addr, "/v1/completions", more);
    assert_eq!(status, 200, "{v}");
    assert!(
        v["usage"]["context_tokens"].as_u64().unwrap() > tokens,
        "{v}"
    );
    assert_eq!(request(addr, "DELETE", "/v1/sessions/gone", "").0, 200);
}

fn error_of(status_body: (u16, String)) -> (u16, Value) {
    let (status, body) = status_body;
    let v: Value = serde_json::from_str(&body).unwrap();
    for k in ["message", "type", "code"] {
        assert!(v["error"][k].is_string(), "{v}");
    }
    (status, v["error"]["code"].clone())
}

#[test]
fn bad_requests_are_openai_errors() {
    let Some(addr) = server() else { return };
    let cases = [
        (
            "POST",
            "/v1/completions",
            "{\"prompt\": ",
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/completions",
            "{\"prompt\": \"x\", \"max_tokens\": \"many\"}",
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/chat/completions",
            "{\"prompt\": \"x\"}",
            400,
            "missing_field",
        ),
        (
            "POST",
            "/v1/completions",
            "{\"prompt\": \"x\", \"temperature\": -1}",
            400,
            "invalid_value",
        ),
        (
            "DELETE",
            "/v1/sessions/nobody",
            "",
            404,
            "session_not_found",
        ),
        ("GET", "/v1/nothing", "", 404, "not_found"),
        ("GET", "/v1/completions", "", 405, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, got_code) = error_of(request(addr, method, path, body));
        assert_eq!(
            (got, got_code.as_str().unwrap()),
            (status, code),
            "{method} {path} {body}"
        );
    }
    // Longer than a context (256 positions).
    let long = serde_json::json!({"prompt": "word ".repeat(400), "max_tokens": 1});
    let (status, code) = error_of(request(addr, "POST", "/v1/completions", &long.to_string()));
    assert_eq!(
        (status, code.as_str().unwrap()),
        (400, "context_length_exceeded")
    );
}

#[test]
fn a_stop_lets_the_running_request_finish_then_shuts_down() {
    let Some(a) = args(32) else { return };
    let server = start(&a, &mut Vec::new()).unwrap();
    let (addr, stop) = (server.addr, server.stop.clone());
    let serving = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = server.serve(&mut out).map_err(|e| e.to_string());
        r.map(|()| String::from_utf8(out).unwrap())
    });
    // A streamed request is running when the stop comes: it still gets
    // its whole answer.
    let body = serde_json::json!({"prompt": "Once upon a time", "max_tokens": 12,
                                  "temperature": 0, "stream": true})
    .to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: lode\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).unwrap();
    stop.store(true, Ordering::Release);
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "{rest}");
    let out = serving.join().unwrap().unwrap();
    assert!(out.contains("stopped"), "{out}");
    assert!(!out.contains("exiting anyway"), "{out}");
    // tiny_http's accept thread lets its socket go just after the drop.
    let t = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "still listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A streamed image serves request after request, each on a thread of its
/// own: the session settles its prefetched reads after every call (a ring
/// with deferred completions belongs to the thread that submitted them).
/// Three conversations through one's room also exercise parking, the swap
/// area and restoring with the weights streamed.
#[test]
fn a_streamed_image_serves_requests_from_many_threads() {
    let Some(model) = real_model() else { return };
    let image = std::env::temp_dir().join(format!("lode-serve-{}.lode", std::process::id()));
    let pack = crate::cmd_pack::PackArgs::quiet_defaults(model, image.clone());
    crate::cmd_pack::run(&pack, &mut Vec::new()).unwrap();
    let mut a = args(256).unwrap();
    a.model.model = image.clone();
    a.model.dram_budget = Some("50%".into());
    a.kv_contexts = 1;
    a.swap = Some("fake:ufs40".into());
    let server = start(&a, &mut Vec::new()).unwrap();
    let addr = server.addr;
    let stop = std::sync::Arc::clone(&server.stop);
    let serving = std::thread::spawn(move || {
        server
            .serve(&mut std::io::sink())
            .map_err(|e| e.to_string())
    });
    let ask = |session: &str| {
        let body = format!(
            r#"{{"session": "{session}", "prompt": "Paris has been a centre of finance, diplomacy, commerce, fashion and science for centuries. The capital of France is", "max_tokens": 30, "temperature": 0}}"#
        );
        request(addr, "POST", "/v1/completions", &body)
    };
    for session in ["a", "b", "c", "a"] {
        let (status, body) = ask(session);
        assert_eq!(status, 200, "{session}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let text = v["choices"][0]["text"].as_str().unwrap();
        assert!(text.starts_with(" Paris"), "{session}: {text}");
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    serving.join().unwrap().unwrap();
    let _ = std::fs::remove_file(&image);
}
