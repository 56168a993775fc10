//! The pass's schedule as the loader builds it: what the plan keeps
//! resident is read into its slots (checked), everything else becomes a
//! ring unit in pass order (a layer's attention span, its FFN as one region
//! or a dense layer's three matrices, a split layer's rows, the head in
//! pieces).

use crate::arena::{DramArena, Slot};
use crate::flash::FlashDevice;
use crate::model::config::MAX_LAYERS;
use crate::model::error::LoadError;
use crate::model::tensor::TensorRef;
use crate::model::weights::Attention;

use crate::arena::SlotKind;
use crate::codec::Scratch;
use crate::model::weights::ALIGN;

use super::decode::{copy_within, decode_unit, one_by_one, CodedIn, DecodeFail};
use super::io::{aligned_extent, read_checked, read_resident, Reader};
use super::layout::{AttnSpan, DenseMatrices, FfnRegion, TensorAt};
use super::load::{attention_in, tensor_in};
use super::plan::{read_slot, StreamPlan};
use super::ring::{Unit, MAX_UNITS};
use super::source::NONE;

/// The pass's schedule as it is built, and where each layer's units are.
pub(super) struct Schedule {
    /// How resident units are read and checked.
    reader: Reader,
    pub(super) units: heapless::Vec<Unit, MAX_UNITS>,
    /// Bytes of a ring slot: no unit may be larger.
    slot: usize,
    pub(super) attn_unit: [u16; MAX_LAYERS],
    pub(super) ffn_unit: [u16; MAX_LAYERS],
    pub(super) rows_unit: [u16; MAX_LAYERS],
    pub(super) rows_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    pub(super) ffn_resident: heapless::Vec<Option<Slot>, MAX_LAYERS>,
    /// The decode slot, when the layout has coded units.
    decode: Option<Slot>,
}

impl Schedule {
    pub(super) fn new(slot: usize, reader: Reader, decode: Option<Slot>) -> Self {
        Schedule {
            decode,
            reader,
            units: heapless::Vec::new(),
            slot,
            attn_unit: [NONE; MAX_LAYERS],
            ffn_unit: [NONE; MAX_LAYERS],
            rows_unit: [NONE; MAX_LAYERS],
            rows_resident: heapless::Vec::new(),
            ffn_resident: heapless::Vec::new(),
        }
    }

    /// Appends `unit` and returns its index. A unit larger than a ring
    /// slot (a plan made for another layout) or past [`MAX_UNITS`] is an
    /// error, not a short read.
    pub(super) fn push(&mut self, unit: Unit) -> Result<u16, LoadError> {
        if unit.len > self.slot {
            return Err(LoadError::Config(
                "a streamed unit is larger than an I/O slot",
            ));
        }
        let index = self.units.len() as u16;
        self.units
            .push(unit)
            .map_err(|_| LoadError::Internal("too many streamed units"))?;
        Ok(index)
    }

    /// Layer `l`'s attention: resident (read now) or a unit.
    pub(super) fn attention<D: FlashDevice, A: DramArena>(
        &mut self,
        dev: &mut D,
        arena: &mut A,
        l: usize,
        span: &AttnSpan,
        plan: &StreamPlan,
    ) -> Result<Option<Attention>, LoadError> {
        if plan.attn_is_resident(l) {
            let slot = read_resident(dev, arena, span.start, span.len, self.reader)?;
            return Ok(Some(attention_in(slot, span.start, &span.proj)));
        }
        let index = self.push(Unit::whole(span.start, span.len, plan.block))?;
        if let Some(u) = self.attn_unit.get_mut(l) {
            *u = index;
        }
        Ok(None)
    }

