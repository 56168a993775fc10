//! The streaming FFN source: resident units loaded once, streamed units
//! read through the ring each pass, the FFN computed over bundles.

use lode_formats::image::Image;

use crate::arena::{DramArena, Slot, SlotKind};
use crate::compute::{Bundles, Compute};
use crate::flash::{FlashDevice, ReadRequest};
use crate::model::bundle_ffn::ffn_rows;
use crate::model::config::{Limits, LlamaConfig, MAX_LAYERS};
use crate::model::error::ModelError;
use crate::model::ffn::{checked_call, FfnIo, FfnSource};
use crate::model::tensor::TensorRef;
use crate::model::view::split;
use crate::model::weights::{Attention, LayerWeights, Weights, ALIGN};

use super::layout::{StreamLayout, TensorAt};
use super::plan::{blocks, read_slot, StreamPlan};
use super::ring::{IoStats, Ring, Unit, MAX_UNITS};

const NONE: u16 = u16::MAX;

/// Every FFN (and whatever else the plan streams) read from flash.
#[derive(Debug)]
pub struct StreamSource<D> {
    ring: Ring<D>,
    plan: StreamPlan,
    /// Schedule index of each layer's attention, or `NONE` when resident.
    attn_unit: [u16; MAX_LAYERS],
    /// Schedule index of each layer's FFN, or `NONE` when resident.
    ffn_unit: [u16; MAX_LAYERS],
    /// Schedule index of the first head piece (when streamed).
    head_first: usize,
    head_pieces: usize,
    /// Resident FFN slots (`None` for streamed layers).
    ffn_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// Per-layer spans and regions (offsets into slots).
    layout: StreamLayout,
    act: Slot,
    hidden: usize,
    ffn: usize,
    max_rows: usize,
    vocab: usize,
    block: usize,
}

/// Reads `len` bytes at block-aligned `start` into `slot` and waits:
/// commands of at most `max_transfer`, never more than the queue takes.
pub fn read_extent<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    slot: Slot,
    start: u64,
    len: usize,
) -> Result<(), ModelError> {
    let g = dev.geometry();
    let max = (g.max_transfer as usize).max(g.block_size as usize).max(1);
    let depth = usize::from(g.queue_depth.max(1)).min(16);
    let mut at = 0usize;
    while at < len {
        let mut batch: heapless::Vec<ReadRequest, 16> = heapless::Vec::new();
        while at < len && batch.len() < depth {
            let n = (len - at).min(max);
            let _ = batch.push(ReadRequest {
                tag: batch.len() as u32,
                offset: start + at as u64,
                len: u32::try_from(n).map_err(|_| ModelError::Config("read too large"))?,
                dest: slot,
                dest_offset: at,
            });
            at += n;
        }
        dev.read_blocking(arena, &batch).map_err(|e| match e {
            crate::flash::ReadError::Device(e) => ModelError::Device(crate::flash::Error::kind(&e)),
            crate::flash::ReadError::Failed { tag, kind } => ModelError::Read {
                offset: start + batch.get(tag as usize).map_or(0, |r| r.offset - start),
                kind,
            },
        })?;
    }
    Ok(())
}

/// Checks every data byte of `img` (tensors, bundles, padding) against its
/// CRC by streaming it through `slot` from `dev`: the image is validated
/// before any weight is trusted.
pub fn verify_image_data<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    img: &Image<'_>,
    slot: Slot,
    mut progress: impl FnMut(u64, u64),
) -> Result<(), ModelError> {
    let h = img.header();
    let (start, end) = (h.meta_len, h.file_len);
    let block = u64::from(dev.geometry().block_size.max(1));
    let cap = arena.bytes(slot).map_err(ModelError::arena)?.len() as u64 / block * block;
    if cap == 0 {
        return Err(ModelError::Config(
            "the verification buffer is smaller than a block",
        ));
    }
    let mut v = img.data_verifier();
    let mut at = start;
    while at < end {
        let n = (end - at).min(cap);
        let len = usize::try_from(n).map_err(|_| ModelError::Config("read too large"))?;
        read_extent(dev, arena, slot, at, len)?;
        let data = arena
            .bytes(slot)
            .map_err(ModelError::arena)?
            .get(..len)
            .ok_or(ModelError::Config("verification buffer too small"))?;
        v.update(data).map_err(ModelError::Image)?;
        at += n;
        progress(at - start, end - start);
    }
    v.finish().map_err(ModelError::Image)
}

