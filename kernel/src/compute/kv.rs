//! How a KV block is quantized: the bit widths and the groupings the
//! [`Compute`](super::Compute) codec takes, and the encoded sizes both
//! imply (the kernel sizes its buffers with them).

/// Bits per element of a quantized KV chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvBits {
    /// 8 bits per element.
    B8,
    /// 4 bits per element.
    B4,
    /// 2 bits per element.
    B2,
}

/// How a KV block's elements are grouped for quantization: each group gets
/// its own step and minimum (f16 each), so a group's range should be
/// narrow. A block is `rows` positions of `channels` values, position-major.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum KvGroups {
    /// Groups of 32 consecutive elements, so per position: how KIVI
    /// quantizes values.
    PerToken,
    /// One group per channel over all the block's positions, stored
    /// channel after channel: how KIVI quantizes keys, whose outlier
    /// channels would otherwise stretch every group they share. Measured
    /// on SmolLM2 (`lode bench kv`), 2-bit keys cost 17% perplexity this
    /// way against 222% per position.
    PerChannel {
        /// Values per position.
        channels: usize,
    },
}

impl KvGroups {
    /// Elements per group for a block of `elems` elements, `None` when
    /// the block does not split into whole groups of a multiple of 4
    /// elements (so every group's codes fill whole bytes).
    pub const fn group_len(self, elems: usize) -> Option<usize> {
        let g = match self {
            KvGroups::PerToken => 32,
            KvGroups::PerChannel { channels } => {
                if channels == 0 || !elems.is_multiple_of(channels) {
                    return None;
                }
                elems / channels
            }
        };
        if g == 0 || !g.is_multiple_of(4) || !elems.is_multiple_of(g) {
            return None;
        }
        Some(g)
    }

    /// Encoded bytes of a block of `elems` elements at `bits`: per group a
    /// 2-byte step, a 2-byte minimum and the codes.
    pub const fn packed_len(self, elems: usize, bits: KvBits) -> Option<usize> {
        let Some(g) = self.group_len(elems) else {
            return None;
        };
        let per_group = 4 + g * bits.bits() as usize / 8;
        (elems / g).checked_mul(per_group)
    }
}

impl KvBits {
    /// Data bits per element.
    pub const fn bits(self) -> u32 {
        match self {
            KvBits::B8 => 8,
            KvBits::B4 => 4,
            KvBits::B2 => 2,
        }
    }
}
