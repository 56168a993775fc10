//! `lode serve`: an OpenAI-compatible HTTP server over one model, with
//! conversations that stay in the server (LLMS's contexts).
//!
//! A thin front end over [`lode_runtime::Service`]: this file loads the
//! model, binds the socket and runs the accept loop until SIGINT or
//! SIGTERM; `cmd_serve/api.rs` is the request and response JSON,
//! `cmd_serve/http.rs` the routes, errors and the event stream. Each
//! request is answered on a thread of its own (tiny_http reads
//! connections on its own threads), so a request waiting for the
//! evaluator blocks no one else's accept or bookkeeping.

mod api;
mod http;
mod sse;
#[cfg(test)]
mod tests;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lode_kernel::arena::DramArena;
use lode_kernel::model::MAX_CONTEXTS;
use lode_runtime::kv_life::KvPolicy;
use lode_runtime::swap_store::{model_fingerprint, SwapSpec, SwapStore};
use lode_runtime::{Budget, ModelFile, Service, ServiceOptions, Session};

use crate::session_args::{bad, ModelArgs};
use http::App;

/// Arguments of `lode serve`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Which model and how it is loaded.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Most conversations held at once (sessions and one-shot requests in
    /// flight); past it a request gets a 429.
    #[arg(long = "max-contexts", default_value_t = 16)]
    pub max_contexts: usize,
    /// Conversations whose full KV caches (--max-context positions, f32)
    /// the DRAM plan holds at once. Idle conversations beyond it give up
    /// their memory, least compressed and least recently used first
    /// (LLMS's LCTRU): parked compressed, then evicted to --swap or
    /// dropped (recomputed from their text when called again).
    #[arg(long = "kv-contexts", default_value_t = 2)]
    pub kv_contexts: usize,
    /// Mean bits per KV value of an idle conversation's chunks: 2 to 8,
    /// assigned 8/4/2 per chunk by the attention it receives (LLMS), or
    /// `f32` to keep them exact.
    #[arg(long = "kv-bits", default_value = "4")]
    pub kv_bits: String,
    /// Swap area for idle conversations' KV chunks: file:<path> (a file,
    /// created at --swap-size if missing, or a raw partition) or
    /// fake:<profile> (in memory). Chunks are written when a call returns
    /// and survive a restart: conversations in the area are served again
    /// under their ids. Crash-consistent (formats/SWAP.md).
    #[arg(long, value_name = "DEVICE")]
    pub swap: Option<String>,
    /// Size of a swap file made by --swap, or of a fake swap device.
    #[arg(long = "swap-size", default_value = "1G")]
    pub swap_size: String,
    /// Positions one conversation may reach; a request whose input does
    /// not fit what its conversation has left gets a 400.
    #[arg(long = "max-context", default_value_t = 1024)]
    pub max_context: usize,
    /// Seconds a shutdown waits for running requests to finish.
    #[arg(long = "shutdown-wait", default_value_t = 30)]
    pub shutdown_wait: u64,
}

const SERVE_HELP: &str = "\
Endpoints (OpenAI's JSON; unknown request fields are ignored):
  POST   /v1/completions        {\"prompt\", \"max_tokens\" (16), \"temperature\" (1),
                                 \"top_p\", \"top_k\", \"seed\", \"stop\", \"stream\", \"session\"}
  POST   /v1/chat/completions   the same with \"messages\" instead of \"prompt\"
                                 (\"max_tokens\" default: until the reply or the context ends)
  GET    /v1/models, /health, /v1/sessions
  DELETE /v1/sessions/{id}      ends a conversation and frees its KV cache

Conversations: give \"session\": \"<id>\" in the body (or the X-Lode-Session
header) and the request's messages or prompt are appended to that
conversation, which keeps its KV cache, so a turn evaluates only its own
new tokens. It is made on first use (a leading system message becomes its
system prompt) and lives until DELETE. A second request on a session
whose call is still running gets a 409. Without a session, each request
gets a context of its own, deleted when it returns.

\"stream\": true answers with server-sent events (data: {chunk}, ...,
data: [DONE]). A client that disconnects stops its generation; its
conversation keeps what was generated. Errors are
{\"error\": {\"message\", \"type\", \"code\"}} with a 4xx status for bad requests
(malformed JSON, a field of the wrong type, an input longer than the
context, an unknown session) and 429/503 when the server is full.

One model evaluates one request at a time; the others wait their turn.
SIGINT or SIGTERM stops accepting, lets running requests finish (at most
--shutdown-wait seconds), and exits 0.

Example:
  lode serve -m models/SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
  curl -s localhost:8080/v1/completions -d '{\"prompt\": \"The capital of France is\", \"max_tokens\": 4, \"temperature\": 0}'";

/// A server that is listening; [`Server::serve`] answers until `stop`.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    app: Arc<App>,
    http: tiny_http::Server,
    /// Set to stop the accept loop (the signal handlers set it).
    pub stop: Arc<AtomicBool>,
    shutdown_wait: Duration,
}

