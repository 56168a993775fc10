//! What a generation measured: the `lode run --json` object, and what a C
//! caller reads. Computed here, from the session's counters, so every
//! front end reports the same numbers.

use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::model::stream::ColumnReads;
use serde::Serialize;

use crate::generate::{Generation, Stop};
use crate::session::Session;

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// The model file.
    pub model: String,
    /// Generated text (lossy UTF-8; control tokens left out).
    pub text: String,
    /// Prompt token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (without the end-of-generation token).
    pub generated_ids: Vec<u32>,
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Seconds evaluating the prompt (including sampling the first token).
    pub prompt_seconds: f64,
    /// Prompt tokens per second.
    pub prompt_tokens_per_s: f64,
    /// Tokens evaluated one at a time after the prompt.
    pub decode_tokens: usize,
    /// Seconds of those evaluations (and their sampling).
    pub decode_seconds: f64,
    /// Decode tokens per second.
    pub decode_tokens_per_s: f64,
    /// Why generation ended.
    pub stop: Stop,
    /// Seconds to open the model and load the session.
    pub load_seconds: f64,
    /// Arena capacity: the planned budget.
    pub arena_bytes: usize,
    /// Most arena bytes held at once.
    pub peak_arena_bytes: usize,
    /// Arena bytes of resident weights (embeddings, attention, FFN, norms).
    pub weight_bytes: usize,
    /// Arena bytes of the context's KV cache at its largest this run.
    pub kv_bytes: usize,
    /// Bytes `mlock` kept in RAM.
    pub locked_bytes: usize,
    /// Threads of the compute backend.
    pub threads: usize,
    /// The instruction set of the inner loops.
    pub isa: String,
    /// Streaming statistics (runs of a lode image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamStats>,
}

/// What the column-read rule priced for one streamed split layer and token
/// (kept sets drawn uniformly), and what reading the columns whole costs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ColumnPrice {
    /// Neurons a token keeps, of `neurons`.
    pub kept: usize,
    /// Neurons of the layer.
    pub neurons: usize,
    /// Planned bytes of reading the kept columns.
    pub sparse_bytes: u64,
    /// Planned milliseconds of that, by the device's cost model.
    pub sparse_ms: f64,
    /// Bytes of the whole columns.
    pub whole_bytes: u64,
    /// Milliseconds of reading them whole.
    pub whole_ms: f64,
}

/// What a streaming run measured (the `stream` object of `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    /// The device the weights were read from.
    pub device: String,
    /// How it reads (direct or buffered, io_uring or threads).
    pub device_mode: String,
    /// The DRAM budget: the arena plus what is held outside it.
    pub budget_bytes: usize,
    /// The budget asked for, when it is more than the model needs (the
    /// run then holds everything in `budget_bytes`); `None` otherwise.
    pub unused_budget_bytes: Option<usize>,
    /// Of the budget, what is held outside the arena: the device's bounce
    /// buffers and the sparse scratch.
    pub outside_bytes: usize,
    /// The smallest budget this run could have had.
    pub minimum_bytes: usize,
    /// Layers whose attention stayed resident.
    pub resident_attention_layers: usize,
    /// Layers whose FFN stayed resident.
    pub resident_ffn_layers: usize,
    /// Whether the output head stayed resident.
    pub head_resident: bool,
    /// Rows of the output head that stayed resident (all of them when
    /// `head_resident`; its first rows when only those fit).
    pub head_resident_rows: usize,
    /// I/O slots and their size.
    pub ring_slots: usize,
    /// Bytes of each I/O slot.
    pub ring_slot_bytes: usize,
    /// Sparsity of the FFN (0: dense streaming).
    pub sparsity: f32,
    /// How a sparse run read streamed down columns: `"sparse"` (the kept
    /// ones, per token) or `"whole"` (through the ring, the dropped ones
    /// skipped in the arithmetic); `None` when dense.
    pub column_reads: Option<&'static str>,
    /// The price behind that choice, per streamed layer and token.
    pub column_estimate: Option<ColumnPrice>,
    /// Passes over the model (the prompt's batches plus one per generated
    /// token after the first).
    pub passes: u64,
    /// Bytes read from flash per pass.
    pub bytes_per_token: f64,
    /// Read commands per pass.
    pub reads_per_token: f64,
    /// Neuron-cache hit rate of the needed down columns (0 in dense
    /// streaming, which has no neuron cache).
    pub cache_hit_rate: f64,
    /// Down columns the neuron cache holds (0: no cache).
    pub cache_slots: u32,
    /// Down columns needed per pass, over every streamed layer (sparse).
    pub needed_columns_per_token: f64,
    /// Share of sparse layer fetches the planner served with one dense
    /// read of the layer's columns (cheaper than many small reads).
    pub dense_plan_rate: f64,
    /// Units that were complete when the layer needed them.
    pub prefetch_ready_rate: f64,
    /// Seconds the decode loop waited for reads.
    pub io_wait_seconds: f64,
    /// Seconds of the prompt and decode not spent waiting for reads.
    pub compute_seconds: f64,
    /// Seconds to check the image's data against its CRCs.
    pub verify_seconds: f64,
    /// Virtual I/O time of a fake device, seconds (0 on a real one).
    pub fake_io_seconds: f64,
    /// Whether every read was checked against the blocks verified at load.
    pub reads_verified: bool,
    /// Bytes checked per pass (equal to the bytes read when checked).
    pub verified_bytes_per_token: f64,
    /// Share of the checked bytes checked while the rest of their unit was
    /// still being read (hidden behind the disk).
    pub verified_early_rate: f64,
    /// Reads repeated after a read error or a checksum mismatch, in all.
    pub read_retries: u64,
    /// Bytes coded units decoded to per pass (0 for a raw image).
    pub decoded_bytes_per_token: f64,
    /// Seconds spent decoding them, in all.
    pub decode_seconds: f64,
    /// Read errors injected (`--inject-faults`).
    pub injected_read_errors: u64,
    /// Bit flips injected into delivered reads.
    pub injected_bit_flips: u64,
    /// Latency spikes injected.
    pub injected_latency_spikes: u64,
}

