//! Android's memory-trim callbacks as a budget the engine can query.
//!
//! Android tells an app how hard the system is pressed for memory through
//! `ComponentCallbacks2.onTrimMemory(level)`. lode's DRAM budget is its
//! largest allocation, and most of it (the neuron cache, idle KV chunks) can
//! be rebuilt from flash, so it is what should give way first. A
//! [`MemoryBudget`] turns the levels into a number of bytes the engine may
//! use; the engine polls [`MemoryBudget::allowed`] (or watches
//! [`MemoryBudget::epoch`]) between tokens and evicts down to it.
//!
//! The policy, as a share of the room above the floor:
//!
//! | level                  | value | share | why |
//! |------------------------|------:|------:|-----|
//! | (none) / restored      | 0     | 100%  | no pressure |
//! | `RUNNING_MODERATE`     | 5     | 75%   | foreground, the system is starting to kill background apps |
//! | `RUNNING_LOW`          | 10    | 50%   | foreground, memory is low |
//! | `RUNNING_CRITICAL`     | 15    | 25%   | foreground, the system is about to kill its background |
//! | `UI_HIDDEN`            | 20    | 75%   | the UI went away: give back what served it |
//! | `BACKGROUND`           | 40    | 50%   | on the LRU list, early |
//! | `MODERATE`             | 60    | 25%   | middle of the LRU list |
//! | `COMPLETE`             | 80    | 0%    | next to be killed: keep only the floor |
//!
//! The floor is what the engine cannot work without (resident weights and
//! one layer's working set); below it the engine would only thrash flash.
//! A trim never *raises* the budget (a later, milder level does not mean the
//! pressure is gone); [`MemoryBudget::restore`] does, called when the app is
//! back in the foreground with pressure over (`onResume`, or level 0 through
//! the C ABI).
//!
//! All state is atomic, so the callback (Android's main thread) and the
//! engine (its own thread) share one budget without a lock.

use std::fmt;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// The levels of `ComponentCallbacks2.onTrimMemory`, plus `None` for "no
/// pressure".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum TrimLevel {
    /// No pressure (also: pressure over, see [`MemoryBudget::restore`]).
    None = 0,
    /// `TRIM_MEMORY_RUNNING_MODERATE`.
    RunningModerate = 5,
    /// `TRIM_MEMORY_RUNNING_LOW`.
    RunningLow = 10,
    /// `TRIM_MEMORY_RUNNING_CRITICAL`.
    RunningCritical = 15,
    /// `TRIM_MEMORY_UI_HIDDEN`.
    UiHidden = 20,
    /// `TRIM_MEMORY_BACKGROUND`.
    Background = 40,
    /// `TRIM_MEMORY_MODERATE`.
    Moderate = 60,
    /// `TRIM_MEMORY_COMPLETE`.
    Complete = 80,
}

impl TrimLevel {
    /// Every level, mildest first.
    pub const ALL: [TrimLevel; 8] = [
        TrimLevel::None,
        TrimLevel::RunningModerate,
        TrimLevel::RunningLow,
        TrimLevel::RunningCritical,
        TrimLevel::UiHidden,
        TrimLevel::Background,
        TrimLevel::Moderate,
        TrimLevel::Complete,
    ];

    /// The level for an `onTrimMemory` value. Android documents that apps
    /// should treat an unknown value as the closest known level below it
    /// (the platform may add levels between), so 50 is `BACKGROUND` and 99
    /// is `COMPLETE`. Negative values are not levels: `None` is returned.
    pub fn from_android(value: i32) -> Option<TrimLevel> {
        if value < 0 {
            return None;
        }
        TrimLevel::ALL
            .iter()
            .rev()
            .copied()
            .find(|l| *l as i32 <= value)
    }

    /// Permille of the room above the floor this level leaves.
    pub fn share_permille(self) -> usize {
        match self {
            TrimLevel::None => 1000,
            TrimLevel::RunningModerate | TrimLevel::UiHidden => 750,
            TrimLevel::RunningLow | TrimLevel::Background => 500,
            TrimLevel::RunningCritical | TrimLevel::Moderate => 250,
            TrimLevel::Complete => 0,
        }
    }
}

/// Why a budget could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetError {
    /// The full budget asked for.
    pub full: usize,
    /// The floor asked for, above it.
    pub floor: usize,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "budget floor {} is above the full budget {}",
            self.floor, self.full
        )
    }
}

impl std::error::Error for BudgetError {}