fn read_resident<D: FlashDevice, A: DramArena>(
    dev: &mut D,
    arena: &mut A,
    start: u64,
    len: usize,
    block: usize,
) -> Result<Slot, ModelError> {
    let slot = arena
        .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::Resident)
        .map_err(ModelError::arena)?;
    read_extent(dev, arena, slot, start, blocks(len, block))?;
    Ok(slot)
}

fn tensor_in(slot: Slot, base: u64, t: &TensorAt) -> TensorRef {
    TensorRef {
        slot,
        offset: (t.offset - base) as usize,
        dtype: t.dtype,
        rows: t.rows,
        cols: t.cols,
    }
}

fn attention_in(slot: Slot, base: u64, p: &[TensorAt; 4]) -> Attention {
    let [q, k, v, o] = p;
    Attention {
        q: tensor_in(slot, base, q),
        k: tensor_in(slot, base, k),
        v: tensor_in(slot, base, v),
        o: tensor_in(slot, base, o),
    }
}

fn aligned_extent(start: u64, len: usize, block: usize) -> (u64, usize, usize) {
    let b = block as u64;
    let s = start / b * b;
    let skip = (start - s) as usize;
    (s, blocks(skip + len, block), skip)
}

impl<D: FlashDevice> StreamSource<D> {
    /// Loads what `plan` keeps resident from `dev` into `arena` and builds
    /// the streaming source for the rest; returns the resident weights the
    /// [`Model`](crate::model::Model) keeps. Run
    /// [`verify_image_data`] first: loading trusts the bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn load<A: DramArena>(
        mut dev: D,
        arena: &mut A,
        layout: StreamLayout,
        cfg: &LlamaConfig,
        limits: &Limits,
        plan: StreamPlan,
        clock: fn() -> u64,
    ) -> Result<(Weights, StreamSource<D>), ModelError> {
        limits.validate(cfg)?;
        let block = plan.block;
        if dev.geometry().block_size as usize != block {
            return Err(ModelError::Config(
                "the plan was made for another block size",
            ));
        }
        let b = block as u64;
        let misaligned = layout.attn.iter().any(|a| !a.start.is_multiple_of(b))
            || layout.ffn.iter().any(|f| !f.offset.is_multiple_of(b))
            || !layout.head.offset.is_multiple_of(b);
        if misaligned {
            return Err(ModelError::Config(
                "the image's block size is smaller than the device's; repack with a larger \
                 --block-size",
            ));
        }
        // The ring first, so a failed load leaves nothing half placed.
        let mut ring_slots: heapless::Vec<Slot, { super::plan::MAX_RING }> = heapless::Vec::new();
        for _ in 0..plan.ring {
            let s = arena
                .alloc(plan.ring_slot, block.max(ALIGN), SlotKind::IoBuffer)
                .map_err(ModelError::arena)?;
            let _ = ring_slots.push(s);
        }
        let norm = |dev: &mut D, arena: &mut A, t: &TensorAt| -> Result<TensorRef, ModelError> {
            let slot = read_resident(dev, arena, t.offset, t.len, block)?;
            Ok(tensor_in(slot, t.offset, t))
        };
        let mut layers: heapless::Vec<LayerWeights, MAX_LAYERS> = heapless::Vec::new();
        let mut schedule: heapless::Vec<Unit, MAX_UNITS> = heapless::Vec::new();
        let mut attn_unit = [NONE; MAX_LAYERS];
        let mut ffn_unit = [NONE; MAX_LAYERS];
        let mut ffn_resident = heapless::Vec::new();
        let too_many = || ModelError::Config("too many streamed units");
        for l in 0..cfg.layers {
            let span = *layout
                .attn
                .get(l)
                .ok_or(ModelError::Config("layer missing"))?;
            let region = *layout
                .ffn
                .get(l)
                .ok_or(ModelError::Config("layer missing"))?;
            let attn_norm = norm(&mut dev, arena, &span.attn_norm)?;
            let ffn_norm = norm(&mut dev, arena, &span.ffn_norm)?;
            let attn = if plan.attn_is_resident(l) {
                let slot = read_resident(&mut dev, arena, span.start, span.len, block)?;
                Some(attention_in(slot, span.start, &span.proj))
            } else {
                if let Some(u) = attn_unit.get_mut(l) {
                    *u = schedule.len() as u16;
                }
                schedule
                    .push(Unit {
                        start: span.start,
                        len: blocks(span.len, block),
                        skip: 0,
                        head: false,
                    })
                    .map_err(|_| too_many())?;
                None
            };
            layers
                .push(LayerWeights {
                    attn_norm,
                    ffn_norm,
                    attn,
                })
                .map_err(|_| ModelError::Config("layers must be 1 to 128"))?;
            let res = if plan.ffn_is_resident(l) {
                Some(read_resident(
                    &mut dev,
                    arena,
                    region.offset,
                    region.len,
                    block,
                )?)
            } else {
                if let Some(u) = ffn_unit.get_mut(l) {
                    *u = schedule.len() as u16;
                }
                schedule
                    .push(Unit {
                        start: region.offset,
                        len: blocks(region.len, block),
                        skip: 0,
                        head: false,
                    })
                    .map_err(|_| too_many())?;
                None
            };
            let _ = ffn_resident.push(res);
        }
        let output_norm = norm(&mut dev, arena, &layout.output_norm)?;
        let head = layout.head;
        let rb = head.row_bytes();
        let (output, head_first, head_pieces) = if plan.head_resident {
            let slot = read_resident(&mut dev, arena, head.offset, head.len, block)?;
            (Some(tensor_in(slot, head.offset, &head)), schedule.len(), 0)
        } else {
            let first = schedule.len();
            let rows = plan.head_rows.max(1);
            let mut r0 = 0usize;
            while r0 < head.rows {
                let r1 = (r0 + rows).min(head.rows);
                let (start, len, skip) =
                    aligned_extent(head.offset + (r0 * rb) as u64, (r1 - r0) * rb, block);
                if len > plan.ring_slot {
                    return Err(ModelError::Config(
                        "a head piece is larger than an I/O slot",
                    ));
                }
                schedule
                    .push(Unit {
                        start,
                        len,
                        skip,
                        head: true,
                    })
                    .map_err(|_| too_many())?;
                r0 = r1;
            }
            (None, first, schedule.len() - first)
        };
        let embed = if cfg.tied_embeddings { output } else { None };
        let row_slot = if embed.is_none() {
            let len = blocks(layout.embed.row_bytes() + block, block);
            Some(
                arena
                    .alloc(read_slot(len, block), block.max(ALIGN), SlotKind::IoBuffer)
                    .map_err(ModelError::arena)?,
            )
        } else {
            None
        };
        let act = arena
            .alloc(cfg.ffn.saturating_mul(4), ALIGN, SlotKind::Scratch)
            .map_err(ModelError::arena)?;
        if schedule.iter().any(|u| u.len > plan.ring_slot) {
            return Err(ModelError::Config(
                "a streamed unit is larger than an I/O slot",
            ));
        }
        let ring = Ring::new(dev, &ring_slots, &schedule, row_slot, clock)?;
        let weights = Weights {
            embed,
            output_norm,
            output,
            layers,
        };
        Ok((
            weights,
            StreamSource {
                ring,
                plan,
                attn_unit,
                ffn_unit,
                head_first,
                head_pieces,
                ffn_resident,
                layout,
                act,
                hidden: cfg.hidden,
                ffn: cfg.ffn,
                max_rows: limits.max_batch,
                vocab: cfg.vocab,
                block,
            },
        ))
    }

    /// The plan this source follows.
    pub fn plan(&self) -> &StreamPlan {
        &self.plan
    }

    /// I/O measured so far.
    pub fn io_stats(&self) -> IoStats {
        self.ring.stats()
    }

    /// The device.
    pub fn device(&self) -> &D {
        self.ring.device()
    }

    /// Waits for every read in flight (call after an error, before
    /// dropping the arena).
    pub fn quiesce<A: DramArena>(&mut self, arena: &mut A) -> Result<(), ModelError> {
        self.ring.quiesce(arena)
    }
}

