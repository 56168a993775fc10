//! Array values: an [`ArrayView`] borrows the elements' bytes and
//! [`ArrayIter`] decodes them one at a time, in order.

use core::fmt;

use super::super::cursor::Cursor;
use super::*;

/// A metadata array: element type, count and the bytes of its elements.
#[derive(Clone, Copy, PartialEq)]
pub struct ArrayView<'a> {
    pub(super) elem: ValueType,
    pub(super) len: u64,
    pub(super) bytes: &'a [u8],
    /// Arrays enclosing the elements (1 for a top-level array).
    pub(super) depth: u8,
}

impl fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayView")
            .field("elem", &self.elem)
            .field("len", &self.len)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl<'a> ArrayView<'a> {
    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `true` when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements, back to back, as stored in the file.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The elements in order. Linear in the array's bytes overall.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cursor: Cursor::at(self.bytes, 0),
            elem: self.elem,
            remaining: self.len,
            depth: self.depth,
        }
    }

    /// The elements of a string array, or `None` for another element type.
    pub fn strings(&self) -> Option<Strings<'a>> {
        (self.elem == ValueType::String).then(|| Strings { inner: self.iter() })
    }

    /// Element `index`: constant time for fixed-size elements, a walk from
    /// the start for strings and arrays.
    pub fn get(&self, index: u64) -> Option<Value<'a>> {
        if index >= self.len {
            return None;
        }
        match self.elem.fixed_size() {
            Some(size) => {
                let start = usize::try_from(index).ok()?.checked_mul(size)?;
                let mut c = Cursor::at(self.bytes, start);
                read_value(&mut c, self.elem, self.depth, Check::Lengths).ok()
            }
            None => self.iter().nth(usize::try_from(index).ok()?),
        }
    }
}

impl<'a> IntoIterator for ArrayView<'a> {
    type Item = Value<'a>;
    type IntoIter = ArrayIter<'a>;
    fn into_iter(self) -> ArrayIter<'a> {
        self.iter()
    }
}

/// Iterator over an array's elements.
#[derive(Debug, Clone)]
pub struct ArrayIter<'a> {
    cursor: Cursor<'a>,
    elem: ValueType,
    remaining: u64,
    depth: u8,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The array was validated when the file was parsed, so this read
        // cannot fail; if it somehow did, the iteration ends rather than
        // yielding garbage.
        match read_value(&mut self.cursor, self.elem, self.depth, Check::Lengths) {
            Ok(v) => {
                self.remaining -= 1;
                Some(v)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Iterator over the strings of a string array.
#[derive(Debug, Clone)]
pub struct Strings<'a> {
    inner: ArrayIter<'a>,
}

impl<'a> Iterator for Strings<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.inner.next().and_then(|v| v.as_str())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}
