//! How far a unit's read has come, command by command, so its bytes can
//! be checked while the rest is still on its way.
//!
//! A unit larger than the device's largest transfer (1 MiB on a block
//! device: Gemma 3's FFN layers, a larger model's) is read in several
//! commands, which may complete in any order. The caller that waits for it
//! would otherwise check all of it once its last command lands; checking
//! each command's bytes as soon as it and those before it have landed
//! leaves only the last command to check then. (Cutting every unit into
//! small commands for this was measured and did not pay on SmolLM2 at a
//! third of the model: 5 times the commands, 6-12% of the bytes checked
//! early, the same decode speed within this disk's noise.)
//!
//! Completions are tracked in a window of 64 commands after the checked
//! prefix: one that lands further ahead is not recorded, and its bytes are
//! simply checked with the rest when the unit is complete.

/// Bits of a ring tag that name the slot; the rest name the command.
pub(super) const SLOT_BITS: u32 = 4;

const _: () = assert!(super::MAX_RING <= 1 << SLOT_BITS);

/// The tag of command `cmd` of slot `slot`'s read, `None` past the
/// commands a tag can name (a unit of 2^27 commands: never, since the
/// ring's slots are far smaller).
pub(super) fn tag(slot: usize, cmd: usize) -> Option<u32> {
    let cmd = u32::try_from(cmd).ok().filter(|&c| c < 1 << 27)?;
    Some(cmd << SLOT_BITS | slot as u32)
}

/// The slot and command a ring tag names.
pub(super) fn untag(tag: u32) -> (usize, u32) {
    ((tag & ((1 << SLOT_BITS) - 1)) as usize, tag >> SLOT_BITS)
}

/// Commands of one read that landed, and how many from the start are
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Progress {
    /// Commands checked, from the unit's first.
    checked: u32,
    /// Landed commands from `checked` on: bit `k` is command `checked + k`.
    landed: u64,
}

impl Progress {
    /// Nothing landed yet.
    pub(super) const NONE: Progress = Progress {
        checked: 0,
        landed: 0,
    };

    /// Records that command `cmd` landed with its data.
    pub(super) fn land(&mut self, cmd: u32) {
        if let Some(k) = cmd.checked_sub(self.checked).filter(|&k| k < 64) {
            self.landed |= 1 << k;
        }
    }

    /// The command to check next: the first unchecked one, once it landed.
    pub(super) fn next(&self) -> Option<u32> {
        (self.landed & 1 == 1).then_some(self.checked)
    }

    /// Marks the command [`Progress::next`] named as checked.
    pub(super) fn advance(&mut self) {
        self.checked += 1;
        self.landed >>= 1;
    }

    /// Bytes checked from the unit's start, with commands of `cmd_bytes`
    /// and the unit `len` long.
    pub(super) fn checked_bytes(&self, cmd_bytes: usize, len: usize) -> usize {
        (self.checked as usize).saturating_mul(cmd_bytes).min(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_checked_in_order_whatever_order_they_land_in() {
        let mut p = Progress::default();
        assert_eq!(p.next(), None);
        p.land(2);
        p.land(1);
        assert_eq!(p.next(), None, "command 0 has not landed");
        p.land(0);
        for want in 0..3 {
            assert_eq!(p.next(), Some(want));
            p.advance();
        }
        assert_eq!(p.next(), None);
        assert_eq!(p.checked_bytes(4096, 10_000), 10_000);
        assert_eq!(p.checked_bytes(2048, 10_000), 6144);
        // Too far ahead to record: checked with the rest at the end.
        p.land(3 + 64);
        p.land(3);
        p.advance();
        assert_eq!(p.next(), None);
    }

    #[test]
    fn tags_name_their_slot_and_command() {
        for (slot, cmd) in [(0, 0), (7, 5), (3, (1 << 27) - 1)] {
            let t = tag(slot, cmd).unwrap();
            assert_eq!(untag(t), (slot, cmd as u32));
            assert_ne!(t, super::super::ROW_TAG);
        }
        assert_eq!(tag(1, 1 << 27), None);
    }
}
