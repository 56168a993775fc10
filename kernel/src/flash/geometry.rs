//! A device's fixed shape and the arithmetic on it.

use super::ErrorKind;

/// A device's fixed shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Geometry {
    /// Logical block size in bytes (a power of two): offsets, lengths and
    /// buffer addresses must be multiples of it.
    pub block_size: u32,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Largest single transfer in bytes (a multiple of `block_size`).
    pub max_transfer: u32,
    /// Requests the device accepts in flight at once.
    pub queue_depth: u16,
}

impl Geometry {
    /// `true` when `x` is a multiple of the block size.
    pub fn is_aligned(&self, x: u64) -> bool {
        self.block_size != 0 && x.is_multiple_of(u64::from(self.block_size))
    }

    /// Round `x` down to a block boundary.
    pub fn align_down(&self, x: u64) -> u64 {
        x - x % u64::from(self.block_size.max(1))
    }

    /// Round `x` up to a block boundary; saturates at the last boundary
    /// that fits in a `u64`.
    pub fn align_up(&self, x: u64) -> u64 {
        let b = u64::from(self.block_size.max(1));
        x.div_ceil(b)
            .checked_mul(b)
            .unwrap_or(u64::MAX - u64::MAX % b)
    }

    /// Check one extent of the device: aligned, non-empty, not too long,
    /// inside the capacity. This is the extent half of
    /// [`admit_read`](super::admit_read).
    pub fn check_extent(&self, offset: u64, len: u64) -> Result<(), ErrorKind> {
        if len == 0 || !self.is_aligned(offset) || !self.is_aligned(len) {
            return Err(ErrorKind::Misaligned);
        }
        if len > u64::from(self.max_transfer) {
            return Err(ErrorKind::TooLarge);
        }
        self.check_range(offset, len)
    }

    /// `Ok` when `offset .. offset + len` lies inside the capacity (and the
    /// end does not overflow).
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(), ErrorKind> {
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(ErrorKind::OutOfRange),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: Geometry = Geometry {
        block_size: 512,
        capacity: 1 << 20,
        max_transfer: 64 << 10,
        queue_depth: 8,
    };

    #[test]
    fn extent_checks() {
        assert_eq!(G.check_extent(0, 512), Ok(()));
        assert_eq!(G.check_extent(1, 512), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 0), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 100), Err(ErrorKind::Misaligned));
        assert_eq!(G.check_extent(0, 128 << 10), Err(ErrorKind::TooLarge));
        assert_eq!(
            G.check_extent((1 << 20) - 512, 1024),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            G.check_extent(u64::MAX - 511, 512),
            Err(ErrorKind::OutOfRange)
        );
    }

    #[test]
    fn rounding() {
        assert_eq!(G.align_down(1000), 512);
        assert_eq!(G.align_up(1000), 1024);
        assert_eq!(G.align_up(1024), 1024);
        assert_eq!(G.align_up(u64::MAX), u64::MAX - 511);
    }

    #[test]
    fn a_zero_block_size_aligns_nothing_and_does_not_divide_by_zero() {
        let g = Geometry { block_size: 0, ..G };
        assert!(!g.is_aligned(0));
        assert_eq!(g.align_down(7), 7);
        assert_eq!(g.align_up(7), 7);
        assert_eq!(g.check_extent(0, 512), Err(ErrorKind::Misaligned));
    }
}
