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
            _ => return None,
        })
    }

    /// Elements per block (1 for the float types).
    pub const fn block_elems(self) -> usize {
        match self {
            DType::F32 | DType::F16 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_1 | DType::Q8_0 => 32,
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
        ] {
            assert_eq!(DType::from_code(t.code()), Some(t));
        }
        assert_eq!(DType::from_code(4), None);
    }

    #[test]
    fn row_sizes() {
        assert_eq!(DType::Q4_1.row_bytes(576), Some(360));
        assert_eq!(DType::Q8_0.row_bytes(576), Some(612));
        assert_eq!(DType::Q4_1.row_bytes(577), None);
        assert_eq!(DType::F16.row_bytes(3), Some(6));
    }
}