    /// Layer `l`'s FFN: resident slots (read now) or units. A split
    /// layer's rows are a unit of their own; its down columns stream whole
    /// unless a sparse run fetches them per token. A dense layer streams
    /// as its three matrices in the order they multiply (each unit a third
    /// of the layer, so the ring's slots are too).
    pub(super) fn ffn<D: FlashDevice, A: DramArena>(
        &mut self,
        dev: &mut D,
        arena: &mut A,
        l: usize,
        region: &FfnRegion,
        plan: &StreamPlan,
    ) -> Result<(), LoadError> {
        let block = plan.block;
        let resident = plan.ffn_is_resident(l);
        let rows = match region.split() {
            Some(r) if plan.rows_are_resident(l) => {
                Some(read_resident(dev, arena, r.start, r.len, self.reader)?)
            }
            Some(r) => {
                let index = self.push(Unit::whole(r.start, r.len, block))?;
                if let Some(u) = self.rows_unit.get_mut(l) {
                    *u = index;
                }
                None
            }
            None => None,
        };
        let _ = self.rows_resident.push(rows);
        let coded = region
            .dense()
            .filter(|m| [m.gate, m.up, m.down].iter().any(|t| t.stored.is_some()));
        let res = if let Some(m) = coded.filter(|_| resident) {
            Some(self.decode_resident(dev, arena, region, &m)?)
        } else if resident {
            Some(read_resident(
                dev,
                arena,
                region.offset,
                region.len,
                self.reader,
            )?)
        } else if region.split().is_some() && plan.sparse {
            None
        } else {
            if let Some(u) = self.ffn_unit.get_mut(l) {
                *u = self.units.len() as u16;
            }
            let mut units: heapless::Vec<Unit, 3> = heapless::Vec::new();
            match region.dense() {
                Some(m) => {
                    for t in [m.gate, m.up, m.down] {
                        let (at, len) = t.device();
                        let (start, len, skip) = aligned_extent(at, len, block);
                        let decoded = if t.stored.is_some() { t.len } else { 0 };
                        let _ = units.push(Unit {
                            start,
                            len,
                            skip,
                            head: false,
                            decoded,
                        });
                    }
                }
                None => {
                    let _ = units.push(Unit::whole(region.offset, region.len, block));
                }
            }
            for u in units {
                self.push(u)?;
            }
            None
        };
        let _ = self.ffn_resident.push(res);
        Ok(())
    }

    /// A resident dense layer with coded matrices, in one slot laid out as
    /// `region` says: each matrix read (checked) into the decode slot, then
    /// decoded, or copied when raw, into its place. The decoder's 56 KiB of
    /// tables are on the stack for the load.
    fn decode_resident<D: FlashDevice, A: DramArena>(
        &mut self,
        dev: &mut D,
        arena: &mut A,
        region: &FfnRegion,
        m: &DenseMatrices,
    ) -> Result<Slot, LoadError> {
        let block = self.reader.block;
        let tmp = self
            .decode
            .ok_or(LoadError::Internal("a coded layer and no decode slot"))?;
        let slot = arena
            .alloc(
                read_slot(region.len, block),
                block.max(ALIGN),
                SlotKind::Resident,
            )
            .map_err(LoadError::arena)?;
        let mut scratch = Scratch::default();
        for t in [m.gate, m.up, m.down] {
            let (at, len) = t.device();
            let (start, rlen, skip) = aligned_extent(at, len, block);
            read_checked(dev, arena, tmp, start, rlen, self.reader.checks.as_ref())?;
            let src = CodedIn {
                slot: tmp,
                at: skip,
                len,
            };
            let dst = (slot, (t.offset - region.offset) as usize, t.len);
            let checked = self.reader.checks.is_some();
            let done = match t.stored {
                Some(_) => decode_unit(arena, src, dst, checked, one_by_one(&mut scratch)),
                None => copy_within(arena, src, dst),
            };
            done.map_err(|e| match e {
                DecodeFail::Arena(k) => LoadError::arena(k),
                DecodeFail::Compute(k) => LoadError::compute(k),
                DecodeFail::Corrupt => LoadError::Corrupt {
                    offset: at,
                    attempts: 1,
                },
            })?;
        }
        Ok(slot)
    }

    /// The output head: resident whole, or its first rows resident and the
    /// rest streamed in pieces of `plan.head_rows` rows. Returns the
    /// resident head, the resident first rows, and the first piece's unit.
    pub(super) fn head<D: FlashDevice, A: DramArena>(
        &mut self,
        dev: &mut D,
        arena: &mut A,
        head: &TensorAt,
        plan: &StreamPlan,
    ) -> Result<(Option<TensorRef>, Option<TensorRef>, usize), LoadError> {
        let block = plan.block;
        let rb = head.row_bytes();
        if plan.head_resident {
            let slot = read_resident(dev, arena, head.offset, head.len, self.reader)?;
            return Ok((
                Some(tensor_in(slot, head.offset, head)),
                None,
                self.units.len(),
            ));
        }
        let first = self.units.len();
        let rows = plan.head_rows.max(1);
        let part_rows = plan.head_resident_rows.min(head.rows);
        let mut r0 = part_rows;
        while r0 < head.rows {
            let r1 = (r0 + rows).min(head.rows);
            let (start, len, skip) =
                aligned_extent(head.offset + (r0 * rb) as u64, (r1 - r0) * rb, block);
            self.push(Unit {
                start,
                len,
                skip,
                head: true,
                decoded: 0,
            })?;
            r0 = r1;
        }
        let part = if part_rows > 0 {
            let slot = read_resident(dev, arena, head.offset, part_rows * rb, self.reader)?;
            Some(TensorRef {
                slot,
                offset: 0,
                dtype: head.dtype,
                rows: part_rows,
                cols: head.cols,
            })
        } else {
            None
        };
        Ok((None, part, first))
    }
}