impl<D: FlashDevice> FfnSource for StreamSource<D> {
    fn run<A: DramArena, C: Compute>(
        &mut self,
        layer: usize,
        arena: &mut A,
        compute: &mut C,
        io: FfnIo,
    ) -> Result<(), ModelError> {
        let region = checked_call(&self.layout.ffn, layer, &io, self.max_rows)?;
        let resident = self.ffn_resident.get(layer).copied().flatten();
        let (slot, skip) = match resident {
            Some(s) => (s, 0),
            None => {
                let u = self.ffn_unit.get(layer).copied().unwrap_or(NONE);
                self.ring.acquire(arena, usize::from(u))?
            }
        };
        let (table, mem) = arena.parts_mut();
        let ([h, o], sh) = split(table, mem, [self.act, io.output])?;
        let data = sh
            .get(slot)?
            .get(skip..skip + region.len)
            .ok_or(ModelError::Config("a streamed FFN region is cut short"))?;
        let bundles = Bundles {
            dtype: region.types.rows,
            down_dtype: region.types.down,
            hidden: self.hidden,
            count: region.count,
            data,
        };
        let x = sh.f32s(io.input)?;
        ffn_rows(compute, &bundles, x, h, o, io.rows, self.ffn)
    }

    fn begin_pass<A: DramArena>(&mut self, arena: &mut A, logits: bool) -> Result<(), ModelError> {
        self.ring.begin_pass(arena, logits)
    }

