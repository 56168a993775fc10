//! What the fuzz tests (`tests/tests/fuzz_*.rs`) share: how many cases to
//! run, the mutations applied to valid inputs, and a runner that checks
//! every case finishes in bounded time and reports what it did.
//!
//! Each fuzz test is a proptest property driven by [`run`]: it draws inputs
//! (valid files mutated by [`Mutation`]s, optionally with their checksums
//! fixed so the mutation reaches the checks behind them, or plain random
//! bytes), runs the parser on each inside
//! [`CountingAlloc::measure`](lode_tests::CountingAlloc::measure), and
//! asserts: no panic (a panic fails the case and proptest shrinks it),
//! every error is the parser's typed error (the signatures say so; the
//! tests also check each has a message), allocation within the stated
//! bound, and each
//! case done in under [`CASE_LIMIT`]; a watchdog fails the whole run if it
//! does not end in [`RUN_LIMIT`] (an input that makes a parser loop).
//!
//! Environment:
//! - `LODE_FUZZ_CASES`: cases per property (default [`DEFAULT_CASES`]);
//! - `LODE_FUZZ_SEED`: the RNG seed (default: from the clock), printed
//!   with every run so a failure can be repeated exactly.

// Each fuzz binary uses a different part of this module.
#![allow(dead_code)]

pub mod gguf;

use std::fmt::Debug;
use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// Cases per property when `LODE_FUZZ_CASES` is not set: what every CI run
/// gives each parser.
pub const DEFAULT_CASES: u32 = 10_000;

/// Longest a single case may take. Every parser's work is linear in its
/// input, and inputs here are at most tens of KiB: a case that takes this
/// long is a parser doing far more work than its input justifies.
pub const CASE_LIMIT: Duration = Duration::from_secs(1);

/// Longest a whole property may run before the watchdog calls it a hang.
pub const RUN_LIMIT: Duration = Duration::from_secs(600);

/// Cases per property: `LODE_FUZZ_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("LODE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The RNG seed: `LODE_FUZZ_SEED`, else one from the clock (a new corner
/// of the input space each run; the seed is printed to repeat it).
pub fn seed() -> u64 {
    std::env::var("LODE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A line on the test's real stderr: the harness captures `eprintln!` of
/// passing tests, and the number of cases run should show in CI's log.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Where a mutation lands: anywhere, or (`head`) in the first
/// [`HEAD`] bytes, where headers, tables and length fields are.
#[derive(Debug, Clone)]
pub struct Spot {
    at: Index,
    head: bool,
}

/// Bytes at the start of an input that hold most of its structure.
pub const HEAD: usize = 1024;

impl Spot {
    /// The byte index in an input of `len` bytes (0 when it is empty).
    fn index(&self, len: usize) -> usize {
        match len {
            0 => 0,
            _ if self.head => self.at.index(len.min(HEAD)),
            _ => self.at.index(len),
        }
    }
}

impl Arbitrary for Spot {
    type Parameters = ();
    type Strategy = SBoxedStrategy<Spot>;

    fn arbitrary_with((): ()) -> Self::Strategy {
        (any::<Index>(), any::<bool>())
            .prop_map(|(at, head)| Spot { at, head })
            .sboxed()
    }
}

/// One change to a valid input.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit { at: Spot, bit: u8 },
    /// Set one byte.
    SetByte { at: Spot, value: u8 },
    /// Cut the input at a point.
    Truncate { at: Spot },
    /// Insert bytes at a point.
    Insert { at: Spot, bytes: Vec<u8> },
    /// Remove up to `len` bytes from a point.
    Remove { at: Spot, len: usize },
    /// Overwrite a little-endian `u32` (a count, length, offset, type or
    /// flag field) with an extreme or random value; `aligned` puts it at a
    /// multiple of 4, where fixed records keep their fields.
    SetU32 { at: Spot, aligned: bool, value: u32 },
    /// The same for a `u64` (GGUF lengths and counts, image offsets).
    SetU64 { at: Spot, aligned: bool, value: u64 },
    /// Copy a run of the input over another place (a field moved or
    /// duplicated).
    Copy { from: Spot, to: Spot, len: usize },
    /// Change fields that look like lengths, counts or offsets: aligned
    /// `u32`s (or, `wide`, `u64`s) whose value is between 1 and four times
    /// the input's length; `run` of them in a row, from the `which`-th, the
    /// same way (an offset and a length, or two lengths that must agree,
    /// lie together). Lying lengths are what parsers trust too far, and
    /// random positions rarely hit them.
    SetField {
        which: Index,
        run: usize,
        wide: bool,
        change: Change,
    },
}

/// How [`Mutation::SetField`] changes a field's value `v`.
#[derive(Debug, Clone)]
pub enum Change {
    /// Replace it.
    To(u64),
    /// `v << k` (a plausible but far too large size).
    Shift(u8),
    /// `v + d`, wrapping (off by a little).
    Add(i16),
}

impl Change {
    fn of(&self, v: u64) -> u64 {
        match *self {
            Change::To(x) => x,
            Change::Shift(k) => v.checked_shl(u32::from(k)).unwrap_or(u64::MAX),
            Change::Add(d) => v.wrapping_add_signed(i64::from(d)),
        }
    }
}

/// Reads the little-endian field of `width` bytes at `at`.
fn field(input: &[u8], at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..width].copy_from_slice(&input[at..at + width]);
    u64::from_le_bytes(b)
}