fn ratio(a: u64, b: u64, empty: f64) -> f64 {
    if b == 0 {
        empty
    } else {
        a as f64 / b as f64
    }
}

impl RunStats {
    /// The stats of `g`, a generation in `session` after `prompt_ids`;
    /// `kv_bytes` is the context's KV cache at its largest
    /// ([`Context::kv_bytes`](crate::Context::kv_bytes) after the run: a
    /// context only grows in one).
    pub fn new(session: &Session, g: &Generation, prompt_ids: &[u32], kv_bytes: usize) -> Self {
        let per_s = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let arena = session.arena();
        let cpu = session.compute();
        RunStats {
            model: session.path().display().to_string(),
            text: String::from_utf8_lossy(&g.text).into_owned(),
            prompt_ids: prompt_ids.to_vec(),
            generated_ids: g.generated.clone(),
            prompt_tokens: g.prompt_tokens,
            prompt_seconds: g.prompt_seconds,
            prompt_tokens_per_s: per_s(g.prompt_tokens, g.prompt_seconds),
            decode_tokens: g.decode_tokens,
            decode_seconds: g.decode_seconds,
            decode_tokens_per_s: per_s(g.decode_tokens, g.decode_seconds),
            stop: g.stop,
            load_seconds: session.load_seconds(),
            arena_bytes: arena.capacity(),
            peak_arena_bytes: arena.peak(),
            weight_bytes: arena.used_by(SlotKind::Resident),
            kv_bytes,
            locked_bytes: session.locked_bytes(),
            threads: cpu.threads(),
            isa: format!("{:?}", cpu.isa()),
            stream: StreamStats::new(session, g),
        }
    }
}

impl StreamStats {
    /// The streaming stats of `g` (`None` for a session in DRAM).
    pub fn new(session: &Session, g: &Generation) -> Option<StreamStats> {
        let info = session.stream_info()?;
        let plan = &info.plan;
        let (a, b) = g.io;
        let passes = (g.prompt_passes + g.decode_tokens) as u64;
        let per = |v: u64| v as f64 / passes.max(1) as f64;
        let wait = (b.io.wait_ns - a.io.wait_ns) as f64 / 1e9;
        let needed = b.sparse.needed - a.sparse.needed;
        let fetches = b.sparse.fetches - a.sparse.fetches;
        Some(StreamStats {
            device: info.device.clone(),
            device_mode: info.mode.clone(),
            budget_bytes: plan.budget.saturating_add(info.outside.total()),
            unused_budget_bytes: (info.asked_budget != usize::MAX
                && info.asked_budget > plan.budget.saturating_add(info.outside.total()))
            .then_some(info.asked_budget),
            outside_bytes: info.outside.total(),
            minimum_bytes: plan.minimum.saturating_add(info.outside.total()),
            resident_attention_layers: plan.resident_attention_layers(),
            resident_ffn_layers: plan.resident_ffn_layers(),
            head_resident: plan.head_resident,
            head_resident_rows: plan.head_resident_rows,
            ring_slots: plan.ring,
            ring_slot_bytes: plan.ring_slot,
            sparsity: info.sparsity,
            column_reads: info.columns.map(|(_, r)| match r {
                ColumnReads::Sparse => "sparse",
                ColumnReads::Whole => "whole",
            }),
            column_estimate: info.columns.and_then(|(e, _)| e).map(|e| ColumnPrice {
                kept: e.keep,
                neurons: e.count,
                sparse_bytes: e.sparse_bytes,
                sparse_ms: e.sparse_ns as f64 / 1e6,
                whole_bytes: e.whole_bytes,
                whole_ms: e.whole_ns as f64 / 1e6,
            }),
            passes,
            bytes_per_token: per(b.io.bytes - a.io.bytes),
            reads_per_token: per(b.io.reads - a.io.reads),
            cache_hit_rate: ratio(b.sparse.hits - a.sparse.hits, needed, 0.0),
            cache_slots: session.cache_slots(),
            needed_columns_per_token: per(needed),
            dense_plan_rate: ratio(b.sparse.dense_plans - a.sparse.dense_plans, fetches, 0.0),
            prefetch_ready_rate: ratio(
                b.io.ready_hits - a.io.ready_hits,
                b.io.units - a.io.units,
                1.0,
            ),
            io_wait_seconds: wait,
            compute_seconds: (g.prompt_seconds + g.decode_seconds - wait).max(0.0),
            verify_seconds: info.verify_seconds,
            fake_io_seconds: (b.virtual_ns - a.virtual_ns) as f64 / 1e9,
            reads_verified: info.reads_verified,
            verified_bytes_per_token: per(b.io.verified - a.io.verified),
            verified_early_rate: ratio(
                b.io.verified_early - a.io.verified_early,
                b.io.verified - a.io.verified,
                0.0,
            ),
            read_retries: b.io.retries - a.io.retries,
            decoded_bytes_per_token: per(b.io.decoded - a.io.decoded),
            decode_seconds: (b.io.decode_ns - a.io.decode_ns) as f64 / 1e9,
            injected_read_errors: b.faults.read_errors - a.faults.read_errors,
            injected_bit_flips: b.faults.bit_flips - a.faults.bit_flips,
            injected_latency_spikes: b.faults.latency_spikes - a.faults.latency_spikes,
        })
    }
}
