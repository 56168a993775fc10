//! The metadata prefix an [`ImageBuilder`] writes: header, section table
//! and sections, laid out by the builder's plan, every CRC computed once.

use std::vec;
use std::vec::Vec;

use zerocopy::little_endian::{F32, U16, U32, U64};
use zerocopy::IntoBytes;

use super::super::error::{ErrorKind, Location, SectionKind};
use super::super::header::{encode, ImageHeader};
use super::super::layout::{
    CostRecord, GeometryRecord, LayerRecord, SectionEntry, TensorRecord, HEADER_LEN, MAX_DIMS,
    SECTION_ALIGN, SECTION_ENTRY_LEN, TENSOR_CODEC_SHIFT, VERSION_MAJOR,
};
use crate::checksum::crc32c;

use super::{invalid, part_code, usize_to_u64, ImageBuilder, Plan, WriteError};

impl ImageBuilder<'_> {
    /// Build the metadata prefix (exactly `plan.meta_len` bytes).
    pub(super) fn prefix(&self, plan: &Plan) -> Result<Vec<u8>, WriteError> {
        let g = &self.geometry;
        let geometry = GeometryRecord {
            arch: g.arch.field(),
            layers: U32::new(g.layers),
            hidden: U32::new(g.hidden),
            ffn: U32::new(g.ffn),
            heads: U32::new(g.heads),
            kv_heads: U32::new(g.kv_heads),
            head_dim: U32::new(g.head_dim),
            vocab: U32::new(g.vocab),
            context: U32::new(g.context),
            rope_base: F32::new(g.rope_base),
            rms_eps: F32::new(g.rms_eps),
            fingerprint: U64::new(g.fingerprint),
        };

        let mut strings = Vec::new();
        let mut tensor_table = Vec::with_capacity(self.tensors.len().saturating_mul(72));
        for &i in &plan.order {
            let (Some(t), Some(&offset)) = (self.tensors.get(i), plan.tensor_offsets.get(i)) else {
                continue;
            };
            let at = Location::Tensor(i);
            let name_offset = u32::try_from(strings.len())
                .map_err(|_| invalid(ErrorKind::OutOfRange, at, "string section over 4 GiB"))?;
            let name_len = u32::try_from(t.name.len())
                .map_err(|_| invalid(ErrorKind::OutOfRange, at, "name over 4 GiB"))?;
            strings.extend_from_slice(t.name.as_bytes());
            let mut dims = [U64::new(0); MAX_DIMS];
            for (d, &v) in dims.iter_mut().zip(t.shape.padded().iter()) {
                *d = U64::new(v);
            }
            let rec = TensorRecord {
                name_offset: U32::new(name_offset),
                name_len: U32::new(name_len),
                dtype: U32::new(t.dtype.code() | t.codec.code() << TENSOR_CODEC_SHIFT),
                n_dims: U32::new(t.shape.dims().len() as u32),
                dims,
                offset: U64::new(offset),
                length: U64::new(usize_to_u64(t.data.len())),
                crc: U32::new(crc32c(&t.data)),
                reserved: U32::new(0),
            };
            tensor_table.extend_from_slice(rec.as_bytes());
        }

        let mut layer_table = Vec::with_capacity(self.layers.len().saturating_mul(48));
        let mut placement = Vec::new();
        let mut bundle_crcs = Vec::new();
        let mut codec_tags = Vec::new();
        let mut first_bundle = 0u64;
        let iter = self
            .layers
            .iter()
            .zip(&plan.layers)
            .zip(&plan.layer_offsets);
        for ((spec, p), &offset) in iter {
            let rec = LayerRecord {
                offset: U64::new(offset),
                length: U64::new(u64::from(p.count) * u64::from(p.stride)),
                first_bundle: U64::new(first_bundle),
                count: U32::new(p.count),
                bundle_size: U32::new(p.bundle_size),
                stride: U32::new(p.stride),
                parts: [
                    part_code(spec.parts.gate),
                    part_code(spec.parts.up),
                    part_code(spec.parts.down),
                ],
            };
            layer_table.extend_from_slice(rec.as_bytes());
            first_bundle += u64::from(p.count);
            for &v in spec.perm.iter().chain(p.inverse.iter()) {
                placement.extend_from_slice(&v.to_le_bytes());
            }
            for bundle in spec.bundles.chunks_exact(p.bundle_size.max(1) as usize) {
                bundle_crcs.extend_from_slice(&crc32c(bundle).to_le_bytes());
            }
            if spec.codec_tags.is_empty() {
                codec_tags.resize(codec_tags.len() + spec.perm.len(), 0);
            } else {
                codec_tags.extend_from_slice(&spec.codec_tags);
            }
        }

        let cost = match self.cost {
            Some(c) => CostRecord {
                present: U32::new(1),
                command_ns: U32::new(c.command_ns),
                bytes_per_sec: U64::new(c.bytes_per_sec),
                queue_depth: U16::new(c.queue_depth),
                reserved: [0; 6],
            },
            None => CostRecord {
                present: U32::new(0),
                command_ns: U32::new(0),
                bytes_per_sec: U64::new(0),
                queue_depth: U16::new(0),
                reserved: [0; 6],
            },
        };

        let mut bodies: Vec<(SectionKind, &[u8])> = vec![
            (SectionKind::Geometry, geometry.as_bytes()),
            (SectionKind::Strings, &strings),
            (SectionKind::Tensors, &tensor_table),
            (SectionKind::Layers, &layer_table),
            (SectionKind::Placement, &placement),
            (SectionKind::BundleCrcs, &bundle_crcs),
            (SectionKind::CodecTags, &codec_tags),
            (SectionKind::CostModel, cost.as_bytes()),
        ];
        if let Some(t) = &self.tokenizer {
            bodies.push((SectionKind::Tokenizer, t));
        }
        if let Some(l) = &self.lineage {
            bodies.push((SectionKind::Lineage, l));
        }
        let arch = self.arch.map(|a| a.encode());
        if let Some(a) = &arch {
            bodies.push((SectionKind::Arch, a));
        }
        let meta_len = usize::try_from(plan.meta_len).map_err(|_| {
            invalid(
                ErrorKind::OutOfRange,
                Location::Header,
                "metadata over the address space",
            )
        })?;
        let mut out = vec![0u8; HEADER_LEN + bodies.len() * SECTION_ENTRY_LEN];
        let mut table = Vec::with_capacity(bodies.len() * SECTION_ENTRY_LEN);
        for &(kind, body) in &bodies {
            let start = out.len().next_multiple_of(SECTION_ALIGN as usize);
            out.resize(start, 0);
            out.extend_from_slice(body);
            let entry = SectionEntry {
                kind: U32::new(kind.code()),
                crc: U32::new(crc32c(body)),
                offset: U64::new(usize_to_u64(start)),
                length: U64::new(usize_to_u64(body.len())),
            };
            table.extend_from_slice(entry.as_bytes());
        }
        if out.len() > meta_len {
            return Err(invalid(
                ErrorKind::Malformed,
                Location::Header,
                "metadata grew past its planned length",
            ));
        }
        out.resize(meta_len, 0);
        let header = ImageHeader {
            major: VERSION_MAJOR,
            minor: self.minor(),
            block_size: self.block_size,
            meta_len: plan.meta_len,
            file_len: plan.file_len,
            section_count: bodies.len() as u32,
            table_crc: crc32c(&table),
        };
        if let Some(dst) = out.get_mut(HEADER_LEN..HEADER_LEN + table.len()) {
            dst.copy_from_slice(&table);
        }
        if let Some(dst) = out.get_mut(..HEADER_LEN) {
            dst.copy_from_slice(&encode(&header));
        }
        Ok(out)
    }
}