/// Offsets of the fields [`Mutation::SetField`] may change.
fn length_fields(input: &[u8], width: usize) -> impl Iterator<Item = usize> + '_ {
    let most = 4 * input.len() as u64;
    (0..input.len().saturating_sub(width - 1))
        .step_by(width)
        .filter(move |&at| (1..=most).contains(&field(input, at, width)))
}

/// Values that make length and count fields lie the most.
fn wild_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => any::<u32>(),
        1 => prop::sample::select(vec![
            0, 1, 2, 3, 4, 7, 8, 9, 12, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000,
            u32::MAX - 1, u32::MAX,
        ]),
        1 => 0u32..64,
    ]
}

fn wild_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => prop::sample::select(vec![
            0,
            1,
            8,
            24,
            1 << 17,
            1 << 20,
            1 << 27,
            0xFFFF_FFFF,
            0x1_0000_0000,
            1 << 40,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 7,
            u64::MAX,
        ]),
        1 => 0u64..4096,
    ]
}

/// One mutation, any kind.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Spot>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (any::<Spot>(), any::<u8>()).prop_map(|(at, value)| Mutation::SetByte { at, value }),
        1 => any::<Spot>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Spot>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Spot>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        3 => (any::<Spot>(), any::<bool>(), wild_u32())
            .prop_map(|(at, aligned, value)| Mutation::SetU32 { at, aligned, value }),
        3 => (any::<Spot>(), any::<bool>(), wild_u64())
            .prop_map(|(at, aligned, value)| Mutation::SetU64 { at, aligned, value }),
        1 => (any::<Spot>(), any::<Spot>(), 1usize..32)
            .prop_map(|(from, to, len)| Mutation::Copy { from, to, len }),
        4 => (any::<Index>(), 1usize..4, any::<bool>(), change()).prop_map(
            |(which, run, wide, change)| Mutation::SetField { which, run, wide, change }
        ),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        wild_u64().prop_map(Change::To),
        (1u8..48).prop_map(Change::Shift),
        (-16i16..=16).prop_map(Change::Add),
    ]
}

/// One to four mutations, applied in order.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

/// An index into `len` bytes (0 when there are none), aligned down to
/// `align`.
fn place(at: &Spot, len: usize, align: usize) -> usize {
    let i = at.index(len);
    i - i % align
}

/// Writes `bytes` at `at`, as much as fits.
fn overwrite(input: &mut [u8], at: usize, bytes: &[u8]) {
    let end = input.len().min(at.saturating_add(bytes.len()));
    if let Some(dst) = input.get_mut(at..end) {
        let n = dst.len();
        dst.copy_from_slice(&bytes[..n]);
    }
}

