//! Where an error was found: a key or tensor name copied into a fixed
//! inline buffer ([`Name`], so an error is `'static` and needs no
//! allocator) and the part of the file ([`Item`]).

use core::fmt;

/// Longest name (in bytes) kept in an error; longer names are cut at a
/// character boundary. 64 matches GGML's tensor-name limit.
pub const NAME_CAPACITY: usize = 64;

/// A key or tensor name copied into an error, at most [`NAME_CAPACITY`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    buf: [u8; NAME_CAPACITY],
    len: u8,
    cut: bool,
}

impl Name {
    /// Copy `s`, cutting it at the last character boundary that fits.
    pub fn new(s: &str) -> Name {
        let mut end = s.len().min(NAME_CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut name = Name {
            buf: [0; NAME_CAPACITY],
            len: 0,
            cut: end < s.len(),
        };
        if let (Some(dst), Some(src)) = (name.buf.get_mut(..end), s.as_bytes().get(..end)) {
            dst.copy_from_slice(src);
            // `end <= NAME_CAPACITY = 64`, so it fits in a u8.
            name.len = end as u8;
        }
        name
    }

    /// The (possibly cut) name.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or(&[]);
        // Always a prefix of a `&str` cut at a char boundary, so this never
        // falls back; the fallback only keeps the function total.
        core::str::from_utf8(bytes).unwrap_or("")
    }

    /// `true` when the original name was longer than [`NAME_CAPACITY`].
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        !self.cut && self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())?;
        if self.cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())?;
        if self.cut {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// The part of the file an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// Magic, version and the two counts.
    Header,
    /// The `index`-th metadata entry; `key` once it has been read.
    KeyValue {
        /// Position in the metadata list, from 0.
        index: u64,
        /// The entry's key, when it could be read.
        key: Option<Name>,
    },
    /// The `index`-th tensor info; `name` once it has been read.
    TensorInfo {
        /// Position in the tensor table, from 0.
        index: u64,
        /// The tensor's name, when it could be read.
        name: Option<Name>,
    },
    /// Not yet attributed (an internal state that [`Gguf::parse`](super::Gguf::parse)
    /// always replaces before returning).
    Unknown,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Header => f.write_str("the file header"),
            Item::KeyValue {
                index,
                key: Some(k),
            } => write!(f, "metadata entry #{index} '{k}'"),
            Item::KeyValue { index, key: None } => write!(f, "metadata entry #{index}"),
            Item::TensorInfo {
                index,
                name: Some(n),
            } => write!(f, "tensor info #{index} '{n}'"),
            Item::TensorInfo { index, name: None } => write!(f, "tensor info #{index}"),
            Item::Unknown => f.write_str("the file"),
        }
    }
}
