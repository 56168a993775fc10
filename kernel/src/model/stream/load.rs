//! Loading a streamed model: the plan checked against the device and the
//! layout, the ring's slots, the schedule (`schedule.rs`) of what streams
//! and the resident units it reads, the norms, the head, the activation
//! scratch and the sparse run's buffers.

use crate::arena::{DramArena, Slot, SlotKind};
use crate::cache::{Policy, S3Fifo};
use crate::flash::{BlockChecks, FlashDevice};
use crate::model::config::{Limits, LlamaConfig, MAX_LAYERS};
use crate::model::error::LoadError;
use crate::model::tensor::TensorRef;
use crate::model::weights::{Attention, LayerWeights, Weights, ALIGN};

use super::fixed::act_lens;
use super::io::{read_resident, Reader};
use super::layout::{StreamLayout, TensorAt};
use super::plan::{read_slot, StreamPlan, MAX_RING};
use super::ring::Ring;
use super::schedule::Schedule;
use super::source::StreamSource;
use super::sparse::{Sparse, SparseBuffers, SparseScratch, SparseSetup};

/// A view of tensor `t` inside `slot`, which holds the image's bytes from
/// device offset `base`.
pub(super) fn tensor_in(slot: Slot, base: u64, t: &TensorAt) -> TensorRef {
    TensorRef {
        slot,
        offset: (t.offset - base) as usize,
        dtype: t.dtype,
        rows: t.rows,
        cols: t.cols,
    }
}

/// The four projections of an attention span held in `slot` from `base`.
pub(super) fn attention_in(slot: Slot, base: u64, p: &[TensorAt; 4]) -> Attention {
    let [q, k, v, o] = p;
    Attention {
        q: tensor_in(slot, base, q),
        k: tensor_in(slot, base, k),
        v: tensor_in(slot, base, v),
        o: tensor_in(slot, base, o),
    }
}

/// How a streamed source reads: the clock its wait statistics use, and
/// what its reads are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// Nanoseconds for the wait statistics (a constant is fine).
    pub clock: fn() -> u64,
    /// Block checksums every read is verified against, or `None` to trust
    /// the device after the load pass.
    pub checks: Option<BlockChecks>,
}

impl Reads {
    /// Reads trusted as delivered.
    pub fn unchecked(clock: fn() -> u64) -> Reads {
        Reads {
            clock,
            checks: None,
        }
    }
}

/// Checks that `plan` was made for this device, this layout and this kind
/// of run.
fn check_fits<D: FlashDevice>(
    dev: &D,
    layout: &StreamLayout,
    plan: &StreamPlan,
    sparse: bool,
) -> Result<(), LoadError> {
    if sparse != plan.sparse {
        return Err(LoadError::Config(
            "a sparse run needs a sparse plan, and a sparse plan a sparse run",
        ));
    }
    let dev_block = dev.geometry().block_size as usize;
    if dev_block == 0 || !plan.block.is_multiple_of(dev_block) {
        return Err(LoadError::Config(
            "the plan's block size is not a multiple of the device's",
        ));
    }
    let b = plan.block as u64;
    let misaligned = layout.attn.iter().any(|a| !a.start.is_multiple_of(b))
        || layout.ffn.iter().any(|f| {
            !f.offset.is_multiple_of(b) || f.split().is_some_and(|r| !r.start.is_multiple_of(b))
        })
        || !layout.head.offset.is_multiple_of(b);
    if misaligned {
        return Err(LoadError::Layout(
            "the image's block size is smaller than the device's; repack with a larger \
             --block-size",
        ));
    }
    Ok(())
}

/// A scratch slot of `len` bytes, or none for 0.
fn scratch<A: DramArena>(arena: &mut A, len: usize) -> Result<Option<Slot>, LoadError> {
    if len == 0 {
        return Ok(None);
    }
    arena
        .alloc(len, ALIGN, SlotKind::Scratch)
        .map(Some)
        .map_err(LoadError::arena)
}

impl<D: FlashDevice> StreamSource<D, S3Fifo, SparseScratch<'static>> {
    /// Loads what `plan` keeps resident from `dev` into `arena` and builds
    /// the streaming source for the rest, which owns every weight. Run
    /// [`verify_image_data`](super::verify_image_data) first: loading
    /// trusts the bytes. Every chosen neuron is computed (a dense run).
    pub fn load<A: DramArena>(
        dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
    ) -> Result<Self, LoadError> {
        Self::load_with(
            dev,
            arena,
            layout,
            cfg,
            limits,
            plan,
            Reads::unchecked(clock),
            None,
        )
    }
}

impl<D: FlashDevice, P: Policy, B: SparseBuffers> StreamSource<D, P, B> {
    /// [`load`](StreamSource::load) for a sparse run (a plan made with
    /// [`StreamOptions::sparse`](super::StreamOptions::sparse)): each token
    /// keeps the strongest `1 - sparsity` of every layer's neurons and reads
    /// only their down columns, through a neuron cache of what the plan
    /// left over.
    #[allow(clippy::too_many_arguments)]
    pub fn load_sparse<A: DramArena>(
        dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
        setup: SparseSetup<P, B>,
    ) -> Result<Self, LoadError> {
        let reads = Reads::unchecked(clock);
        Self::load_with(dev, arena, layout, cfg, limits, plan, reads, Some(setup))
    }

