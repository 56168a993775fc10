//! The memory planner: one DRAM budget split into working buffers, KV
//! chunks, I/O slots and resident weights, by a stated rule.
//!
//! Fixed costs come first: the forward-pass buffers, the KV chunks of a full
//! context, every norm (a few KiB a layer), the FFN activation scratch, a
//! slot for one embedding row and the ring of I/O slots streamed units are
//! read into. With everything else streamed that is the **minimum working
//! set**; a budget below it is an error that names it.
//!
//! What is left keeps units resident, in this order for a dense run
//! (FlexInfer's tensor preservation: attention first, the large FFN
//! streamed):
//! 1. each layer's attention span, lowest layer first;
//! 2. the output head (with tied embeddings, the embedding too);
//! 3. as many layers' FFN as fit, the streamed ones spread evenly over the
//!    depth (so each one's read overlaps the resident layers before it);
//! 4. in what no whole unit fits, the head's first rows (a dense run; a
//!    sparse one makes it the neuron cache).
//!
//! Every one of these is read whole each token when it streams, so a
//! resident byte saves one streamed byte per token wherever it goes; the
//! order decides what stays when not everything fits. A sparse run reads
//! only the kept neurons' down columns of a streamed split layer, so a
//! resident byte of those saves less than one: it keeps everything read
//! whole first (attention, the head, the head's first rows, every split
//! layer's gate and up rows) and whole FFN layers last. Attention goes
//! first because it is the smallest unit per layer, read before anything
//! else of its layer, so keeping it lets the ring prefetch the FFN while
//! attention computes. The ring's slots are sized for the largest unit
//! that still streams.

use crate::model::arena_use::ArenaUse;
use crate::model::config::{Limits, LlamaConfig};
use crate::model::error::LoadError;
use crate::model::weights::{aligned, ALIGN};

use super::fixed::Fixed;
use super::layout::StreamLayout;
use super::units::{Residency, Units};

pub use crate::limits::MAX_RING;

/// What a run asks of the planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Arena bytes: the DRAM budget.
    pub budget: usize,
    /// I/O slots in the ring, 1 to [`MAX_RING`]; 2 reads the next unit while
    /// the current one computes.
    pub ring: usize,
    /// The device's block size: every read is whole blocks.
    pub block: usize,
    /// Keep nothing resident beyond the minimum (streams every unit, for
    /// tests and measurements).
    pub stream_all: bool,
    /// Read only the down columns of the neurons that fire (needs a split
    /// layout): a streamed layer's down columns are then fetched per token
    /// into their own I/O slot instead of streamed whole through the ring,
    /// and what is left of the budget becomes a neuron cache.
    pub sparse: bool,
    /// Bytes of image data whose blocks are checked on every read (the
    /// span `meta_len..file_len`), or 0 to trust reads: the table of
    /// checksums ([`BlockChecks`]) is part of the budget.
    pub checked: u64,
}

/// Bytes of the budget by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanBytes {
    /// Forward-pass buffers.
    pub buffers: usize,
    /// KV chunks for `contexts` full contexts.
    pub kv: usize,
    /// Norm weights of every layer and the final norm.
    pub norms: usize,
    /// FFN activation scratch and the embedding-row slot.
    pub scratch: usize,
    /// The ring of I/O slots.
    pub ring: usize,
    /// Resident attention spans.
    pub attention: usize,
    /// Resident output head.
    pub head: usize,
    /// Resident FFN bundles.
    pub ffn: usize,
    /// The slot sparse down-column reads land in.
    pub sparse_io: usize,
    /// The neuron cache of down columns (sparse runs; what is left).
    pub cache: usize,
    /// Room to start every slot a read lands in on a device block.
    pub alignment: usize,
    /// The checksum of every block of the data, for checking reads.
    pub checks: usize,
}

impl PlanBytes {
    /// All of it.
    pub fn total(&self) -> usize {
        [
            self.buffers,
            self.kv,
            self.norms,
            self.scratch,
            self.ring,
            self.attention,
            self.head,
            self.ffn,
            self.sparse_io,
            self.cache,
            self.alignment,
            self.checks,
        ]
        .iter()
        .fold(ALIGN, |a, &b| a.saturating_add(b))
    }
}

