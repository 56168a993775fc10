//! The lazy walks over a parsed file's metadata and tensors: what
//! [`Gguf::metadata`] and [`Gguf::tensors`] return. `Gguf::parse` already
//! validated every entry, so a walk cannot fail; should it, it ends.

use super::super::cursor::Cursor;
use super::super::tensor::{place, read_info, TensorInfo};
use super::super::value::{read_value, value_type, Check, Value};
use super::Gguf;

/// Iterator over `(key, value)` metadata entries.
#[derive(Debug, Clone)]
pub struct Metadata<'a> {
    pub(super) cursor: Cursor<'a>,
    pub(super) remaining: u64,
}

impl<'a> Iterator for Metadata<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<(&'a str, Value<'a>)> {
        if self.remaining == 0 {
            return None;
        }
        // Validated by `parse`; a failure here would end the iteration.
        let entry = self.cursor.string().ok().and_then(|key| {
            let ty = value_type(&mut self.cursor).ok()?;
            let value = read_value(&mut self.cursor, ty, 0, Check::Lengths).ok()?;
            Some((key, value))
        });
        self.remaining = if entry.is_some() {
            self.remaining - 1
        } else {
            0
        };
        entry
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Iterator over the tensors, in file order.
#[derive(Debug, Clone)]
pub struct Tensors<'a> {
    pub(super) cursor: Cursor<'a>,
    pub(super) remaining: u64,
    pub(super) index: u64,
    pub(super) file: Gguf<'a>,
    pub(super) previous_end: u64,
}

impl<'a> Iterator for Tensors<'a> {
    type Item = TensorInfo<'a>;

    fn next(&mut self) -> Option<TensorInfo<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // Validated by `parse`; a failure here would end the iteration.
        let placed = read_info(&mut self.cursor, self.index)
            .ok()
            .and_then(|raw| {
                let info = place(
                    raw,
                    self.file.data_start,
                    self.file.alignment,
                    self.file.bytes.len() as u64,
                    self.previous_end,
                )
                .ok()?;
                self.previous_end = raw.rel_offset.saturating_add(raw.len_bytes);
                Some(info)
            });
        match placed {
            Some(_) => {
                self.remaining -= 1;
                self.index += 1;
            }
            None => self.remaining = 0,
        }
        placed
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}
