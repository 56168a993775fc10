//! The KV swap area, served by a thread of its own.
//!
//! The kernel's [`SwapArea`] borrows its memory and its device; this
//! thread owns both for the life of the store, so the service can hand it
//! work without lifetimes: commits (a context's new chunks, written when a
//! call returns), chunk reads (a restore asks for every chunk it reads at
//! once, then recomputes the others while this thread reads, which is
//! LLMS's I/O-recompute pipeline), deletes and listings. Requests are
//! served in order; each answers on its own channel.
//!
//! Payloads travel as `Vec<u8>`: transient I/O buffers of at most one
//! commit's chunks or one chunk read, outside the DRAM budget, as the
//! device's bounce buffers are.

mod device;
mod worker;

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use lode_kernel::swap::{self, ChunkInfo};

pub use device::{open_swap_device, SwapSpec};

use worker::{run, Req};

/// Why a swap-area operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapError {
    /// What was being done: "open", "commit", "read", "delete", "list".
    pub op: &'static str,
    /// The kernel's kind of failure (`Corrupt`: recompute from text;
    /// `Full`: nothing committed was lost).
    pub kind: swap::ErrorKind,
    /// The details.
    pub message: String,
}

impl SwapError {
    pub(crate) fn new(op: &'static str, kind: swap::ErrorKind, message: String) -> SwapError {
        SwapError { op, kind, message }
    }

    fn gone(op: &'static str) -> SwapError {
        SwapError::new(
            op,
            swap::ErrorKind::Device,
            "the swap thread stopped".into(),
        )
    }

    /// The kind of failure.
    pub fn kind(&self) -> swap::ErrorKind {
        self.kind
    }
}

impl std::fmt::Display for SwapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "swap area {}: {}", self.op, self.message)
    }
}

impl std::error::Error for SwapError {}

/// One chunk of a commit.
#[derive(Debug, Clone)]
pub struct ChunkOut {
    /// Chunk number in the context.
    pub index: u32,
    /// Level code (`ChunkLevel::code`).
    pub level: u8,
    /// Positions it holds.
    pub valid_tokens: u8,
    /// The encoded chunk.
    pub payload: Vec<u8>,
}

/// A context as committed.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its id.
    pub id: u64,
    /// Its tokens.
    pub tokens: Vec<u32>,
    /// Its chunks.
    pub chunks: Vec<ChunkInfo>,
}

/// What the area holds, after open.
#[derive(Debug, Clone, Copy)]
pub struct SwapInfo {
    /// Bytes of the area.
    pub bytes: u64,
    /// Bytes free.
    pub free: u64,
    /// Contexts committed.
    pub contexts: usize,
    /// Whether it was formatted now (nothing was there).
    pub formatted: bool,
}

/// A chunk read back.
#[derive(Debug, Clone)]
pub struct ReadChunk {
    /// Its record.
    pub info: ChunkInfo,
    /// Its payload, checked against the record's CRC.
    pub payload: Vec<u8>,
    /// Seconds the swap thread spent reading it (the cost models' input).
    pub seconds: f64,
}

/// A chunk read in flight: [`SwapStore::read`] returns it at once and
/// [`PendingRead::wait`] blocks for the payload.
#[derive(Debug)]
pub struct PendingRead(Receiver<Result<ReadChunk, SwapError>>);

impl PendingRead {
    /// The chunk, once read.
    pub fn wait(self) -> Result<ReadChunk, SwapError> {
        self.0.recv().map_err(|_| SwapError::gone("read"))?
    }
}

/// The swap area and its thread.
#[derive(Debug)]
pub struct SwapStore {
    tx: Option<Sender<Req>>,
    thread: Option<JoinHandle<()>>,
    info: SwapInfo,
    name: String,
}