/// Loads the model, binds the socket and prints what it serves.
pub fn start(args: &ServeArgs, out: &mut dyn Write) -> Result<Server, Box<dyn Error>> {
    if !(1..=MAX_CONTEXTS).contains(&args.max_contexts) {
        return Err(bad(format!("--max-contexts: 1 to {MAX_CONTEXTS}")));
    }
    if !(1..=args.max_contexts).contains(&args.kv_contexts) {
        return Err(bad("--kv-contexts: 1 to --max-contexts"));
    }
    let kv = parse_kv_bits(&args.kv_bits)?;
    args.model.check()?;
    let file = ModelFile::open(&args.model.model)?;
    let room = file.config().context.min(lode_kernel::model::MAX_CONTEXT);
    let mut opts = args.model.session_options(args.max_context.min(room))?;
    opts.contexts = args.kv_contexts;
    // A server prints its memory plan at start, as `--explain` does.
    let mut events = ModelArgs {
        explain: true,
        ..args.model.clone()
    }
    .events(false);
    let session = Session::load(file, &opts, args.model.batch, &mut events)?;
    let plan = memory_line(&session, args);
    let model = args
        .model
        .model
        .file_name()
        .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let mut service = Service::new(
        session,
        ServiceOptions {
            max_contexts: args.max_contexts,
            kv,
        },
    );
    if let Some(spec) = &args.swap {
        let (store, line) = open_swap(&service, spec, &args.swap_size)?;
        service = service.with_swap(store)?;
        writeln!(
            out,
            "{line}; {} conversations recovered",
            service.contexts().len()
        )?;
    }
    let http = tiny_http::Server::http((args.host.as_str(), args.port))
        .map_err(|e| bad(format!("cannot listen on {}:{}: {e}", args.host, args.port)))?;
    let addr = http
        .server_addr()
        .to_ip()
        .ok_or_else(|| bad("the server is not on an IP socket"))?;
    writeln!(
        out,
        "lode serve: model {} ({})",
        args.model.model.display(),
        model
    )?;
    writeln!(out, "{plan}")?;
    writeln!(out, "lode serve: listening on http://{addr}")?;
    out.flush()?;
    Ok(Server {
        addr,
        app: Arc::new(App::new(service, model)),
        http,
        stop: Arc::new(AtomicBool::new(false)),
        shutdown_wait: Duration::from_secs(args.shutdown_wait),
    })
}

/// The memory plan in a line: the arena, what the model holds in it,
/// what the conversations' KV caches may take.
fn memory_line(session: &Session, args: &ServeArgs) -> String {
    let mib = |b: usize| b as f64 / 1048576.0;
    let arena = session.arena();
    let how = match session.stream_info() {
        Some(_) => "streamed from flash under the budget",
        None => "held whole in DRAM",
    };
    let positions = session.limits().max_context;
    let kv = session
        .kv_layout()
        .plan_bytes(positions, session.limits().max_batch, args.kv_contexts)
        .exact;
    format!(
        "lode serve: model {how}; arena {:.1} MiB ({:.1} MiB locked): {:.1} MiB used by the \
         model now, up to {:.1} MiB for the KV caches of {} conversations of {positions} \
         positions at once (of at most {}; idle ones at {} bits); {} threads {:?}",
        mib(arena.capacity()),
        mib(session.locked_bytes()),
        mib(arena.used()),
        mib(kv),
        args.kv_contexts,
        args.max_contexts,
        args.kv_bits,
        session.compute().threads(),
        session.compute().isa(),
    )
}