impl Mutation {
    /// Applies the mutation to `input`.
    pub fn apply(&self, input: &mut Vec<u8>) {
        let len = input.len();
        match self {
            Mutation::FlipBit { at, bit } => {
                if let Some(b) = input.get_mut(at.index(len)) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Mutation::SetByte { at, value } => {
                if let Some(b) = input.get_mut(at.index(len)) {
                    *b = *value;
                }
            }
            Mutation::Truncate { at } => input.truncate(place(at, len, 1)),
            Mutation::Insert { at, bytes } => {
                let i = place(at, len + 1, 1);
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at, len: n } => {
                let i = place(at, len, 1);
                input.drain(i..len.min(i + n));
            }
            Mutation::SetU32 { at, aligned, value } => {
                let i = place(at, len, if *aligned { 4 } else { 1 });
                overwrite(input, i, &value.to_le_bytes());
            }
            Mutation::SetU64 { at, aligned, value } => {
                let i = place(at, len, if *aligned { 8 } else { 1 });
                overwrite(input, i, &value.to_le_bytes());
            }
            Mutation::Copy { from, to, len: n } => {
                let (f, t) = (place(from, len, 1), place(to, len, 1));
                let run: Vec<u8> = input[f..len.min(f + n)].to_vec();
                overwrite(input, t, &run);
            }
            Mutation::SetField {
                which,
                run,
                wide,
                change,
            } => {
                let width = if *wide { 8 } else { 4 };
                let n = length_fields(input, width).count();
                if n == 0 {
                    return;
                }
                let chosen: Vec<usize> = length_fields(input, width)
                    .skip(which.index(n))
                    .take(*run)
                    .collect();
                for at in chosen {
                    let v = change.of(field(input, at, width));
                    overwrite(input, at, &v.to_le_bytes()[..width]);
                }
            }
        }
    }
}

/// How a fuzz input was made, kept so a failure shows it.
#[derive(Debug, Clone)]
pub enum Recipe {
    /// Valid seed `seed`, mutated, then (when `fixed`) with its checksums
    /// recomputed by the target's fixer.
    Mutated {
        seed: usize,
        mutations: Vec<Mutation>,
        fixed: bool,
    },
    /// Bytes from nowhere.
    Random(Vec<u8>),
    /// The first bytes of a valid seed (its magic and header), then random
    /// bytes: gets past the magic check more often than pure noise.
    Spliced {
        seed: usize,
        keep: Index,
        tail: Vec<u8>,
    },
}

/// An input to a parser: its bytes and how they were made.
#[derive(Clone)]
pub struct Input {
    /// What the parser reads.
    pub bytes: Vec<u8>,
    /// How it was made.
    pub recipe: Recipe,
}

impl Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes from {:?}: {}",
            self.bytes.len(),
            self.recipe,
            hex(&self.bytes)
        )
    }
}

