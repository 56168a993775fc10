//! How a session is sized and where it reads from ([`SessionOptions`]),
//! and what loading reports as it happens ([`LoadEvents`]).

use std::path::Path;

use lode_kernel::flash::Faults;
use lode_kernel::model::stream::{ColumnEstimate, ColumnReads, StreamPlan};
use lode_kernel::model::{Limits, LlamaConfig, MAX_CONTEXT};

use crate::budget::Budget;
use crate::device::DeviceSpec;
use crate::error::LoadError;
use crate::load::Outside;

/// How a session is sized and where it reads from.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    /// Most positions one context may reach (at most the model's trained
    /// context and [`MAX_CONTEXT`]).
    pub max_context: usize,
    /// Prompt positions evaluated per pass over the weights.
    pub batch: usize,
    /// Contexts whose full KV caches the budget reserves room for.
    pub contexts: usize,
    /// Threads for the numeric work (`None`: every available core).
    pub threads: Option<usize>,
    /// DRAM budget of a lode image (`None`: everything resident). A GGUF
    /// is always held whole.
    pub budget: Option<Budget>,
    /// Where an image's weights are read from (`None`: the image itself).
    pub device: Option<DeviceSpec>,
    /// I/O slots of the ring (`None`: enough to read a whole streamed FFN
    /// layer ahead).
    pub ring: Option<usize>,
    /// Fraction of FFN neurons skipped per token (0: dense).
    pub sparsity: f32,
    /// Cache down columns in what the plan leaves over (sparse runs).
    pub neuron_cache: bool,
    /// How a sparse run reads streamed down columns: `None` lets the
    /// device's cost model choose (`estimate_column_reads`), `Some` forces
    /// per-token reads of the kept columns or whole reads through the ring.
    pub column_reads: Option<ColumnReads>,
    /// Check the image's data against its CRCs before loading.
    pub verify: bool,
    /// Check every read made while running against the checksums of the
    /// blocks verified at load (which then always runs), re-reading what
    /// fails: a fault of the medium after load stops the run with an
    /// error instead of changing its text.
    pub verify_reads: bool,
    /// Faults injected into the device's reads (`--inject-faults`; none
    /// by default).
    pub faults: Faults,
}

impl SessionOptions {
    /// Defaults for contexts of up to `max_context` positions: prompt
    /// batches of 64, one context, every core, everything resident, the
    /// image's own file, dense, with the neuron cache, verified at load and
    /// on every read.
    pub fn new(max_context: usize) -> SessionOptions {
        SessionOptions {
            max_context,
            batch: 64,
            contexts: 1,
            threads: None,
            budget: None,
            device: None,
            ring: None,
            sparsity: 0.0,
            neuron_cache: true,
            column_reads: None,
            verify: true,
            verify_reads: true,
            faults: Faults::none(),
        }
    }

    /// The limits these options give a model of `cfg`. Prompt batches are
    /// no wider than `widest_prompt` positions: decoding takes one position
    /// a pass, so wider batch buffers would hold memory nothing uses
    /// (under a budget, weights that could have stayed resident).
    pub(crate) fn limits(
        &self,
        cfg: &LlamaConfig,
        widest_prompt: usize,
    ) -> Result<Limits, LoadError> {
        let room = cfg.context.min(MAX_CONTEXT);
        if self.max_context == 0 || self.max_context > room {
            return Err(LoadError::Options(format!(
                "contexts of {} positions: this model holds 1 to {room}",
                self.max_context
            )));
        }
        if self.batch == 0 {
            return Err(LoadError::Options("--batch must be at least 1".into()));
        }
        let batch = self.batch.min(widest_prompt.max(1)).min(self.max_context);
        let limits = Limits::new(self.max_context, batch).with_contexts(self.contexts);
        limits
            .validate(cfg)
            .map_err(|e| LoadError::Options(e.to_string()))?;
        Ok(limits)
    }
}

/// What a session reports of its loading, as it happens (the CLI prints
/// the plan and a progress meter; a library caller may ignore both).
pub trait LoadEvents {
    /// The streaming plan of the image at `path` (`weight_bytes` of
    /// weights), before anything is allocated: the arena's, which is the
    /// budget less what `outside` holds.
    fn plan(
        &mut self,
        _path: &Path,
        _weight_bytes: u64,
        _limits: &Limits,
        _plan: &StreamPlan,
        _outside: &Outside,
    ) {
    }
    /// How a sparse run reads its down columns: `estimate` is the priced
    /// rule's (`None` for an image with no split layer), `reads` what the
    /// run does (the rule's choice unless the options forced one).
    fn columns(&mut self, _estimate: Option<&ColumnEstimate>, _reads: ColumnReads) {}
    /// `done` of `total` data bytes verified.
    fn verify(&mut self, _done: u64, _total: u64) {}
}

/// Ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl LoadEvents for Quiet {}
