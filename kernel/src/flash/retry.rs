//! The one retry rule for reads: a read that fails, or whose bytes fail
//! their check, is tried again, up to [`MAX_READ_ATTEMPTS`] times in all.
//!
//! A transient fault (a flipped bit on the bus, a command the device
//! retried itself) clears on the next read; a bad medium does not, and the
//! last attempt's error is reported with the number of tries.

use crate::limits::MAX_READ_ATTEMPTS;

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// It worked.
    Done(T),
    /// It failed in a way another read may not (a read error, a mismatch).
    Again(E),
    /// It failed in a way another read would not change.
    Stop(E),
}

/// Runs `once(attempt)` (attempt 1, 2, ...) until it is `Done`, `Stop`s, or
/// has failed [`MAX_READ_ATTEMPTS`] times; returns its value and the number
/// of retries, or the last error.
pub fn with_retries<T, E>(mut once: impl FnMut(u32) -> Attempt<T, E>) -> Result<(T, u32), E> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match once(attempts) {
            Attempt::Done(t) => return Ok((t, attempts - 1)),
            Attempt::Stop(e) => return Err(e),
            Attempt::Again(e) if attempts >= MAX_READ_ATTEMPTS => return Err(e),
            Attempt::Again(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_retried_and_lasting_ones_reported() {
        let r = with_retries(|a| {
            if a < 3 {
                Attempt::Again(a)
            } else {
                Attempt::Done(a)
            }
        });
        assert_eq!(r, Ok((3, 2)));
        let r: Result<((), u32), u32> = with_retries(Attempt::Again);
        assert_eq!(r, Err(MAX_READ_ATTEMPTS));
        let mut calls = 0;
        let r: Result<((), u32), &str> = with_retries(|_| {
            calls += 1;
            Attempt::Stop("no")
        });
        assert_eq!((r, calls), (Err("no"), 1));
    }
}