impl Server {
    /// Answers requests, each on a thread of its own, until `stop` is
    /// set; then stops accepting and shuts the service down.
    pub fn serve(self, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
        while !self.stop.load(Ordering::Acquire) {
            let req = match self.http.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    eprintln!("lode serve: accept: {e}");
                    continue;
                }
            };
            if let Err(e) = http::spawn(&self.app, req) {
                eprintln!("lode serve: cannot start a request thread: {e}");
            }
        }
        drop(self.http);
        writeln!(out, "lode serve: {} shutting down", self.addr)?;
        let deadline = Instant::now() + self.shutdown_wait;
        let answered = self.app.wait_answered(deadline);
        let report = self
            .app
            .service
            .shutdown(deadline.saturating_duration_since(Instant::now()));
        before_exit_swap_out_hook(&report, out);
        if !(answered && report.finished) {
            writeln!(
                out,
                "lode serve: requests still running after {} s; exiting anyway",
                self.shutdown_wait.as_secs()
            )?;
        }
        writeln!(out, "lode serve: stopped")?;
        out.flush()?;
        Ok(())
    }
}

/// `--kv-bits`: `f32`, or a mean of 2 to 8 bits.
fn parse_kv_bits(s: &str) -> Result<KvPolicy, Box<dyn Error>> {
    if s == "f32" {
        return Ok(KvPolicy::EXACT);
    }
    match s.parse::<f32>() {
        Ok(b) if (2.0..=8.0).contains(&b) => Ok(KvPolicy {
            mean_bits: Some(b),
            ..KvPolicy::LLMS
        }),
        _ => Err(bad(format!("--kv-bits {s}: a number from 2 to 8, or f32"))),
    }
}

/// Opens `--swap` for the service's model; returns the store and a line
/// saying what it holds.
fn open_swap(
    service: &Service,
    spec: &str,
    size: &str,
) -> Result<(SwapStore, String), Box<dyn Error>> {
    let spec = SwapSpec::parse(spec).map_err(|e| bad(format!("--swap: {e}")))?;
    let size = Budget::parse(size)
        .ok()
        .and_then(|b| match b {
            Budget::Bytes(n) => Some(n as u64),
            _ => None,
        })
        .ok_or_else(|| bad(format!("--swap-size {size}: bytes with a K/M/G suffix")))?;
    let (fp, chunk) = service.with_session(|s| (model_fingerprint(s), s.kv_layout().max_payload()));
    let store = SwapStore::open(&spec, size, fp?, chunk)?;
    let i = store.info();
    let line = format!(
        "lode serve: swap area {} ({:.1} MiB, {:.1} MiB free{})",
        store.name(),
        i.bytes as f64 / 1048576.0,
        i.free as f64 / 1048576.0,
        if i.formatted { ", formatted now" } else { "" }
    );
    Ok((store, line))
}

/// After the service swapped its conversations out at shutdown.
fn before_exit_swap_out_hook(report: &lode_runtime::ShutdownReport, out: &mut dyn Write) {
    if report.swapped_out > 0 {
        let _ = writeln!(
            out,
            "lode serve: {} conversations saved to the swap area",
            report.swapped_out
        );
    }
}

/// Runs `lode serve` until SIGINT or SIGTERM (a second one exits at once).
pub fn run(args: &ServeArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let server = start(args, out)?;
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal sets the flag; with the flag set, the next one
        // exits at once (for a shutdown that hangs).
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&server.stop))?;
        signal_hook::flag::register(sig, Arc::clone(&server.stop))?;
    }
    server.serve(out)
}
