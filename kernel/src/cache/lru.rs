//! An intrusive doubly-linked recency list over cache slots, kept in policy
//! words. LRU, windowing and hot-neuron pinning all order their evictable
//! slots with it, so it is written once.

use super::EMPTY;

/// A view of `2 * slots + 2` words as a recency list: `prev`, `next`, then
/// `[head, tail]`. Head is the most recently used.
pub(super) struct RecencyList<'a> {
    prev: &'a mut [u32],
    next: &'a mut [u32],
    ends: &'a mut [u32],
}

impl<'a> RecencyList<'a> {
    /// Words the list needs.
    pub(super) const fn words(slots: u32) -> usize {
        2 * slots as usize + 2
    }

    /// The list stored at the start of `st`; the rest of `st` is returned.
    pub(super) fn view(st: &'a mut [u32], slots: u32) -> (Self, &'a mut [u32]) {
        let (prev, rest) = st.split_at_mut(slots as usize);
        let (next, rest) = rest.split_at_mut(slots as usize);
        let (ends, rest) = rest.split_at_mut(2);
        (RecencyList { prev, next, ends }, rest)
    }

    /// A list whose `prev` and `next` words are the two halves of `links`
    /// (shared by several lists over the same slots) with its own `ends`
    /// (`[head, tail]`).
    pub(super) fn over(links: &'a mut [u32], ends: &'a mut [u32]) -> Self {
        let (prev, next) = links.split_at_mut(links.len() / 2);
        RecencyList { prev, next, ends }
    }

    /// Move the whole list `other` (its `[head, tail]`, over the same links)
    /// in front of this one, leaving `other` empty: its entries become more
    /// recent than all of this list's.
    pub(super) fn splice_front(&mut self, other: &mut [u32]) {
        let (head, tail) = (other[0], other[1]);
        if head == EMPTY {
            return;
        }
        let old_head = self.ends[0];
        if old_head == EMPTY {
            self.ends[1] = tail;
        } else {
            self.next[tail as usize] = old_head;
            self.prev[old_head as usize] = tail;
        }
        self.ends[0] = head;
        other.fill(EMPTY);
    }

    /// Make the list empty.
    pub(super) fn clear(&mut self) {
        self.prev.fill(EMPTY);
        self.next.fill(EMPTY);
        self.ends.fill(EMPTY);
    }

    /// Put `slot` (not in the list) at the head.
    pub(super) fn push_front(&mut self, slot: u32) {
        let s = slot as usize;
        let head = self.ends[0];
        self.prev[s] = EMPTY;
        self.next[s] = head;
        if head != EMPTY {
            self.prev[head as usize] = slot;
        } else {
            self.ends[1] = slot;
        }
        self.ends[0] = slot;
    }

    /// Unlink `slot` if it is in the list.
    pub(super) fn remove(&mut self, slot: u32) {
        let s = slot as usize;
        let (p, n) = (self.prev[s], self.next[s]);
        if p == EMPTY && n == EMPTY && self.ends[0] != slot {
            return; // not linked
        }
        if p != EMPTY {
            self.next[p as usize] = n;
        } else {
            self.ends[0] = n;
        }
        if n != EMPTY {
            self.prev[n as usize] = p;
        } else {
            self.ends[1] = p;
        }
        self.prev[s] = EMPTY;
        self.next[s] = EMPTY;
    }

    /// Move `slot` (in the list) to the head.
    pub(super) fn touch(&mut self, slot: u32) {
        self.remove(slot);
        self.push_front(slot);
    }

    /// The least recently used slot.
    pub(super) fn back(&self) -> Option<u32> {
        (self.ends[1] != EMPTY).then_some(self.ends[1])
    }
}
