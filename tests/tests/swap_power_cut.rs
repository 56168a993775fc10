//! The KV swap area under power loss, and its refusals.
//!
//! The power-cut property: a scripted sequence (format, commit A, commit
//! B, recommit A keeping some chunks and rewriting others with more
//! tokens, delete B, commit C, recommit C) is first run without faults to
//! count the bytes it writes; then, for every byte offset of that write
//! stream, it is run again with the power cut there (with writes durable at
//! once, and with a volatile write cache under several seeds), the device
//! is power-cycled and the area opened. The recovered state must equal,
//! bit for bit (every token, every chunk payload), the state before the
//! interrupted operation or the state after it: never a mix, never an
//! error that loses a committed context. Then the area is used again
//! (commit, reopen) to show free space was rebuilt right.

use std::collections::BTreeMap;
use std::time::Instant;

use lode_formats::checksum::crc32c;
use lode_hal::fake::{FakeFlash, FaultPlan};
use lode_hal::slice_arena::SliceArena;
use lode_hal_linux::{FileFlash, FileFlashOptions};
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{FlashWrite, Geometry};
use lode_kernel::swap::{self, ChunkInfo, ChunkWrite, Commit, ErrorKind, OpenError, SwapArea};
use lode_tests::TempFile;

const BLOCK: u32 = 512;
const AREA: usize = 96 * BLOCK as usize;
const FINGERPRINT: [u8; 32] = [0x5A; 32];

/// A chunk as the model knows it: payload, level, valid tokens.
type Chunk = (Vec<u8>, u8, u8);

/// A context as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ctx {
    tokens: Vec<u32>,
    chunks: BTreeMap<u32, Chunk>,
}

type State = BTreeMap<u64, Ctx>;

/// One operation of the script.
#[derive(Debug, Clone)]
enum Op {
    /// Commit `id` with `tokens` tokens, keeping `keep`, writing `write`
    /// (index, payload length).
    Commit {
        id: u64,
        tokens: u32,
        keep: Vec<u32>,
        write: Vec<(u32, usize)>,
    },
    Delete(u64),
}

fn payload(id: u64, index: u32, len: usize, salt: u64) -> Vec<u8> {
    let mut x = id
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(index) << 20)
        .wrapping_add(salt << 40)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn valid(index: u32, tokens: u32) -> u8 {
    (tokens - index * 16).min(16) as u8
}

fn script() -> Vec<Op> {
    let c = |id, tokens, keep: &[u32], write: &[(u32, usize)]| Op::Commit {
        id,
        tokens,
        keep: keep.to_vec(),
        write: write.to_vec(),
    };
    vec![
        c(0xA, 40, &[], &[(0, 700), (1, 300), (2, 100)]),
        c(0xB, 20, &[], &[(0, 520), (1, 60)]),
        c(0xA, 56, &[0, 2], &[(1, 900), (3, 200)]),
        Op::Delete(0xB),
        c(0xC, 16, &[], &[(0, 1100)]),
        c(0xC, 33, &[0], &[(2, 50)]),
    ]
}

/// The model after `op`; `salt` tells versions of one chunk apart.
fn apply(state: &State, op: &Op, salt: u64) -> State {
    let mut next = state.clone();
    match op {
        Op::Delete(id) => {
            next.remove(id);
        }
        Op::Commit {
            id,
            tokens,
            keep,
            write,
        } => {
            let old = state.get(id);
            let mut chunks = BTreeMap::new();
            for k in keep {
                if let Some(c) = old.and_then(|o| o.chunks.get(k)) {
                    chunks.insert(*k, c.clone());
                }
            }
            for &(i, len) in write {
                let level = (i % 3) as u8 * 2 + 2;
                chunks.insert(i, (payload(*id, i, len, salt), level, valid(i, *tokens)));
            }
            let tokens = (0..*tokens).map(|t| t * 7 + *id as u32).collect();
            next.insert(*id, Ctx { tokens, chunks });
        }
    }
    next
}

/// The states after format and after each operation.
fn states(ops: &[Op]) -> Vec<State> {
    let mut all = vec![State::new()];
    for (n, op) in ops.iter().enumerate() {
        let next = apply(all.last().unwrap(), op, n as u64);
        all.push(next);
    }
    all
}

fn device(plan: FaultPlan) -> FakeFlash<Vec<u8>> {
    let geometry = Geometry {
        block_size: BLOCK,
        capacity: AREA as u64,
        max_transfer: 4 * BLOCK,
        queue_depth: 4,
    };
    let cost = CostModel {
        command_ns: 1,
        bytes_per_sec: 1 << 30,
        queue_depth: 4,
    };
    FakeFlash::with_model(vec![0u8; AREA], geometry, cost, plan)
}

fn memory() -> Vec<u8> {
    vec![0u8; swap::memory_bytes(AREA as u64, BLOCK)]
}

/// Run `op` on `area`, with payloads from the model `after`.
fn run<D: FlashWrite>(area: &mut SwapArea<'_, D>, op: &Op, after: &State) -> Result<(), ErrorKind> {
    match op {
        Op::Delete(id) => area.delete(*id).map_err(|e| e.kind()),
        Op::Commit {
            id, keep, write, ..
        } => {
            let ctx = &after[id];
            let writes: Vec<ChunkWrite<'_>> = write
                .iter()
                .map(|(i, _)| {
                    let (p, level, valid_tokens) = &ctx.chunks[i];
                    ChunkWrite {
                        index: *i,
                        level: *level,
                        valid_tokens: *valid_tokens,
                        payload: p,
                    }
                })
                .collect();
            let c = Commit {
                context: *id,
                tokens: &ctx.tokens,
                keep,
                write: &writes,
            };
            area.commit(&c).map_err(|e| e.kind())
        }
    }
}

