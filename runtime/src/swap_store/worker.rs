//! The swap thread: owns the device, the area's memory and an arena for
//! chunk reads, and serves requests in order.

use std::sync::mpsc::{Receiver, Sender};

use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{DramArena, SlotKind};
use lode_kernel::swap::{self, memory_bytes, ChunkInfo, ChunkWrite, Commit, SwapArea};

use crate::device::AnyDevice;

use super::{ChunkOut, ReadChunk, Saved, SwapError, SwapInfo};

/// A request and the channel its answer goes to.
pub(super) enum Req {
    Commit {
        id: u64,
        tokens: Vec<u32>,
        keep: Vec<u32>,
        write: Vec<ChunkOut>,
        reply: Sender<Result<(), SwapError>>,
    },
    Read {
        id: u64,
        index: u32,
        reply: Sender<Result<ReadChunk, SwapError>>,
    },
    Delete {
        id: u64,
        reply: Sender<Result<(), SwapError>>,
    },
    List {
        reply: Sender<Result<Vec<Saved>, SwapError>>,
    },
}

fn err<E: std::fmt::Debug>(op: &'static str, kind: swap::ErrorKind, e: E) -> SwapError {
    SwapError::new(op, kind, format!("{e:?}"))
}

/// The thread's body: open (or format) the area, report, serve.
pub(super) fn run(
    dev: AnyDevice,
    fingerprint: [u8; 32],
    max_payload: usize,
    rx: Receiver<Req>,
    ready: Sender<Result<SwapInfo, SwapError>>,
) {
    use lode_kernel::flash::FlashDevice;
    let g = dev.geometry();
    let Some(block) = swap::block_for(&g) else {
        let _ = ready.send(Err(SwapError::new(
            "open",
            swap::ErrorKind::BadGeometry,
            format!(
                "a device of {} bytes in blocks of {} cannot hold a swap area",
                g.capacity, g.block_size
            ),
        )));
        return;
    };
    let mut mem = vec![0u8; memory_bytes(g.capacity, block)];
    let mut io = vec![0u8; max_payload + 2 * block as usize];
    let mut arena = SliceArena::<2>::with_slots(&mut io);
    let dest = match arena.alloc(
        max_payload + block as usize,
        block as usize,
        SlotKind::IoBuffer,
    ) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(err("open", swap::ErrorKind::MemoryTooSmall, e)));
            return;
        }
    };
    let mut dev = dev;
    let (mut area, formatted) = match open_or_format(&mut dev, &fingerprint, &mut mem) {
        Ok(a) => a,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let info = SwapInfo {
        bytes: area.shape().len,
        free: area.free_bytes(),
        contexts: area.len(),
        formatted,
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    while let Ok(req) = rx.recv() {
        let before = area.device().virtual_ns();
        let written = match &req {
            Req::Commit { write, .. } => write.iter().map(|c| c.payload.len() as u64).sum(),
            _ => 0,
        };
        serve(&mut area, &mut arena, dest, req);
        pace(area.device(), before, written);
    }
    // Every commit synced before it answered: nothing to flush.
}

type Area<'m> = SwapArea<'m, &'m mut AnyDevice>;

/// On the fake flash time is virtual: reads advance its clock and writes
/// are instant. So that wall-clock benchmarks (`lode bench contexts`) see
/// the device, the thread sleeps for the virtual time a request's reads
/// took and for what its `written` bytes would take at the device's cost
/// model (its read bandwidth: the fake has no write model). A file or a
/// partition takes its own time.
fn pace(dev: &AnyDevice, before_ns: u64, written: u64) {
    use lode_kernel::flash::FlashDevice;
    if !matches!(dev, AnyDevice::Fake(_)) {
        return;
    }
    let mut ns = dev.virtual_ns().saturating_sub(before_ns);
    if written > 0 {
        ns += dev.cost_model().batch_ns(1, written);
    }
    std::thread::sleep(std::time::Duration::from_nanos(ns));
}

/// Opens the area on `dev`, or formats it when no superblock is there.
fn open_or_format<'m>(
    dev: &'m mut AnyDevice,
    fingerprint: &[u8; 32],
    mem: &'m mut [u8],
) -> Result<(Area<'m>, bool), SwapError> {
    // Open borrows the device, so a refusal leaves it here to format.
    let absent = match SwapArea::open(&mut *dev, fingerprint, &mut *mem) {
        Ok(_) => false,
        Err(e) if e.kind() == swap::ErrorKind::NoSuperblock => true,
        Err(e) => return Err(err("open", e.kind(), e)),
    };
    if absent {
        let a = SwapArea::format(dev, fingerprint, mem).map_err(|e| err("format", e.kind(), e))?;
        Ok((a, true))
    } else {
        let a = SwapArea::open(dev, fingerprint, mem).map_err(|e| err("open", e.kind(), e))?;
        Ok((a, false))
    }
}

/// Serves one request.
fn serve(
    area: &mut Area<'_>,
    arena: &mut SliceArena<'_, 2>,
    dest: lode_kernel::arena::Slot,
    req: Req,
) {
    match req {
        Req::Commit {
            id,
            tokens,
            keep,
            write,
            reply,
        } => {
            let writes: Vec<ChunkWrite<'_>> = write
                .iter()
                .map(|c| ChunkWrite {
                    index: c.index,
                    level: c.level,
                    valid_tokens: c.valid_tokens,
                    payload: &c.payload,
                })
                .collect();
            let c = Commit {
                context: id,
                tokens: &tokens,
                keep: &keep,
                write: &writes,
            };
            let _ = reply.send(area.commit(&c).map_err(|e| err("commit", e.kind(), e)));
        }
        Req::Read { id, index, reply } => {
            let t = std::time::Instant::now();
            let r = area
                .read_chunk(id, index, arena, dest)
                .map_err(|e| err("read", e.kind(), e))
                .and_then(|info| {
                    let bytes = arena
                        .bytes(dest)
                        .map_err(|e| err("read", swap::ErrorKind::InvalidArgument, e))?;
                    let payload = bytes.get(..info.len as usize).ok_or_else(|| {
                        SwapError::new(
                            "read",
                            swap::ErrorKind::Corrupt,
                            "payload longer than the buffer".into(),
                        )
                    })?;
                    Ok(ReadChunk {
                        info,
                        payload: payload.to_vec(),
                        seconds: t.elapsed().as_secs_f64(),
                    })
                });
            let _ = reply.send(r);
        }
        Req::Delete { id, reply } => {
            let r = match area.delete(id) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == swap::ErrorKind::Unknown => Ok(()),
                Err(e) => Err(err("delete", e.kind(), e)),
            };
            let _ = reply.send(r);
        }
        Req::List { reply } => {
            let _ = reply.send(list(area));
        }
    }
}

/// Every committed context, read back.
fn list(area: &mut Area<'_>) -> Result<Vec<Saved>, SwapError> {
    use lode_kernel::limits::{MAX_CHUNKS, MAX_CONTEXT};
    let ids: Vec<u64> = area.contexts().map(|c| c.id).collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut tokens = vec![0u32; MAX_CONTEXT];
        let mut chunks = vec![ChunkInfo::default(); MAX_CHUNKS];
        let v = area
            .read_context(id, &mut tokens, &mut chunks)
            .map_err(|e| err("list", e.kind(), e))?;
        tokens.truncate(v.tokens);
        chunks.truncate(v.chunks);
        out.push(Saved { id, tokens, chunks });
    }
    Ok(out)
}
