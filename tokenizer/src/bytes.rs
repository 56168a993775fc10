//! GPT-2's byte-level alphabet: every byte as one printable character.
//!
//! Byte-level BPE vocabularies (GPT-2 and its descendants, SmolLM2 among
//! them) never store raw bytes. Each of the 256 byte values is shown as one
//! Unicode character so that a token's text is always printable and never
//! contains a space or a control character: the bytes that are already
//! visible Latin-1 characters (`!`..=`~`, `¡`..=`¬`, `®`..=`ÿ`) stand for
//! themselves, and the other 68 (controls, space, DEL, NBSP, soft hyphen, ...)
//! are moved, in increasing byte order, to U+0100, U+0101, ... . So a space is
//! `Ġ` (U+0120) and a newline is `Ċ` (U+010A).
//!
//! Encoding needs only byte -> character; decoding needs character -> byte,
//! which this module computes arithmetically instead of with a table.

/// True when `b` is shown as the character with the same code point.
const fn is_self_mapped(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Number of bytes below `b` that are *not* self-mapped: the offset from
/// U+0100 of `b`'s character when `b` itself is not self-mapped.
const fn moved_below(b: u8) -> u32 {
    // Non-self-mapped bytes: 0x00..=0x20 (33), 0x7F..=0xA0 (34), 0xAD (1).
    let b = b as u32;
    if b <= 0x20 {
        b
    } else if b <= 0x7E {
        33
    } else if b <= 0xA0 {
        33 + (b - 0x7F)
    } else if b <= 0xAD {
        67
    } else {
        68
    }
}

/// The character that stands for byte `b` in token texts.
pub const fn byte_to_char(b: u8) -> char {
    let cp = if is_self_mapped(b) {
        b as u32
    } else {
        0x100 + moved_below(b)
    };
    // Every value here is below U+0144, a valid scalar value.
    match char::from_u32(cp) {
        Some(c) => c,
        None => char::REPLACEMENT_CHARACTER,
    }
}

/// The byte that character `c` stands for, or `None` when `c` is not one of
/// the 256 characters of the alphabet.
pub const fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 {
        let b = cp as u8;
        return if is_self_mapped(b) { Some(b) } else { None };
    }
    // U+0100 + k is the k-th non-self-mapped byte, for k in 0..68.
    let k = cp - 0x100;
    if k < 33 {
        Some(k as u8)
    } else if k < 67 {
        Some((0x7F + (k - 33)) as u8)
    } else if k == 67 {
        Some(0xAD)
    } else {
        None
    }
}

/// Appends the UTF-8 of `b`'s alphabet character to `out`.
pub(crate) fn push_encoded(b: u8, out: &mut alloc::vec::Vec<u8>) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(byte_to_char(b).encode_utf8(&mut buf).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_characters() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'\t'), 'ĉ');
        assert_eq!(byte_to_char(0), '\u{100}');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(byte_to_char(0x7F), '\u{121}');
        assert_eq!(byte_to_char(0xA0), '\u{142}');
        assert_eq!(byte_to_char(0xAD), '\u{143}');
        assert_eq!(byte_to_char(0xFF), 'ÿ');
    }

    #[test]
    fn bijection_over_all_bytes() {
        let mut seen = [false; 0x144];
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            let cp = c as usize;
            assert!(cp < 0x144, "byte {b:#x} maps outside the alphabet: {cp:#x}");
            assert!(!seen[cp], "two bytes map to {cp:#x}");
            seen[cp] = true;
            assert_eq!(char_to_byte(c), Some(b));
            assert!(
                !c.is_whitespace() && !c.is_control(),
                "byte {b:#x} is not printable"
            );
        }
    }

    #[test]
    fn characters_outside_the_alphabet() {
        for c in [' ', '\n', '\u{7F}', '\u{AD}', '\u{144}', 'é', '€', '😀'] {
            if c == 'é' {
                // é (U+00E9) is a self-mapped Latin-1 byte.
                assert_eq!(char_to_byte(c), Some(0xE9));
            } else {
                assert_eq!(char_to_byte(c), None, "{c:?}");
            }
        }
    }
}
