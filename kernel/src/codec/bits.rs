//! The codebook's compact parts: an LSB-first bit reader for its value
//! gaps (Elias gamma), and the one-byte logarithmic frequency levels.
//! Both sides of the format share [`level_freq`].

use super::error::DecodeError;

/// The frequency a one-byte level stands for: levels 0 to 31 are the
/// frequencies 1 to 32 exactly; above, 16 levels an octave
/// (`(34 + 2m) << e` for level `32 + 16e + m`), so any frequency is within
/// about 3% of a level and a value's table entry costs one byte.
pub const fn level_freq(q: u8) -> u32 {
    if q < 32 {
        q as u32 + 1
    } else {
        let k = q as u32 - 32;
        (34 + 2 * (k % 16)) << (k / 16)
    }
}

/// Reads bits least significant first from a borrowed slice.
pub(super) struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Bits<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Bits { bytes, at: 0 }
    }

    fn bit(&mut self) -> Result<u32, DecodeError> {
        let Some(&b) = self.bytes.get(self.at / 8) else {
            return Err(DecodeError::Corrupt("codebook bits end early"));
        };
        let v = u32::from(b >> (self.at % 8)) & 1;
        self.at += 1;
        Ok(v)
    }

    /// The next `n` (at most 31) bits as a number, first bit least
    /// significant.
    pub(super) fn take(&mut self, n: u32) -> Result<u32, DecodeError> {
        let mut v = 0;
        for k in 0..n.min(31) {
            v |= self.bit()? << k;
        }
        Ok(v)
    }

    /// The next Elias gamma number (at least 1, below 2^17): `z` zero
    /// bits, a one, then `z` bits below the leading one.
    pub(super) fn gamma(&mut self) -> Result<u32, DecodeError> {
        let mut z = 0;
        while self.bit()? == 0 {
            z += 1;
            if z > 16 {
                return Err(DecodeError::Corrupt("codebook gap longer than 17 bits"));
            }
        }
        Ok(1 << z | self.take(z)?)
    }

    /// Whether the padding after the last bit is whole and zero.
    pub(super) fn ends_clean(&self) -> bool {
        let used = self.at.div_ceil(8);
        used == self.bytes.len()
            && self
                .bytes
                .last()
                .is_none_or(|&b| self.at.is_multiple_of(8) || b >> (self.at % 8) == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rise_and_cover_the_total() {
        for q in 1..=255u8 {
            assert!(level_freq(q) > level_freq(q - 1), "{q}");
        }
        assert_eq!(level_freq(0), 1);
        assert_eq!(level_freq(31), 32);
        assert!(level_freq(255) > 1 << 16);
    }

    #[test]
    fn gamma_reads() {
        assert_eq!(Bits::new(&[0b001]).gamma(), Ok(1));
        assert_eq!(Bits::new(&[0b010]).gamma(), Ok(2));
        assert_eq!(Bits::new(&[0b110]).gamma(), Ok(3));
        assert!(Bits::new(&[0, 0, 0]).gamma().is_err());
        assert!(Bits::new(&[]).take(1).is_err());
        let mut b = Bits::new(&[0b001]);
        b.gamma().unwrap();
        assert!(b.ends_clean());
        assert!(!Bits::new(&[0b101]).ends_clean());
    }
}
