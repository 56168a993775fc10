//! Laying an image out before writing it: each layer's bundle region
//! checked and sized, the sections' lengths and the minor version they
//! need, and every tensor's and layer's offset.

use std::vec;
use std::vec::Vec;

use super::super::error::{ErrorKind, Location, SectionKind};
use super::super::header::align_up;
use super::super::layout::{
    CostRecord, GeometryRecord, LayerRecord, TensorRecord, HEADER_LEN, MINOR_ARCH, MINOR_BASE,
    MINOR_CHAIN, MINOR_CODEC_V2, MINOR_CODED, MINOR_LINEAGE, MINOR_TOKENIZER, SECTION_ALIGN,
    SECTION_ENTRY_LEN, VERSION_MINOR,
};

use super::super::codec::TensorCodec;
use super::{invalid, usize_to_u64, ImageBuilder, LayerSpec, Plan, PlannedLayer, WriteError};

impl ImageBuilder<'_> {
    fn plan_layer(&self, l: usize, spec: &LayerSpec<'_>) -> Result<PlannedLayer, WriteError> {
        let at = Location::Layer(l);
        if spec
            .parts
            .in_order()
            .iter()
            .flatten()
            .any(|&d| !super::super::tables::in_image(d, VERSION_MINOR))
        {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "element type not defined for lode images",
            ));
        }
        let any_1_3 = spec
            .parts
            .in_order()
            .iter()
            .flatten()
            .any(|&d| super::super::tables::minor_for(d) == Some(MINOR_ARCH));
        let bundle_size = match spec.parts.bundle_bytes(self.geometry.hidden) {
            Some(b) => b,
            // An empty (dense) layer naming a down type whose row of
            // `hidden` is not whole blocks: no bundles, size 0 (since 1.3,
            // which such a type needs anyway).
            None if spec.perm.is_empty() && any_1_3 => 0,
            None => {
                return Err(invalid(
                    ErrorKind::Malformed,
                    at,
                    "parts give no whole-block bundle for this hidden width",
                ))
            }
        };
        let count = u32::try_from(spec.perm.len())
            .map_err(|_| invalid(ErrorKind::OutOfRange, at, "more than 2^32 - 1 bundles"))?;
        let stride = spec.stride.unwrap_or(bundle_size);
        if stride < bundle_size {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "stride is smaller than a bundle",
            ));
        }
        let want = u64::from(count).checked_mul(u64::from(bundle_size));
        if want != Some(usize_to_u64(spec.bundles.len())) {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "bundle bytes are not count times bundle size",
            ));
        }
        if !spec.codec_tags.is_empty() && spec.codec_tags.len() != spec.perm.len() {
            return Err(invalid(
                ErrorKind::Malformed,
                at,
                "codec tags are neither empty nor one per bundle",
            ));
        }
        let mut inverse = vec![u32::MAX; spec.perm.len()];
        for (pos, &neuron) in spec.perm.iter().enumerate() {
            match inverse.get_mut(neuron as usize) {
                Some(slot) if *slot == u32::MAX => *slot = pos as u32,
                _ => {
                    return Err(invalid(
                        ErrorKind::Malformed,
                        at,
                        "placement is not a permutation of 0..count",
                    ))
                }
            }
        }
        Ok(PlannedLayer {
            count,
            bundle_size,
            stride,
            inverse,
        })
    }

    /// Section lengths in table order.
    fn section_lengths(&self, strings_len: usize, total_bundles: u64) -> Vec<(SectionKind, u64)> {
        use SectionKind as K;
        let n = |x: usize| usize_to_u64(x);
        let mut lengths = vec![
            (K::Geometry, n(core::mem::size_of::<GeometryRecord>())),
            (K::Strings, n(strings_len)),
            (
                K::Tensors,
                n(self
                    .tensors
                    .len()
                    .saturating_mul(core::mem::size_of::<TensorRecord>())),
            ),
            (
                K::Layers,
                n(self
                    .layers
                    .len()
                    .saturating_mul(core::mem::size_of::<LayerRecord>())),
            ),
            (K::Placement, total_bundles.saturating_mul(8)),
            (K::BundleCrcs, total_bundles.saturating_mul(4)),
            (K::CodecTags, total_bundles),
            (K::CostModel, n(core::mem::size_of::<CostRecord>())),
        ];
        if let Some(t) = &self.tokenizer {
            lengths.push((K::Tokenizer, n(t.len())));
        }
        if let Some(l) = &self.lineage {
            lengths.push((K::Lineage, n(l.len())));
        }
        if self.arch.is_some() {
            lengths.push((K::Arch, 16));
        }
        lengths
    }

    /// The minor version this image needs: the lowest that defines every
    /// section it has, so an image without 1.1 sections stays a 1.0 image.
    pub(super) fn minor(&self) -> u16 {
        let types = self.tensors.iter().map(|t| t.dtype).chain(
            self.layers
                .iter()
                .flat_map(|l| l.parts.in_order().into_iter().flatten()),
        );
        let by_types = types
            .filter_map(super::super::tables::minor_for)
            .max()
            .unwrap_or(MINOR_BASE);
        let coded = self.tensors.iter().any(|t| t.codec != TensorCodec::Raw);
        let chained = self.tensors.iter().any(|t| t.codec == TensorCodec::Chain);
        let v2 = self.tensors.iter().any(|t| t.codec == TensorCodec::ChainV2);
        let by_sections = if v2 {
            MINOR_CODEC_V2
        } else if chained {
            MINOR_CHAIN
        } else if coded {
            MINOR_CODED
        } else if self.arch.is_some() {
            MINOR_ARCH
        } else if self.lineage.is_some() {
            MINOR_LINEAGE
        } else if self.tokenizer.is_some() {
            MINOR_TOKENIZER
        } else {
            MINOR_BASE
        };
        by_types.max(by_sections)
    }

    pub(super) fn plan(&self) -> Result<Plan, WriteError> {
        let block = u64::from(self.block_size);
        if !self.block_size.is_power_of_two() {
            return Err(invalid(
                ErrorKind::Malformed,
                Location::Header,
                "block size is not a power of two",
            ));
        }
        let overflow = |at| invalid(ErrorKind::OutOfRange, at, "image size overflows");

        let mut order: Vec<usize> = (0..self.tensors.len()).collect();
        order.sort_by(|&a, &b| {
            let name = |i: usize| self.tensors.get(i).map(|t| t.name.as_bytes());
            name(a).cmp(&name(b))
        });

        let mut layers = Vec::with_capacity(self.layers.len());
        let mut total: u64 = 0;
        for (l, spec) in self.layers.iter().enumerate() {
            let planned = self.plan_layer(l, spec)?;
            total = total
                .checked_add(u64::from(planned.count))
                .ok_or(overflow(Location::Layer(l)))?;
            layers.push(planned);
        }

        let strings_len: usize = self.tensors.iter().map(|t| t.name.len()).sum();
        let sections = self.section_lengths(strings_len, total);
        let mut end = usize_to_u64(HEADER_LEN + sections.len() * SECTION_ENTRY_LEN);
        for (_, len) in sections {
            let start = align_up(end, SECTION_ALIGN).ok_or(overflow(Location::Header))?;
            end = start.checked_add(len).ok_or(overflow(Location::Header))?;
        }
        let meta_len = align_up(end, block).ok_or(overflow(Location::Header))?;

        let mut cursor = meta_len;
        let mut place = |len: u64, at: Location| -> Result<u64, WriteError> {
            let offset = cursor;
            cursor = offset
                .checked_add(len)
                .and_then(|e| align_up(e, block))
                .ok_or(overflow(at))?;
            Ok(offset)
        };
        let mut tensor_offsets = vec![0u64; self.tensors.len()];
        for &i in &order {
            let (Some(t), Some(slot)) = (self.tensors.get(i), tensor_offsets.get_mut(i)) else {
                continue;
            };
            *slot = place(usize_to_u64(t.data.len()), Location::Tensor(i))?;
        }
        let mut layer_offsets = Vec::with_capacity(layers.len());
        for (l, p) in layers.iter().enumerate() {
            let len = u64::from(p.count) * u64::from(p.stride);
            layer_offsets.push(place(len, Location::Layer(l))?);
        }
        Ok(Plan {
            meta_len,
            file_len: cursor,
            order,
            tensor_offsets,
            layer_offsets,
            layers,
        })
    }
}
