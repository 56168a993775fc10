//! A compact table of byte strings with lookup by content.
//!
//! The vocabulary needs both directions: id -> text (decoding, building
//! pieces) and text -> id (special tokens, the byte alphabet, merges). A
//! `HashMap` is not available without `std`, and a `BTreeMap<Vec<u8>, u32>`
//! would spend one heap allocation and a node slot per token. Instead all
//! texts live in one byte buffer with an end offset per id, and a second
//! array holds the ids sorted by text so lookup is a binary search: about
//! 16 comparisons for SmolLM2's 49152 tokens, and two allocations in total.

use alloc::vec::Vec;
use core::cmp::Ordering;

/// Strings indexed by dense ids `0..len`, searchable by content.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrTable {
    bytes: Vec<u8>,
    /// `ends[i]` is one past the last byte of string `i`.
    ends: Vec<usize>,
    /// Ids sorted by string; among equal strings only the highest id is
    /// kept, so a duplicated text resolves to its last occurrence (what
    /// llama.cpp's `token_to_id` map does when it is filled in id order).
    sorted: Vec<u32>,
}

impl StrTable {
    /// Builds the table. The caller guarantees `strings.len()` fits in `u32`.
    pub(crate) fn new<S: AsRef<[u8]>>(strings: &[S]) -> Self {
        let total = strings.iter().map(|s| s.as_ref().len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(strings.len());
        for s in strings {
            bytes.extend_from_slice(s.as_ref());
            ends.push(bytes.len());
        }
        let mut table = StrTable {
            bytes,
            ends,
            sorted: Vec::new(),
        };
        let n = u32::try_from(strings.len()).unwrap_or(u32::MAX);
        let mut sorted: Vec<u32> = (0..n).collect();
        // Sort by text, then by id descending so dedup keeps the last id.
        sorted.sort_unstable_by(|&a, &b| match table.cmp_ids(a, b) {
            Ordering::Equal => b.cmp(&a),
            other => other,
        });
        sorted.dedup_by(|later, earlier| table.get(*later) == table.get(*earlier));
        table.sorted = sorted;
        table
    }

    fn cmp_ids(&self, a: u32, b: u32) -> Ordering {
        self.get(a).cmp(&self.get(b))
    }

    /// Number of strings (ids), duplicates included.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// String `id`, or `None` when out of range.
    pub(crate) fn get(&self, id: u32) -> Option<&[u8]> {
        let i = usize::try_from(id).ok()?;
        let end = *self.ends.get(i)?;
        let start = match i.checked_sub(1) {
            Some(prev) => *self.ends.get(prev)?,
            None => 0,
        };
        self.bytes.get(start..end)
    }

    /// The id of `text` (the last one when it occurs more than once).
    pub(crate) fn find(&self, text: &[u8]) -> Option<u32> {
        let i = self
            .sorted
            .binary_search_by(|&id| self.get(id).unwrap_or(&[]).cmp(text))
            .ok()?;
        self.sorted.get(i).copied()
    }

    /// Total bytes of string data (for memory reports).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * core::mem::size_of::<usize>()
            + self.sorted.capacity() * core::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::string::String;
    use proptest::prelude::*;

    #[test]
    fn lookup_both_ways() {
        let t = StrTable::new(&["b", "a", "", "ab", "a"]);
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(0), Some(&b"b"[..]));
        assert_eq!(t.get(2), Some(&b""[..]));
        assert_eq!(t.get(3), Some(&b"ab"[..]));
        assert_eq!(t.get(5), None);
        assert_eq!(t.get(u32::MAX), None);
        assert_eq!(t.find(b"b"), Some(0));
        assert_eq!(t.find(b"ab"), Some(3));
        assert_eq!(t.find(b""), Some(2));
        // "a" appears at 1 and 4: the last wins.
        assert_eq!(t.find(b"a"), Some(4));
        assert_eq!(t.find(b"c"), None);
        assert_eq!(t.find(b"abc"), None);
    }

    #[test]
    fn empty_table() {
        let t = StrTable::new::<&str>(&[]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.find(b"x"), None);
        assert_eq!(t.get(0), None);
    }

    proptest! {
        #[test]
        fn agrees_with_a_map(strings in proptest::collection::vec("[a-c]{0,3}", 0..40),
                             probe in "[a-c]{0,3}") {
            let t = StrTable::new(&strings);
            let mut last: BTreeMap<&String, u32> = BTreeMap::new();
            for (i, s) in strings.iter().enumerate() {
                last.insert(s, i as u32);
                prop_assert_eq!(t.get(i as u32), Some(s.as_bytes()));
            }
            prop_assert_eq!(t.find(probe.as_bytes()), last.get(&probe).copied());
        }
    }
}