impl SwapStore {
    /// Opens the swap area on `spec` for the model `fingerprint`,
    /// formatting it when it holds none (a new file, a zeroed device). An
    /// area of another model or format version is refused, not
    /// overwritten. `max_payload` is the largest chunk read (the model's
    /// f32 chunk).
    pub fn open(
        spec: &SwapSpec,
        size: u64,
        fingerprint: [u8; 32],
        max_payload: usize,
    ) -> Result<SwapStore, SwapError> {
        let dev = open_swap_device(spec, size)
            .map_err(|m| SwapError::new("open", swap::ErrorKind::Device, m))?;
        let (tx, rx) = channel();
        let (ready_tx, ready_rx) = channel();
        let thread = std::thread::Builder::new()
            .name("lode-swap".into())
            .spawn(move || run(dev, fingerprint, max_payload, rx, ready_tx))
            .map_err(|e| SwapError::new("open", swap::ErrorKind::Device, e.to_string()))?;
        let info = ready_rx.recv().map_err(|_| SwapError::gone("open"))??;
        Ok(SwapStore {
            tx: Some(tx),
            thread: Some(thread),
            info,
            name: spec.to_string(),
        })
    }

    /// What the area held when it was opened.
    pub fn info(&self) -> SwapInfo {
        self.info
    }

    /// `file:<path>` or `fake:<profile>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn send<T>(&self, make: impl FnOnce(Sender<T>) -> Req) -> Receiver<T> {
        let (tx, rx) = channel();
        if let Some(s) = &self.tx {
            // A send fails only when the thread is gone; the receiver then
            // reports it.
            let _ = s.send(make(tx));
        }
        rx
    }

    /// Commits context `id`: its whole token list, the chunks already
    /// committed to keep, and new chunks; atomic.
    pub fn commit(
        &self,
        id: u64,
        tokens: Vec<u32>,
        keep: Vec<u32>,
        write: Vec<ChunkOut>,
    ) -> Result<(), SwapError> {
        self.send(|reply| Req::Commit {
            id,
            tokens,
            keep,
            write,
            reply,
        })
        .recv()
        .map_err(|_| SwapError::gone("commit"))?
    }

    /// Starts reading chunk `index` of context `id`.
    pub fn read(&self, id: u64, index: u32) -> PendingRead {
        PendingRead(self.send(|reply| Req::Read { id, index, reply }))
    }

    /// Deletes context `id` (atomic); unknown ids are not an error.
    pub fn delete(&self, id: u64) -> Result<(), SwapError> {
        self.send(|reply| Req::Delete { id, reply })
            .recv()
            .map_err(|_| SwapError::gone("delete"))?
    }

    /// Every committed context with its tokens and chunks.
    pub fn list(&self) -> Result<Vec<Saved>, SwapError> {
        self.send(|reply| Req::List { reply })
            .recv()
            .map_err(|_| SwapError::gone("list"))?
    }
}

impl Drop for SwapStore {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the requests queued.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fingerprint a swap area is stamped with, so an area is never
/// restored into another model: its 32 bytes are the model file's length
/// (8 bytes, little-endian), then CRC32Cs of its first and last MiB and of
/// the model's hyperparameters (`Debug` text), 4 bytes each, then zeros.
/// It tells models apart, not adversaries.
pub fn model_fingerprint(session: &crate::Session) -> Result<[u8; 32], SwapError> {
    use std::io::{Read, Seek, SeekFrom};
    let io = |e: std::io::Error| {
        SwapError::new(
            "open",
            swap::ErrorKind::Device,
            format!("{}: {e}", session.path().display()),
        )
    };
    let mut f = std::fs::File::open(session.path()).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut head = vec![0u8; len.min(1 << 20) as usize];
    f.read_exact(&mut head).map_err(io)?;
    let mut tail = vec![0u8; len.min(1 << 20) as usize];
    f.seek(SeekFrom::Start(len - tail.len() as u64))
        .map_err(io)?;
    f.read_exact(&mut tail).map_err(io)?;
    let cfg = format!("{:?}", session.config());
    let mut out = [0u8; 32];
    out[..8].copy_from_slice(&len.to_le_bytes());
    for (i, part) in [&head[..], &tail[..], cfg.as_bytes()].iter().enumerate() {
        let at = 8 + 4 * i;
        out[at..at + 4].copy_from_slice(&lode_hal::checksum::crc32c(part).to_le_bytes());
    }
    Ok(out)
}
