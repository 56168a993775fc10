//! A KV chunk as bytes to park in DRAM or write to the swap area, at a
//! compression level, and back.
//!
//! # Payload layout
//!
//! For a model of `layers` layers and `kv_dim` values per position, a
//! chunk at [`ChunkLevel::Quantized`]`(bits)` is, in order:
//!
//! | part | bytes | encoding |
//! |---|---|---|
//! | layer 0 keys | `KvGroups::PerChannel { kv_dim }.packed_len(16 * kv_dim, bits)` | one group per channel over the 16 positions (KIVI) |
//! | layer 0 values | `KvGroups::PerToken.packed_len(16 * kv_dim, bits)` | groups of 32 values of one position |
//! | layers 1.. | as layer 0 | |
//! | tallies | 64 | the 16 attention tallies, f32 little-endian |
//!
//! with groups as `lode_hal::compute::kv` documents them (f16 step, f16
//! minimum, codes packed LSB-first). At [`ChunkLevel::F32`] the payload is
//! the chunk slot itself: every layer's keys and values as f32, then the
//! tallies, all little-endian (every target lode builds for is).
//!
//! A sliding-window model's chunk is two parts ([`layout`](super::layout)):
//! its payload is the main part's, laid out as above over the layers that
//! see the whole context, then, while it lives, the window part's over the
//! local layers (whose tallies are zero).
//!
//! Keys per channel, values per token, because that is what measured best
//! (`lode bench kv`): with 2-bit keys grouped per position SmolLM2's
//! perplexity rose 117-156% on three held-out texts, per channel 10-12%.
//!
//! Only a full chunk is quantized: a partly filled chunk's unwritten rows
//! hold whatever the arena had there, which would stretch every channel's
//! range, so the tail chunk of a context is kept at [`ChunkLevel::F32`].

use crate::compute::{Compute, KvBits, KvGroups};

use super::super::config::CHUNK_TOKENS;
use super::super::error::EvalError;
use super::super::view::{f32s, f32s_mut};

/// How a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ChunkLevel {
    /// As in the cache: f32, exact.
    F32,
    /// Quantized to 8, 4 or 2 bits.
    Quantized(KvBits),
}

impl ChunkLevel {
    /// The level's code in a swap record: its bits per value (32, 8, 4, 2).
    pub const fn code(self) -> u8 {
        match self {
            ChunkLevel::F32 => 32,
            ChunkLevel::Quantized(b) => b.bits() as u8,
        }
    }

    /// The level of a swap record's code, `None` for an unknown one.
    pub const fn from_code(code: u8) -> Option<ChunkLevel> {
        Some(match code {
            32 => ChunkLevel::F32,
            8 => ChunkLevel::Quantized(KvBits::B8),
            4 => ChunkLevel::Quantized(KvBits::B4),
            2 => ChunkLevel::Quantized(KvBits::B2),
            _ => return None,
        })
    }
}

/// Shape of the chunks of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkShape {
    /// Layers.
    pub layers: usize,
    /// Keys (and values) per position.
    pub kv_dim: usize,
}

const TALLY_BYTES: usize = CHUNK_TOKENS * 4;

impl ChunkShape {
    fn block(self) -> usize {
        CHUNK_TOKENS * self.kv_dim
    }

    fn keys(self) -> KvGroups {
        KvGroups::PerChannel {
            channels: self.kv_dim,
        }
    }

    /// Encoded bytes of one layer's keys and values at `bits`.
    fn layer_bytes(self, bits: KvBits) -> Option<(usize, usize)> {
        let k = self.keys().packed_len(self.block(), bits)?;
        let v = KvGroups::PerToken.packed_len(self.block(), bits)?;
        Some((k, v))
    }

    /// Bytes of a chunk slot (f32 keys and values, then the tallies).
    pub const fn slot_bytes(self) -> usize {
        (self.layers * 2 * CHUNK_TOKENS * self.kv_dim) * 4 + TALLY_BYTES
    }

