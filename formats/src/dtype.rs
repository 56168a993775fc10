//! Element types of stored tensors.
//!
//! The numeric codes are GGML's type ids, so a tensor copied from a GGUF file
//! keeps its code in a lode image and a reader needs one table, not two.

/// The element encoding of a tensor or a neuron bundle's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DType {
    /// IEEE-754 binary32, 4 bytes per element.
    F32,
    /// IEEE-754 binary16, 2 bytes per element.
    F16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit quants; x = d * (q - 8).
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit quants; x = d * q + m.
    Q4_1,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 4 bytes of high bits, 16 bytes of low nibbles.
    Q5_1,
    /// Blocks of 32: f16 scale `d`, 32 signed bytes; x = d * q.
    Q8_0,
    /// Blocks of 32: f16 scale `d`, 4 bytes of high bits, 16 bytes of low
    /// nibbles; x = d * (q - 16) with 5-bit q.
    Q5_0,
    /// Super-blocks of 256: f16 `d` and `dmin`, eight 6-bit scales and
    /// minimums packed in 12 bytes, 128 bytes of 4-bit quants.
    #[allow(non_camel_case_types)] // ggml's name
    Q4_K,
    /// Super-blocks of 256: 6-bit quants (128 bytes of low nibbles, 64 of
    /// high pairs), sixteen signed 8-bit scales, f16 `d` last.
    #[allow(non_camel_case_types)] // ggml's name
    Q6_K,
}

impl DType {
    /// GGML type id.
    pub const fn code(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q5_0 => 6,
            DType::Q4_K => 12,
            DType::Q6_K => 14,
        }
    }

    /// The type with GGML type id `code`, if lode knows it.
    pub const fn from_code(code: u32) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            6 => DType::Q5_0,
            12 => DType::Q4_K,
            14 => DType::Q6_K,
            _ => return None,
        })
    }

    /// Elements per block (1 for the float types).
    pub const fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q4_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q5_0 => 22,
            DType::Q4_K => 144,
            DType::Q6_K => 210,
        }
    }

    /// Bytes of a row of `elems` elements, or `None` when `elems` is not a
    /// whole number of blocks or the size overflows.
    pub const fn row_bytes(self, elems: u64) -> Option<u64> {
        let per = self.block_elems() as u64;
        if !elems.is_multiple_of(per) {
            return None;
        }
        (elems / per).checked_mul(self.block_bytes() as u64)
    }

    /// Short lower-case name, as printed by `lode inspect`.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q5_0 => "q5_0",
            DType::Q4_K => "q4_k",
            DType::Q6_K => "q6_k",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in [
            DType::F32,
            DType::F16,
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_1,
            DType::Q8_0,
            DType::Q5_0,
            DType::Q4_K,
            DType::Q6_K,
        ] {
            assert_eq!(DType::from_code(t.code()), Some(t));
        }
        assert_eq!(DType::from_code(15), None, "Q8_K is not read");
        assert_eq!(DType::from_code(4), None);
    }

    #[test]
    fn row_sizes() {
        assert_eq!(DType::Q4_1.row_bytes(576), Some(360));
        assert_eq!(DType::Q8_0.row_bytes(576), Some(612));
        assert_eq!(DType::Q4_1.row_bytes(577), None);
        assert_eq!(DType::F16.row_bytes(3), Some(6));
        // Gemma 3 270M: hidden 640 is whole Q5_0 blocks but not K-quant
        // super-blocks; its FFN width 2048 is both.
        assert_eq!(DType::Q5_0.row_bytes(640), Some(440));
        assert_eq!(DType::Q4_K.row_bytes(640), None);
        assert_eq!(DType::Q4_K.row_bytes(1024), Some(576));
        assert_eq!(DType::Q6_K.row_bytes(2048), Some(1680));
    }
}
