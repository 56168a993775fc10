//! What the swap-area tests (`swap_power_cut.rs`, `swap_area.rs`) share:
//! a small fake device, a scripted sequence of operations, the model of
//! what the area must hold after each, and a reader of everything the area
//! holds.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;

use lode_hal::fake::{FakeFlash, FaultPlan};
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{FlashWrite, Geometry};
use lode_kernel::swap::{self, ChunkInfo, ChunkWrite, Commit, ErrorKind, SwapArea};

pub const BLOCK: u32 = 512;
pub const AREA: usize = 96 * BLOCK as usize;
pub const FINGERPRINT: [u8; 32] = [0x5A; 32];

/// A chunk as the model knows it: payload, level, valid tokens.
pub type Chunk = (Vec<u8>, u8, u8);

/// A context as the model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub tokens: Vec<u32>,
    pub chunks: BTreeMap<u32, Chunk>,
}

pub type State = BTreeMap<u64, Ctx>;

/// One operation of the script.
#[derive(Debug, Clone)]
pub enum Op {
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

pub fn payload(id: u64, index: u32, len: usize, salt: u64) -> Vec<u8> {
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

pub fn valid(index: u32, tokens: u32) -> u8 {
    (tokens - index * 16).min(16) as u8
}

pub fn script() -> Vec<Op> {
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
pub fn apply(state: &State, op: &Op, salt: u64) -> State {
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
pub fn states(ops: &[Op]) -> Vec<State> {
    let mut all = vec![State::new()];
    for (n, op) in ops.iter().enumerate() {
        let next = apply(all.last().unwrap(), op, n as u64);
        all.push(next);
    }
    all
}

pub fn device(plan: FaultPlan) -> FakeFlash<Vec<u8>> {
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

pub fn memory() -> Vec<u8> {
    vec![0u8; swap::memory_bytes(AREA as u64, BLOCK)]
}

/// Run `op` on `area`, with payloads from the model `after`.
pub fn run<D: FlashWrite>(
    area: &mut SwapArea<'_, D>,
    op: &Op,
    after: &State,
) -> Result<(), ErrorKind> {
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
pub fn read_state<D: FlashWrite>(area: &mut SwapArea<'_, D>) -> State {
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