    /// Payload bytes of a chunk at `level`, `None` when a block of
    /// `16 x kv_dim` values does not split into groups of 32 (an odd
    /// `kv_dim`).
    pub fn payload_bytes(self, level: ChunkLevel) -> Option<usize> {
        match level {
            ChunkLevel::F32 => Some(self.slot_bytes()),
            ChunkLevel::Quantized(bits) => {
                let (k, v) = self.layer_bytes(bits)?;
                (k + v).checked_mul(self.layers)?.checked_add(TALLY_BYTES)
            }
        }
    }
}

fn shape_error() -> EvalError {
    EvalError::Internal("KV chunk payload of the wrong size")
}

/// Encodes the chunk slot `chunk` (`shape.slot_bytes()` bytes) at `level`
/// into `out` (exactly `payload_bytes(level)` bytes).
pub fn encode_chunk<C: Compute>(
    compute: &mut C,
    shape: ChunkShape,
    level: ChunkLevel,
    chunk: &[u8],
    out: &mut [u8],
) -> Result<(), EvalError> {
    if chunk.len() != shape.slot_bytes() || shape.payload_bytes(level) != Some(out.len()) {
        return Err(shape_error());
    }
    let bits = match level {
        ChunkLevel::F32 => {
            out.copy_from_slice(chunk);
            return Ok(());
        }
        ChunkLevel::Quantized(b) => b,
    };
    let (kb, vb) = shape.layer_bytes(bits).ok_or_else(shape_error)?;
    let data = chunk.len() - TALLY_BYTES;
    let floats = f32s(chunk.get(..data).ok_or_else(shape_error)?)?;
    let (body, tally) = out.split_at_mut(out.len() - TALLY_BYTES);
    for (layer, enc) in floats
        .chunks_exact(2 * shape.block())
        .zip(body.chunks_exact_mut(kb + vb))
    {
        let (keys, values) = layer.split_at(shape.block());
        let (ek, ev) = enc.split_at_mut(kb);
        compute
            .kv_quantize(keys, shape.keys(), bits, ek)
            .map_err(EvalError::compute)?;
        compute
            .kv_quantize(values, KvGroups::PerToken, bits, ev)
            .map_err(EvalError::compute)?;
    }
    tally.copy_from_slice(chunk.get(data..).ok_or_else(shape_error)?);
    Ok(())
}

/// Decodes `payload` (a chunk at `level`) into the chunk slot `chunk`.
pub fn decode_chunk<C: Compute>(
    compute: &mut C,
    shape: ChunkShape,
    level: ChunkLevel,
    payload: &[u8],
    chunk: &mut [u8],
) -> Result<(), EvalError> {
    if chunk.len() != shape.slot_bytes() || shape.payload_bytes(level) != Some(payload.len()) {
        return Err(shape_error());
    }
    let bits = match level {
        ChunkLevel::F32 => {
            chunk.copy_from_slice(payload);
            return Ok(());
        }
        ChunkLevel::Quantized(b) => b,
    };
    let (kb, vb) = shape.layer_bytes(bits).ok_or_else(shape_error)?;
    let data = chunk.len() - TALLY_BYTES;
    let (body, tally) = payload.split_at(payload.len() - TALLY_BYTES);
    let (floats, chunk_tally) = chunk.split_at_mut(data);
    let floats = f32s_mut(floats)?;
    for (layer, enc) in floats
        .chunks_exact_mut(2 * shape.block())
        .zip(body.chunks_exact(kb + vb))
    {
        let (keys, values) = layer.split_at_mut(shape.block());
        let (ek, ev) = enc.split_at(kb);
        compute
            .kv_dequantize(ek, shape.keys(), bits, keys)
            .map_err(EvalError::compute)?;
        compute
            .kv_dequantize(ev, KvGroups::PerToken, bits, values)
            .map_err(EvalError::compute)?;
    }
    chunk_tally.copy_from_slice(tally);
    Ok(())
}