/// The plan of a streaming run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// What the arena holds by kind of slot once loaded (see
    /// [`ArenaUse::check`]).
    pub arena_use: ArenaUse,
    /// Room to start each resident unit on a block (part of
    /// `bytes.alignment`, beyond the minimum's).
    pub unit_alignment: usize,
    /// The budget planned for.
    pub budget: usize,
    /// Smallest budget that runs this model and these limits.
    pub minimum: usize,
    /// I/O slots in the ring.
    pub ring: usize,
    /// Bytes of each ring slot.
    pub ring_slot: usize,
    /// Bytes of the slot coded units are decoded into (0 when the image
    /// codes none; counted in `bytes.ring`).
    pub decode_slot: usize,
    /// The coded FFN matrices a token streams, decoded as the ring hands
    /// them out (resident coded layers were decoded once, at load).
    pub coded: super::units::CodedStreamed,
    /// Rows of the output head per streamed piece.
    pub head_rows: usize,
    /// Bit `l`: layer `l`'s attention is resident.
    pub attn_resident: u128,
    /// Bit `l`: layer `l`'s FFN is resident.
    pub ffn_resident: u128,
    /// Bit `l`: split layer `l`'s gate and up rows are resident (a sparse
    /// run's down columns may still be fetched per token).
    pub rows_resident: u128,
    /// The output head is resident.
    pub head_resident: bool,
    /// Rows of the head kept resident when it is not whole (its first
    /// rows, in what no whole unit fits); the rest stream in pieces.
    pub head_resident_rows: usize,
    /// Bytes by purpose.
    pub bytes: PlanBytes,
    /// Bytes read per token (logits wanted) when decoding one token; for a
    /// sparse run, the most (every down column read).
    pub streamed_per_token: u64,
    /// Of those, the down columns a sparse run reads only for the neurons
    /// a token keeps (0 for a dense run): at sparsity `s` a token reads
    /// about `streamed_per_token - s * streamed_columns_per_token`.
    pub streamed_columns_per_token: u64,
    /// Down columns are fetched sparsely (see [`StreamOptions::sparse`]).
    pub sparse: bool,
    /// Layers.
    pub layers: usize,
    /// Full contexts the KV cache has room for.
    pub contexts: usize,
    /// The device block size planned for.
    pub block: usize,
}

/// `len` in whole blocks of `block`.
pub(crate) fn blocks(len: usize, block: usize) -> usize {
    len.div_ceil(block.max(1)).saturating_mul(block.max(1))
}

/// Arena bytes of a slot that receives a read of `len` bytes.
pub(crate) fn read_slot(len: usize, block: usize) -> usize {
    aligned(blocks(len, block))
}

pub(super) fn bit(l: usize) -> u128 {
    1u128 << (l % 128)
}

/// The resident FFN layers when `left` bytes keep as many of them as
/// lowest-first filling would, but the streamed ones spread evenly over the
/// depth, each after a run of resident layers: a streamed layer's read
/// then overlaps the compute of the layers before it instead of queueing
/// behind its streamed neighbour's. Returns 0 (fill lowest first) when
/// nothing or everything streams or the spread set does not fit.
pub(super) fn spread_streamed(layers: usize, left: usize, cost: impl Fn(usize) -> usize) -> u128 {
    let (mut fit, mut room) = (0usize, left);
    for l in 0..layers {
        if cost(l) <= room {
            room -= cost(l);
            fit += 1;
        }
    }
    let streamed = layers - fit;
    if fit == 0 || streamed == 0 || layers > 128 {
        return 0;
    }
    // Streamed layer i is the last of the i-th of `streamed` equal runs.
    let mut res = if layers == 128 {
        u128::MAX
    } else {
        bit(layers) - 1
    };
    for i in 1..=streamed {
        res &= !bit(i * layers / streamed - 1);
    }
    let total = (0..layers)
        .filter(|&l| res & bit(l) != 0)
        .try_fold(0usize, |acc, l| acc.checked_add(cost(l)));
    match total {
        Some(t) if t <= left => res,
        _ => 0,
    }
}