/// Everything the area holds, read back through its API (payloads
/// checked against their CRC by the area).
fn read_state<D: FlashWrite>(area: &mut SwapArea<'_, D>) -> State {
    let mut dram = vec![0u8; 8192];
    let mut arena = SliceArena::new(&mut dram);
    let slot = arena
        .alloc(4096, BLOCK as usize, SlotKind::KvChunk)
        .unwrap();
    let ids: Vec<u64> = area.contexts().map(|c| c.id).collect();
    let mut state = State::new();
    for id in ids {
        let mut tokens = vec![0u32; 8192];
        let mut infos = vec![ChunkInfo::default(); 512];
        let view = area.read_context(id, &mut tokens, &mut infos).unwrap();
        tokens.truncate(view.tokens);
        let mut chunks = BTreeMap::new();
        for info in &infos[..view.chunks] {
            let got = area.read_chunk(id, info.index, &mut arena, slot).unwrap();
            assert_eq!(got, *info);
            let bytes = arena.bytes(slot).unwrap()[..info.len as usize].to_vec();
            chunks.insert(info.index, (bytes, info.level, info.valid_tokens));
        }
        state.insert(id, Ctx { tokens, chunks });
    }
    state
}

/// The script from format on a fresh device with `plan`; returns the
/// device and how many operations completed (format is operation 0).
fn run_script(
    plan: FaultPlan,
    ops: &[Op],
    states: &[State],
) -> (FakeFlash<Vec<u8>>, usize, Vec<u64>) {
    let mut dev = device(plan);
    let mut mem = memory();
    let mut marks = Vec::new();
    let Ok(mut area) = SwapArea::format(&mut dev, &FINGERPRINT, &mut mem) else {
        return (dev, 0, marks);
    };
    let mut done = 1;
    marks.push(area.device().counters().bytes_written);
    for (n, op) in ops.iter().enumerate() {
        if let Err(e) = run(&mut area, op, &states[n + 1]) {
            if plan.power_loss_after_bytes.is_none() {
                panic!("op {n}: {e:?}");
            }
            break;
        }
        done += 1;
        marks.push(area.device().counters().bytes_written);
    }
    drop(area);
    (dev, done, marks)
}

#[test]
fn every_power_cut_recovers_the_state_before_or_after() {
    let ops = script();
    let states = states(&ops);
    let (clean, done, marks) = run_script(FaultPlan::none(), &ops, &states);
    assert_eq!(done, ops.len() + 1);
    let total = *marks.last().unwrap();
    {
        let mut dev = clean;
        let mut mem = memory();
        let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
        assert_eq!(read_state(&mut area), *states.last().unwrap());
    }
    let start = Instant::now();
    let mut cuts = 0u64;
    let modes: [(bool, u64); 3] = [(false, 0), (true, 1), (true, 2)];
    for cut in 0..=total {
        for (volatile_writes, seed) in modes {
            let plan = FaultPlan {
                seed: seed ^ cut,
                volatile_writes,
                power_loss_after_bytes: Some(cut),
                ..FaultPlan::none()
            };
            let (mut dev, done, _) = run_script(plan, &ops, &states);
            assert!(
                done <= ops.len(),
                "cut {cut}: the power loss must interrupt something"
            );
            dev.power_cycle();
            cuts += 1;
            let mut mem = memory();
            let opened = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem);
            let mut area = match opened {
                // A cut during format: nothing was ever committed.
                Err(OpenError::NoSuperblock) if done == 0 => continue,
                Err(e) => panic!("cut {cut} in op {done} (volatile {volatile_writes}): {e:?}"),
                Ok(a) => a,
            };
            let got = read_state(&mut area);
            let before = done.checked_sub(1).map(|d| &states[d]);
            let after = &states[done];
            assert!(
                before == Some(&got) || after == &got,
                "cut {cut} in op {done} (volatile {volatile_writes}): recovered {got:?}"
            );
            // Keep going: a commit and a delete on the recovered state, then
            // a reopen, must see exactly the model.
            let extra = Op::Commit {
                id: 0xD,
                tokens: 30,
                keep: vec![],
                write: vec![(0, 800), (1, 400)],
            };
            let expect = apply(&got, &extra, 99);
            run(&mut area, &extra, &expect).unwrap();
            let expect = apply(&expect, &Op::Delete(0xD), 100);
            run(&mut area, &Op::Delete(0xD), &expect).unwrap();
            let free = area.free_bytes();
            drop(area);
            let mut mem = memory();
            let mut area = SwapArea::open(&mut dev, &FINGERPRINT, &mut mem).unwrap();
            assert_eq!(read_state(&mut area), expect, "cut {cut}: after recovery");
            assert_eq!(
                area.free_bytes(),
                free,
                "cut {cut}: free space rebuilt alike"
            );
        }
    }
    eprintln!(
        "swap power cut: {} byte offsets x {} modes = {cuts} cuts in {:.1} s",
        total + 1,
        modes.len(),
        start.elapsed().as_secs_f64()
    );
}