/// The DRAM budget as memory pressure allows it; see the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    full: usize,
    floor: usize,
    allowed: AtomicUsize,
    level: AtomicI32,
    epoch: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `full` bytes that trims never take below `floor`.
    pub fn new(full: usize, floor: usize) -> Result<Self, BudgetError> {
        if floor > full {
            return Err(BudgetError { full, floor });
        }
        Ok(MemoryBudget {
            full,
            floor,
            allowed: AtomicUsize::new(full),
            level: AtomicI32::new(TrimLevel::None as i32),
            epoch: AtomicU64::new(0),
        })
    }

    /// The budget with no pressure.
    pub fn full(&self) -> usize {
        self.full
    }

    /// The least the budget shrinks to.
    pub fn floor(&self) -> usize {
        self.floor
    }

    /// What `level` alone would allow: the floor plus the level's share of
    /// the room above it.
    pub fn target(&self, level: TrimLevel) -> usize {
        let room = self.full - self.floor;
        // Widened so `room * 1000` cannot overflow on 32-bit targets.
        let share = (room as u128 * level.share_permille() as u128 / 1000) as usize;
        self.floor + share
    }

    /// Bytes the engine may use now.
    pub fn allowed(&self) -> usize {
        self.allowed.load(Ordering::Acquire)
    }

    /// The last level applied (`None` after a restore).
    pub fn level(&self) -> TrimLevel {
        TrimLevel::from_android(self.level.load(Ordering::Acquire)).unwrap_or(TrimLevel::None)
    }

    /// Counts changes of `allowed`: an engine that remembers the epoch it
    /// last obeyed knows when to look again.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Apply an `onTrimMemory` level: the budget shrinks to the level's
    /// target if that is lower, and never grows. `TrimLevel::None` restores.
    /// Returns the bytes now allowed.
    pub fn trim(&self, level: TrimLevel) -> usize {
        if level == TrimLevel::None {
            return self.restore();
        }
        self.level.store(level as i32, Ordering::Release);
        let target = self.target(level);
        let before = self.allowed.fetch_min(target, Ordering::AcqRel);
        if target < before {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        before.min(target)
    }

    /// Pressure is over: the whole budget again. Returns it.
    pub fn restore(&self) -> usize {
        self.level.store(TrimLevel::None as i32, Ordering::Release);
        let before = self.allowed.swap(self.full, Ordering::AcqRel);
        if before != self.full {
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn android_values_map_to_the_closest_level_below() {
        assert_eq!(TrimLevel::from_android(0), Some(TrimLevel::None));
        assert_eq!(TrimLevel::from_android(4), Some(TrimLevel::None));
        assert_eq!(
            TrimLevel::from_android(15),
            Some(TrimLevel::RunningCritical)
        );
        assert_eq!(TrimLevel::from_android(20), Some(TrimLevel::UiHidden));
        assert_eq!(TrimLevel::from_android(50), Some(TrimLevel::Background));
        assert_eq!(TrimLevel::from_android(i32::MAX), Some(TrimLevel::Complete));
        assert_eq!(TrimLevel::from_android(-1), None);
        for l in TrimLevel::ALL {
            assert_eq!(TrimLevel::from_android(l as i32), Some(l));
        }
    }

    #[test]
    fn trims_shrink_to_the_level_and_never_grow() {
        let b = MemoryBudget::new(1000 * MIB, 200 * MIB).unwrap();
        assert_eq!(b.allowed(), 1000 * MIB);
        assert_eq!(b.epoch(), 0);
        assert_eq!(b.trim(TrimLevel::RunningLow), 600 * MIB);
        assert_eq!(b.level(), TrimLevel::RunningLow);
        assert_eq!(b.epoch(), 1);
        // Milder afterwards: no growth, no epoch change.
        assert_eq!(b.trim(TrimLevel::UiHidden), 600 * MIB);
        assert_eq!(b.allowed(), 600 * MIB);
        assert_eq!(b.epoch(), 1);
        assert_eq!(b.trim(TrimLevel::Complete), 200 * MIB);
        assert_eq!(b.epoch(), 2);
        assert_eq!(b.restore(), 1000 * MIB);
        assert_eq!(b.level(), TrimLevel::None);
        assert_eq!(b.epoch(), 3);
        assert_eq!(b.trim(TrimLevel::None), 1000 * MIB);
        assert_eq!(b.epoch(), 3);
    }

    #[test]
    fn targets_are_monotone_in_pressure_within_each_phase() {
        let b = MemoryBudget::new(usize::MAX, 7).unwrap();
        let running = [
            TrimLevel::None,
            TrimLevel::RunningModerate,
            TrimLevel::RunningLow,
            TrimLevel::RunningCritical,
        ];
        let background = [
            TrimLevel::UiHidden,
            TrimLevel::Background,
            TrimLevel::Moderate,
            TrimLevel::Complete,
        ];
        for phase in [&running[..], &background[..]] {
            for w in phase.windows(2) {
                assert!(b.target(w[0]) > b.target(w[1]), "{w:?}");
            }
        }
        assert_eq!(b.target(TrimLevel::Complete), 7);
        assert_eq!(b.target(TrimLevel::None), usize::MAX);
    }

    #[test]
    fn a_floor_above_the_budget_is_refused() {
        let e = MemoryBudget::new(10, 11).unwrap_err();
        assert_eq!(
            e,
            BudgetError {
                full: 10,
                floor: 11
            }
        );
        assert!(e.to_string().contains("above"));
        let zero = MemoryBudget::new(0, 0).unwrap();
        assert_eq!(zero.trim(TrimLevel::Complete), 0);
    }

    #[test]
    fn concurrent_trims_end_at_the_lowest_target() {
        let b = std::sync::Arc::new(MemoryBudget::new(1 << 30, 1 << 20).unwrap());
        let threads: Vec<_> = TrimLevel::ALL[1..]
            .iter()
            .map(|&l| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        b.trim(l);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.allowed(), 1 << 20);
    }
}