    fn attention<A: DramArena>(
        &mut self,
        layer: usize,
        arena: &mut A,
        resident: Option<Attention>,
    ) -> Result<Attention, ModelError> {
        if let Some(a) = resident {
            return Ok(a);
        }
        let span = *self
            .layout
            .attn
            .get(layer)
            .ok_or(ModelError::Config("attention layer out of range"))?;
        let u = self.attn_unit.get(layer).copied().unwrap_or(NONE);
        let (slot, skip) = self.ring.acquire(arena, usize::from(u))?;
        let mut a = attention_in(slot, span.start, &span.proj);
        for t in [&mut a.q, &mut a.k, &mut a.v, &mut a.o] {
            t.offset += skip;
        }
        Ok(a)
    }

    fn embedding_row<A: DramArena>(
        &mut self,
        token: u32,
        arena: &mut A,
        resident: Option<TensorRef>,
    ) -> Result<(TensorRef, usize), ModelError> {
        if let Some(e) = resident {
            return Ok((e, token as usize));
        }
        let e = self.layout.embed;
        let t = token as usize;
        if t >= e.rows {
            return Err(ModelError::TokenOutOfRange {
                token,
                vocab: self.vocab,
            });
        }
        let rb = e.row_bytes();
        let (start, len, skip) = aligned_extent(e.offset + (t * rb) as u64, rb, self.block);
        let slot = self.ring.read_row(arena, start, len)?;
        Ok((
            TensorRef {
                slot,
                offset: skip,
                dtype: e.dtype,
                rows: 1,
                cols: e.cols,
            },
            0,
        ))
    }

    fn head_piece<A: DramArena>(
        &mut self,
        piece: usize,
        arena: &mut A,
        resident: Option<TensorRef>,
    ) -> Result<Option<(TensorRef, usize)>, ModelError> {
        if let Some(h) = resident {
            return Ok((piece == 0).then_some((h, 0)));
        }
        if piece >= self.head_pieces {
            return Ok(None);
        }
        let head = self.layout.head;
        let rows = self.plan.head_rows.max(1);
        let r0 = piece * rows;
        let n = rows.min(head.rows.saturating_sub(r0));
        let (slot, skip) = self.ring.acquire(arena, self.head_first + piece)?;
        Ok(Some((
            TensorRef {
                slot,
                offset: skip,
                dtype: head.dtype,
                rows: n,
                cols: head.cols,
            },
            r0,
        )))
    }
}
