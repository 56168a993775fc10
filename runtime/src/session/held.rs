//! What a session holds, read only (and the arena and compute the KV
//! lifecycle borrows): its model's shape, tokenizer and template, the
//! arena, the compute backend and the read counters.

use std::path::Path;

use lode_hal::compute::CpuCompute;
use lode_hal_linux::LockedArena;
use lode_kernel::model::{KvLayout, Limits, LlamaConfig};
use lode_tokenizer::{ChatTemplate, Tokenizer};

use super::{Engine, IoCounters, Session, StreamInfo};

impl Session {
    /// How the model's KV chunks are split (its `max_payload()` is what a
    /// swap area must read back).
    pub fn kv_layout(&self) -> KvLayout {
        let arch = match &self.engine {
            Engine::Dense(m) => *m.arch(),
            Engine::Streamed(m) => *m.arch(),
        };
        KvLayout::new(&self.cfg, &arch)
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The limits the session was sized for.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, when it has one lode understands.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The model file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How a streamed session reads (`None` when the model is in DRAM).
    pub fn stream_info(&self) -> Option<&StreamInfo> {
        self.stream.as_ref()
    }

    /// Seconds the load took.
    pub fn load_seconds(&self) -> f64 {
        self.load_seconds
    }

    /// The arena: capacity, peak and use by kind.
    pub fn arena(&self) -> &LockedArena {
        &self.arena
    }

    /// The arena and the compute backend, mutably: the KV lifecycle
    /// rewrites chunks in place.
    pub(crate) fn arena_and_compute(&mut self) -> (&mut LockedArena, &mut CpuCompute<'static>) {
        (&mut self.arena, &mut self.cpu)
    }

    /// Bytes `mlock` kept in RAM.
    pub fn locked_bytes(&self) -> usize {
        self.lock.map_or(0, |l| l.locked)
    }

    /// The compute backend (threads, instruction set).
    pub fn compute(&self) -> &CpuCompute<'static> {
        &self.cpu
    }

    /// The read counters of a streamed session (zero in DRAM).
    pub fn io_counters(&self) -> IoCounters {
        match &self.engine {
            Engine::Dense(_) => IoCounters::default(),
            Engine::Streamed(m) => IoCounters {
                io: m.weights().io_stats(),
                sparse: m.weights().sparse_stats().unwrap_or_default(),
                virtual_ns: m.weights().device().virtual_ns(),
                faults: m.weights().device().fault_counts(),
            },
        }
    }

    /// Down columns the neuron cache holds (0: none).
    pub fn cache_slots(&self) -> u32 {
        match &self.engine {
            Engine::Dense(_) => 0,
            Engine::Streamed(m) => m.weights().cache_stats().map_or(0, |(_, slots)| slots),
        }
    }
}