    /// [`load`](StreamSource::load) (`setup` `None`) or
    /// [`load_sparse`](StreamSource::load_sparse) with the scratch type
    /// named by the caller, so dense and sparse sources of one program
    /// share one type, and with the reads checked when `reads.checks` is
    /// set (filled by [`verify_and_record`](super::verify_and_record)):
    /// every resident unit loaded here and every unit, row and column read
    /// while running.
    #[allow(clippy::too_many_arguments)]
    pub fn load_with<A: DramArena>(
        mut dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        reads: Reads,
        setup: Option<SparseSetup<P, B>>,
    ) -> Result<Self, LoadError> {
        limits.validate(cfg)?;
        check_fits(&dev, &layout, &plan, setup.is_some())?;
        let block = plan.block;
        if reads.checks.is_some_and(|c| c.block() != block) {
            return Err(LoadError::Config(
                "the block checks were made for another block size than the plan's",
            ));
        }
        let reader = Reader {
            block,
            checks: reads.checks,
        };
        let clock = reads.clock;
        // The ring first, so a failed load leaves nothing half placed.
        let mut ring_slots: heapless::Vec<Slot, MAX_RING> = heapless::Vec::new();
        for _ in 0..plan.ring {
            let s = arena
                .alloc(plan.ring_slot, block.max(ALIGN), SlotKind::IoBuffer)
                .map_err(LoadError::arena)?;
            let _ = ring_slots.push(s);
        }
        // The decode slot of coded units (the plan counts it with the ring).
        let decode_len = layout.decode_slot_len(block);
        let decode = match decode_len {
            0 => None,
            n => Some(
                arena
                    .alloc(read_slot(n, block), block.max(ALIGN), SlotKind::IoBuffer)
                    .map_err(LoadError::arena)?,
            ),
        };
        let mut sched = Schedule::new(plan.ring_slot, reader, decode);
        let mut layers: heapless::Vec<LayerWeights, MAX_LAYERS> = heapless::Vec::new();
        for l in 0..cfg.layers {
            let missing = LoadError::Layout("layer missing");
            let span = *layout.attn.get(l).ok_or(missing)?;
            let region = *layout.ffn.get(l).ok_or(missing)?;
            let norm = |dev: &mut D, arena: &mut A, t: &TensorAt| {
                read_resident(dev, arena, t.offset, t.len, reader)
                    .map(|s| tensor_in(s, t.offset, t))
            };
            let attn_norm = norm(&mut dev, arena, &span.attn_norm)?;
            let ffn_norm = norm(&mut dev, arena, &span.ffn_norm)?;
            let attn = sched.attention(&mut dev, arena, l, &span, &plan)?;
            layers
                .push(LayerWeights {
                    attn_norm,
                    ffn_norm,
                    attn,
                })
                .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
            sched.ffn(&mut dev, arena, l, &region, &plan)?;
        }
        let mut gemma = heapless::Vec::new();
        for at in &layout.extra_norms {
            let lens = [cfg.head_dim, cfg.head_dim, cfg.hidden, cfg.hidden];
            let mut slots = [None; 4];
            for ((slot, &offset), len) in slots.iter_mut().zip(at).zip(lens) {
                *slot = Some(read_resident(&mut dev, arena, offset, len * 4, reader)?);
            }
            let [Some(q), Some(k), Some(a), Some(f)] = slots else {
                return Err(LoadError::Internal("a Gemma norm was not read"));
            };
            gemma
                .push([q, k, a, f])
                .map_err(|_| LoadError::Config("layers must be 1 to 128"))?;
        }
        let on = &layout.output_norm;
        let output_norm = tensor_in(
            read_resident(&mut dev, arena, on.offset, on.len, reader)?,
            on.offset,
            on,
        );
        let (output, head_part, head_first) = sched.head(&mut dev, arena, &layout.head, &plan)?;
        let head_pieces = sched.units.len() - head_first;
        let embed = if cfg.tied_embeddings { output } else { None };
        let row_slot = if embed.is_none() {
            let len = layout.row_slot_len(block);
            Some(
                arena
                    .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::IoBuffer)
                    .map_err(LoadError::arena)?,
            )
        } else {
            None
        };
        let (act_len, up_len) = act_lens(&layout, cfg, limits);
        let act = scratch(arena, act_len)?.ok_or(LoadError::Internal("no FFN activations"))?;
        let tmp = scratch(arena, up_len)?;
        let max_transfer = dev.geometry().max_transfer as usize;
        let sparse = setup
            .map(|s| Sparse::build(s, arena, &layout, cfg, &plan, max_transfer))
            .transpose()?;
        let ring = Ring::new(
            dev,
            &ring_slots,
            &sched.units,
            row_slot,
            clock,
            reads.checks,
        )?;
        let ring = match decode {
            Some(slot) => ring.decode_into(slot),
            None => ring,
        };
        Ok(StreamSource {
            ring,
            plan,
            resident: Weights {
                embed,
                output_norm,
                output,
                layers,
            },
            attn_unit: sched.attn_unit,
            ffn_unit: sched.ffn_unit,
            rows_unit: sched.rows_unit,
            rows_resident: sched.rows_resident,
            tmp,
            keep: sparse.as_ref().map_or(cfg.ffn, |s| s.keep),
            sparse,
            head_first,
            head_pieces,
            head_part,
            ffn_resident: sched.ffn_resident,
            layout,
            act,
            clock,
            hidden: cfg.hidden,
            ffn: cfg.ffn,
            max_rows: limits.max_batch,
            vocab: cfg.vocab,
            block,
            head_dim: cfg.head_dim,
            gemma,
        })
    }
}