/// `bytes` as hex, for a failure message (whole: a regression test needs it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inputs made from the valid files `seeds`: mostly mutated (half of those
/// with `fix` applied afterwards, to recompute checksums), some spliced,
/// some random bytes of up to `random_max` bytes.
pub fn inputs(
    seeds: Arc<Vec<Vec<u8>>>,
    fix: fn(&mut [u8]),
    random_max: usize,
) -> impl Strategy<Value = Input> {
    let n = seeds.len();
    let (s1, s2) = (seeds.clone(), seeds);
    let mutated = (0..n, mutations(), any::<bool>()).prop_map(move |(seed, mutations, fixed)| {
        let mut bytes = s1[seed].clone();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        if fixed {
            fix(&mut bytes);
        }
        Input {
            bytes,
            recipe: Recipe::Mutated {
                seed,
                mutations,
                fixed,
            },
        }
    });
    let spliced = (
        0..n,
        any::<Index>(),
        prop::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(move |(seed, keep, tail)| {
            let valid = &s2[seed];
            let mut bytes = valid[..keep.index(valid.len().min(256) + 1)].to_vec();
            bytes.extend_from_slice(&tail);
            Input {
                bytes,
                recipe: Recipe::Spliced { seed, keep, tail },
            }
        });
    let random = prop::collection::vec(any::<u8>(), 0..random_max).prop_map(|bytes| Input {
        bytes: bytes.clone(),
        recipe: Recipe::Random(bytes),
    });
    prop_oneof![8 => mutated, 1 => spliced, 1 => random]
}

/// What a property's run found, for its report line.
#[derive(Debug, Default)]
struct Stats {
    cases: u64,
    accepted: u64,
    slowest: Duration,
}

impl Stats {
    /// The report line of property `name` run from `seed` since `start`.
    fn line(&self, name: &str, start: Instant, seed: u64) -> String {
        format!(
            "fuzz {name}: {} cases ({} accepted) in {:.1} s, slowest {:.2} ms; \
             LODE_FUZZ_SEED={seed}",
            self.cases,
            self.accepted,
            start.elapsed().as_secs_f64(),
            self.slowest.as_secs_f64() * 1e3
        )
    }
}

/// The proptest configuration of every property: `cases` cases from
/// `seed`, no regression files written into the source tree (a failure
/// prints its input and seed instead), shrinking bounded to a minute.
fn config(cases: u32, seed: u64) -> Config {
    Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is plain
/// counters and a copy of an input, never half-written).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `check` on `cases()` inputs from `strategy` on a thread of its own,
/// under a watchdog, and prints one line: cases, how many inputs the
/// parser accepted, time, the slowest case and the seed.
///
/// `check` returns whether the parser accepted the input; it fails the
/// case (`prop_assert!`) on anything else that is wrong. A case slower than
/// [`CASE_LIMIT`] fails too; so does the whole run if it is still going
/// after [`RUN_LIMIT`], with the input it was on.
pub fn run<S>(
    name: &'static str,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<bool, TestCaseError> + Send + Sync + 'static,
) where
    S: Strategy + Send + 'static,
    S::Value: Clone + Debug + Send + 'static,
{
    let cases = cases();
    let seed = seed();
    let current: Arc<Mutex<Option<S::Value>>> = Arc::new(Mutex::new(None));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let (done, finished) = mpsc::channel();
    let (cur, st) = (current.clone(), stats.clone());
    let start = Instant::now();
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(8 << 20)
        .spawn(move || {
            let mut runner = TestRunner::new(config(cases, seed));
            let result = runner.run(&strategy, |input| {
                *lock(&cur) = Some(input.clone());
                let t = Instant::now();
                let accepted = check(&input)?;
                let took = t.elapsed();
                let mut s = lock(&st);
                s.cases += 1;
                s.accepted += u64::from(accepted);
                s.slowest = s.slowest.max(took);
                prop_assert!(
                    took < CASE_LIMIT,
                    "{name}: one case took {took:?}, more than {CASE_LIMIT:?}"
                );
                Ok(())
            });
            let _ = done.send(result.map_err(|e| match e {
                TestError::Fail(why, input) => format!("{why}\nminimal failing input: {input:?}"),
                TestError::Abort(why) => format!("aborted: {why}"),
            }));
        })
        .expect("a fuzz thread");
    let outcome = finished.recv_timeout(RUN_LIMIT);
    let s = lock(&stats);
    let line = s.line(name, start, seed);
    report(&line);
    match outcome {
        Ok(Ok(())) => assert!(s.cases >= u64::from(cases), "{line}: too few cases"),
        Ok(Err(why)) => panic!("{line}\n{why}"),
        Err(_) => {
            let last = lock(&current).clone();
            panic!("{line}\nstill running after {RUN_LIMIT:?} (a parser loops?) on {last:?}");
        }
    }
}

/// Runs `read` (a reader over one input) under the allocation counter and
/// checks what every reader promises: it allocates nothing, and an error
/// it returns has a message. Returns what the reader returned.
pub fn read_without_allocating<T, E: std::fmt::Display>(
    read: impl FnOnce() -> Result<T, E>,
) -> Result<Result<T, E>, TestCaseError> {
    let (result, used) = lode_tests::CountingAlloc::measure(read);
    prop_assert_eq!(used.count, 0, "the reader allocated: {:?}", used);
    if let Err(e) = &result {
        prop_assert!(!e.to_string().is_empty());
    }
    Ok(result)
}
