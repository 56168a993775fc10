//! Running one operation as several chunks: on the worker pool with `std`,
//! one after another without.
//!
//! Operations describe their chunks as disjoint `&mut` pieces (rows of the
//! output, ranges of heads); [`Exec::for_each`] hands each piece to exactly
//! one thread. With `std` the pieces sit behind one uncontended mutex each,
//! which is how a shared `Fn` closure gets exclusive access to its piece
//! without any `unsafe` outside the pool.
//!
//! An operation is cut into a few chunks per thread rather than one, so a
//! thread that starts late (or is preempted) leaves its share to the others
//! instead of holding everyone up.

use heapless::Vec as HVec;

/// Most threads one operation uses.
pub const MAX_THREADS: usize = 16;

/// Most chunks one operation is cut into.
pub(crate) const MAX_CHUNKS: usize = 64;

/// Chunks per thread when the work is large enough.
const CHUNKS_PER_THREAD: usize = 4;

/// Up to [`MAX_CHUNKS`] per-chunk work items.
pub(crate) type Parts<T> = HVec<T, MAX_CHUNKS>;

/// Where chunks run.
pub(crate) struct Exec {
    #[cfg(feature = "std")]
    pool: Option<super::pool::Pool>,
    /// Smallest amount of work (multiply-adds) worth its own chunk.
    min_work: usize,
}

impl Exec {
    /// Single-threaded execution.
    pub(crate) fn inline(min_work: usize) -> Exec {
        Exec {
            #[cfg(feature = "std")]
            pool: None,
            min_work,
        }
    }

    /// Execution on `threads` threads (the caller plus `threads - 1` pool
    /// workers spinning for `spin` between jobs).
    #[cfg(feature = "std")]
    pub(crate) fn threaded(
        threads: usize,
        min_work: usize,
        spin: std::time::Duration,
    ) -> std::io::Result<Exec> {
        let threads = threads.clamp(1, MAX_THREADS);
        if threads == 1 {
            return Ok(Exec::inline(min_work));
        }
        let pool = Some(super::pool::Pool::new(threads - 1, spin)?);
        Ok(Exec { pool, min_work })
    }

    /// Threads available to one operation.
    pub(crate) fn threads(&self) -> usize {
        #[cfg(feature = "std")]
        if let Some(p) = &self.pool {
            return p.threads();
        }
        1
    }

    /// How many chunks `work` multiply-adds over `units` divisible units
    /// should be cut into: one when single-threaded or below the threshold,
    /// otherwise a few per thread, at most one per unit and per threshold's
    /// worth of work.
    pub(crate) fn chunks_for(&self, work: usize, units: usize) -> usize {
        let threads = self.threads();
        if threads <= 1 {
            return 1;
        }
        // A zero threshold means "always split".
        let by_work = work.checked_div(self.min_work).unwrap_or(usize::MAX);
        (threads * CHUNKS_PER_THREAD)
            .min(MAX_CHUNKS)
            .min(units)
            .min(by_work)
            .max(1)
    }

    /// Calls `f` once on every item, items possibly on different threads;
    /// returns when all calls have returned.
    pub(crate) fn for_each<T: Send>(&mut self, items: &mut [T], f: &(dyn Fn(&mut T) + Sync)) {
        #[cfg(feature = "std")]
        if let Some(pool) = &mut self.pool {
            if items.len() > 1 {
                let mut cells: Parts<std::sync::Mutex<&mut T>> = HVec::new();
                let mut rest = items.iter_mut();
                for it in rest.by_ref() {
                    if let Err(full) = cells.push(std::sync::Mutex::new(it)) {
                        // More items than chunk slots: this one (and the
                        // rest, below) run on the calling thread.
                        f(full.into_inner().unwrap_or_else(|e| e.into_inner()));
                        break;
                    }
                }
                for it in rest {
                    f(it);
                }
                pool.run(cells.len(), &|i| {
                    if let Some(c) = cells.get(i) {
                        let mut g = c.lock().unwrap_or_else(|e| e.into_inner());
                        f(&mut g);
                    }
                });
                return;
            }
        }
        for it in items.iter_mut() {
            f(it);
        }
    }
}

/// `len` units split into at most `chunks` contiguous ranges of whole
/// `granule`s (the last range takes the remainder), as (start, end) pairs.
pub(crate) fn split_ranges(len: usize, granule: usize, chunks: usize) -> Parts<(usize, usize)> {
    let mut out = HVec::new();
    let granule = granule.max(1);
    let groups = len.div_ceil(granule);
    let chunks = chunks.clamp(1, MAX_CHUNKS).min(groups.max(1));
    let per = groups.div_ceil(chunks);
    let mut start = 0;
    while start < len {
        let end = (start + per * granule).min(len);
        if out.push((start, end)).is_err() {
            break;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ranges_cover_exactly(len in 0usize..5000, granule in 1usize..64, chunks in 1usize..80) {
            let r = split_ranges(len, granule, chunks);
            prop_assert!(r.len() <= chunks.clamp(1, MAX_CHUNKS));
            let mut next = 0;
            for &(a, b) in &r {
                prop_assert_eq!(a, next);
                prop_assert!(b > a);
                prop_assert!(a % granule == 0);
                next = b;
            }
            prop_assert_eq!(next, len);
        }
    }

    #[test]
    fn chunk_counts() {
        let e = Exec::inline(1000);
        assert_eq!(e.chunks_for(10_000, 5), 1, "inline has one thread");
        #[cfg(feature = "std")]
        {
            let e = Exec::threaded(2, 1000, std::time::Duration::ZERO).unwrap();
            assert_eq!(e.chunks_for(1999, 100), 1);
            assert_eq!(e.chunks_for(5_000, 100), 5);
            assert_eq!(e.chunks_for(1_000_000, 100), 8, "four per thread");
            assert_eq!(e.chunks_for(1_000_000, 3), 3, "one per unit");
            let e = Exec::threaded(2, 0, std::time::Duration::ZERO).unwrap();
            assert_eq!(e.chunks_for(1, 100), 8, "zero threshold always splits");
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn every_item_runs_once_even_beyond_the_chunk_limit() {
        let mut e = Exec::threaded(2, 1, std::time::Duration::ZERO).unwrap();
        let mut items: std::vec::Vec<u32> = (0..MAX_CHUNKS as u32 + 5).collect();
        e.for_each(&mut items, &|v| *v += 10);
        assert!(items.iter().enumerate().all(|(i, &v)| v == i as u32 + 10));
    }
}