impl StreamPlan {
    /// Plans `layout`'s model under `limits` and `opts`.
    pub fn new(
        layout: &StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        opts: StreamOptions,
    ) -> Result<StreamPlan, LoadError> {
        limits.validate(cfg)?;
        if opts.ring == 0 || opts.ring > MAX_RING {
            return Err(LoadError::Config("the ring holds 1 to 8 I/O slots"));
        }
        if !opts.block.is_power_of_two() {
            return Err(LoadError::Config(
                "the device block size must be a power of two",
            ));
        }
        let block = opts.block;
        if opts.sparse {
            layout.require_split()?;
        }
        let units = Units {
            layout,
            cfg,
            block,
            sparse: opts.sparse,
        };
        let fixed = Fixed::new(&units, limits, &opts);
        let worst = units.ring_slot(&Residency::default());
        let minimum = fixed.bytes(worst).total();
        if opts.budget < minimum {
            return Err(LoadError::BudgetTooSmall {
                need: minimum,
                have: opts.budget,
            });
        }
        let mut bytes = fixed.bytes(worst);
        let fixed_alignment = bytes.alignment;
        let (res, left) = units.choose(&mut bytes, opts.budget - minimum, &opts);
        let all = if cfg.layers >= 128 {
            u128::MAX
        } else {
            bit(cfg.layers) - 1
        };
        let nothing_streams = res.attn == all && res.ffn == all && res.head;
        // What no whole unit fits caches down columns, once it holds more
        // than the cache's key map (4 bytes a neuron) and a few columns.
        let keys = cfg.layers.saturating_mul(cfg.ffn).saturating_mul(4);
        let column = layout.ffn.iter().map(|f| f.bundle).max().unwrap_or(0);
        if opts.sparse && res.ffn != all && left > keys.saturating_add(64 * column) {
            bytes.cache = left;
        }
        let ring = if nothing_streams { 0 } else { opts.ring };
        let ring_slot = if nothing_streams {
            0
        } else {
            units.ring_slot(&res)
        };
        bytes.ring = ring_slot
            .saturating_mul(ring)
            .saturating_add(fixed.decode_bytes());
        let head_rows = ring_slot
            .saturating_sub(2 * block)
            .checked_div(layout.embed.row_bytes())
            .map_or(cfg.vocab, |r| r.clamp(1, cfg.vocab.max(1)));
        let (streamed_per_token, streamed_columns_per_token) = units.streamed_per_token(&res);
        let arena_use = ArenaUse {
            capacity: opts.budget,
            ..fixed.arena_use(&bytes, units.row_streams(&res))
        };
        Ok(StreamPlan {
            arena_use,
            unit_alignment: bytes.alignment - fixed_alignment,
            budget: opts.budget,
            minimum,
            ring,
            ring_slot,
            decode_slot: fixed.decode_bytes(),
            coded: units.coded_streamed(&res),
            head_rows,
            attn_resident: res.attn,
            ffn_resident: res.ffn,
            rows_resident: res.rows,
            head_resident: res.head,
            head_resident_rows: if res.head {
                layout.head.rows
            } else {
                res.head_part
            },
            bytes,
            streamed_per_token,
            streamed_columns_per_token,
            sparse: opts.sparse,
            layers: cfg.layers,
            contexts: limits.contexts,
            block,
        })
    }

    /// The smallest budget that keeps what this plan keeps resident (for a
    /// plan made with an ample budget: everything).
    pub fn resident_budget(&self) -> usize {
        let b = &self.bytes;
        self.minimum
            .saturating_add(b.attention)
            .saturating_add(b.head)
            .saturating_add(b.ffn)
            .saturating_add(b.cache)
            .saturating_add(self.unit_alignment)
    }

    /// Whether layer `l`'s attention is resident.
    pub fn attn_is_resident(&self, l: usize) -> bool {
        l < 128 && self.attn_resident & bit(l) != 0
    }

    /// Whether layer `l`'s FFN is resident.
    pub fn ffn_is_resident(&self, l: usize) -> bool {
        l < 128 && self.ffn_resident & bit(l) != 0
    }

    /// Whether split layer `l`'s gate and up rows are resident (alone, or
    /// with the whole layer).
    pub fn rows_are_resident(&self, l: usize) -> bool {
        l < 128 && (self.rows_resident | self.ffn_resident) & bit(l) != 0
    }

    /// Bytes a token reads at `sparsity` (0 for a dense run): everything
    /// streamed that is read whole, and the kept share of the down columns
    /// (a lower bound: the read planner also reads the gaps between kept
    /// columns that cost less to read than a second command).
    pub fn predicted_per_token(&self, sparsity: f32) -> u64 {
        let skipped = self.streamed_columns_per_token as f64 * f64::from(sparsity.clamp(0.0, 1.0));
        self.streamed_per_token.saturating_sub(skipped as u64)
    }

    /// Layers whose attention is resident.
    pub fn resident_attention_layers(&self) -> usize {
        (0..self.layers)
            .filter(|&l| self.attn_is_resident(l))
            .count()
    }

    /// Layers whose FFN is resident.
    pub fn resident_ffn_layers(&self) -> usize {
        (0..self.layers)
            .filter(|&l| self.ffn_is_resident(l))
            .count()
    }
}
