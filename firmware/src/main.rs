//! lode on a microcontroller: a no-heap Cortex-M4F program that opens a lode
//! image from a flash device through the kernel, checks every byte of it,
//! and fetches a few tokens' FFN neuron bundles through a neuron cache whose
//! state lives in a fixed arena, then prints what it read and the arena's
//! peak. Any error is printed and ends the run with a failure status.
//!
//! Built and run under QEMU's `netduinoplus2` (STM32F405, Cortex-M4F) by
//! `firmware/run`, which makes the image and the activation trace the
//! program embeds (see `build.rs`). The trace stands in for the activations a
//! model's gate would compute: it says which neurons fire at each token and
//! layer.
//!
//! Memory: one 48 KiB buffer in `.bss` is the whole DRAM budget. Opening the
//! image carves the metadata prefix from its front (the parsed tables borrow
//! it for the rest of the run) and a [`SliceArena`] takes the rest for the
//! verification buffer, the neuron cache and the I/O buffer.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

mod error;
mod fetcher;
mod report;
mod rom;

use cortex_m_rt::entry;
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;
use lode_hal::slice_arena::SliceArena;
use lode_kernel::arena::{self, DramArena, Slot, SlotKind};
use lode_kernel::cache::{CacheConfig, NeuronCache, S3Fifo};
use lode_kernel::fetch::BundleLoc;
use lode_kernel::flash::{self, FlashDevice, ReadError, ReadRequest};
use lode_kernel::formats::image::layout::HEADER_LEN;
use lode_kernel::formats::image::{Image, ImageHeader};
use lode_kernel::formats::trace::Trace;
use lode_kernel::plan::{self, Extent};

use error::Error;
use fetcher::{region_of, Fetcher, Scratch, Totals, MODE};
use report::{report_io, Fnv, Percent};
use rom::{RomFlash, BLOCK, COST, MAX_TRANSFER, QUEUE_DEPTH};

/// The lode image, in flash (made by `lode image synth`; see `build.rs`).
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/image.lode"));
/// Which neurons fire per token and layer (made by `lode trace synth`).
static TRACE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/trace.bin"));

/// The whole DRAM budget: metadata prefix plus arena.
const BUDGET: usize = 48 * 1024;
/// Most neurons per layer the fetch scratch (on the stack) holds.
const MAX_NEURONS: usize = 128;
/// Most read extents of one layer's plan.
const MAX_EXTENTS: usize = MAX_NEURONS + 16;
/// Share of the image's bundles the neuron cache holds, in percent.
const CACHE_PERCENT: u32 = 25;
/// Bytes the image data is verified through, a piece at a time.
const VERIFY_CHUNK: usize = 2048;

#[entry]
fn main() -> ! {
    let status = match cortex_m::singleton!(: [u8; BUDGET] = [0; BUDGET]) {
        Some(budget) => match run(budget) {
            Ok(()) => EXIT_SUCCESS,
            Err(e) => {
                hprintln!("error: {}", e);
                EXIT_FAILURE
            }
        },
        None => {
            hprintln!("error: the budget buffer was taken twice");
            EXIT_FAILURE
        }
    };
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    debug::exit(EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// `len` bytes at device `offset` into `slot`, in commands of at most
/// `max_transfer` bytes and batches the queue holds; waits for all of them.
fn read<A: DramArena>(
    dev: &mut RomFlash<'_>,
    arena: &mut A,
    slot: Slot,
    offset: u64,
    len: usize,
) -> Result<(), Error> {
    let max = dev.geometry().max_transfer.max(1) as usize;
    let mut at = 0usize;
    while at < len {
        let mut batch: heapless::Vec<ReadRequest, QUEUE_DEPTH> = heapless::Vec::new();
        while at < len && !batch.is_full() {
            let n = (len - at).min(max);
            let req = ReadRequest {
                tag: batch.len() as u32,
                offset: offset + at as u64,
                len: n as u32,
                dest: slot,
                dest_offset: at,
            };
            let _ = batch.push(req);
            at += n;
        }
        dev.read_blocking(arena, &batch).map_err(|e| match e {
            ReadError::Failed { tag, kind } => Error::Read {
                offset: batch.get(tag as usize).map_or(offset, |r| r.offset),
                kind,
            },
            ReadError::Device(kind) => Error::Read { offset, kind },
        })?;
    }
    Ok(())
}

/// Open the image: read its header block, then its metadata prefix into the
/// front of `budget`. Returns the prefix and the rest of the budget.
fn open<'m>(
    dev: &mut RomFlash<'_>,
    budget: &'m mut [u8],
) -> Result<(&'m [u8], &'m mut [u8]), Error> {
    let block = dev.geometry().block_size as usize;
    let mut arena = SliceArena::<2>::with_slots(budget);
    let head_len = HEADER_LEN.div_ceil(block) * block;
    let slot = arena.alloc(head_len, block, SlotKind::Scratch)?;
    read(dev, &mut arena, slot, 0, head_len)?;
    let header = ImageHeader::parse(arena.bytes(slot)?)?;
    arena.free(slot)?;
    let meta_len = usize::try_from(header.meta_len)
        .ok()
        .filter(|&n| n <= arena.capacity() / 2)
        .ok_or(Error::Config(
            "the image's metadata prefix takes more than half the budget",
        ))?;
    let slot = arena.alloc(meta_len, block, SlotKind::Resident)?;
    read(dev, &mut arena, slot, 0, meta_len)?;
    // Move the prefix to the front of the budget and hand the rest on.
    let from = slot.offset();
    let budget = arena.into_inner();
    budget.copy_within(from..from + meta_len, 0);
    let (meta, rest) = budget.split_at_mut(meta_len);
    Ok((meta, rest))
}

/// Check every data byte of the image (tensors and bundles against their
/// CRC32C, padding against zero), streaming it through one arena slot.
fn verify<A: DramArena<Error = arena::ErrorKind>>(
    dev: &mut RomFlash<'_>,
    arena: &mut A,
    img: &Image<'_>,
) -> Result<(), Error> {
    let h = img.header();
    let slot = arena.alloc(VERIFY_CHUNK, BLOCK as usize, SlotKind::IoBuffer)?;
    let mut v = img.data_verifier();
    let mut at = h.meta_len;
    while at < h.file_len {
        let n = (h.file_len - at).min(VERIFY_CHUNK as u64) as usize;
        read(dev, arena, slot, at, n)?;
        let data = arena
            .bytes(slot)?
            .get(..n)
            .ok_or(Error::Config("verification slot too small"))?;
        v.update(data)?;
        at += n as u64;
    }
    v.finish()?;
    arena.free(slot)?;
    Ok(())
}

/// What the trace and the image agree on, and the buffers a fetch needs.
struct Shape {
    layers: usize,
    tokens: u32,
    /// Bytes of every bundle (the cache's slot size).
    bundle: u32,
    /// I/O buffer that holds any layer's read plan.
    io_len: usize,
}

/// Check that the trace describes the image's layers and that the fetch
/// scratch holds them; size the I/O buffer.
fn shape(img: &Image<'_>, trace: &Trace<'_>, g: &flash::Geometry) -> Result<Shape, Error> {
    let th = trace.header();
    let layers = img.layer_count();
    if th.layers as usize != layers {
        return Err(Error::Config("the trace has another layer count"));
    }
    let mut bundle = None;
    let mut io_len = 0u64;
    for r in img.layers() {
        if r.count != th.neurons {
            return Err(Error::Config("the trace has another neuron count"));
        }
        if r.count as usize > MAX_NEURONS {
            return Err(Error::Config("a layer has more neurons than the scratch"));
        }
        if *bundle.get_or_insert(r.bundle_size) != r.bundle_size {
            return Err(Error::Config("layers with different bundle sizes"));
        }
        let region = region_of(&r);
        if plan::extents_bound(&region, g, MODE) > MAX_EXTENTS as u64 {
            return Err(Error::Config(
                "a layer's read plan needs more extents than the scratch",
            ));
        }
        io_len = io_len.max(plan::io_bytes_bound(&region, g, MODE));
    }
    Ok(Shape {
        layers,
        tokens: th.tokens,
        bundle: bundle.ok_or(Error::Config("the image has no layers"))?,
        io_len: usize::try_from(io_len).map_err(|_| Error::Config("I/O buffer too large"))?,
    })
}

/// Slots of the run's arena: the verification buffer, the cache's two and
/// the I/O buffer, with room to spare.
const SLOTS: usize = 8;

fn run(budget: &mut [u8; BUDGET]) -> Result<(), Error> {
    hprintln!(
        "lode firmware example: Cortex-M4F, no heap; image {} bytes and trace {} bytes in flash, budget {} bytes",
        IMAGE.len(),
        TRACE.len(),
        BUDGET
    );
    let mut dev = RomFlash::new(IMAGE, BLOCK, MAX_TRANSFER, COST);
    let g = dev.geometry();
    hprintln!(
        "device: QSPI NOR model, {} B blocks, capacity {} B, {} ns a command, {} B/s, queue {}",
        g.block_size,
        g.capacity,
        COST.command_ns,
        COST.bytes_per_sec,
        g.queue_depth
    );

    // 1. Open: header, then the metadata prefix, every byte of it checked.
    let (meta, rest) = open(&mut dev, &mut budget[..])?;
    let img = Image::parse(meta)?;
    let h = img.header();
    let geo = img.geometry();
    hprintln!(
        "image: format {}.{}, {} {} layers, hidden {}, {} FFN neurons a layer, block {} B, metadata {} B, file {} B",
        h.major,
        h.minor,
        geo.arch.as_str(),
        geo.layers,
        geo.hidden,
        geo.ffn,
        h.block_size,
        h.meta_len,
        h.file_len
    );
    let opened = dev.counters();
    report_io("open (header, metadata parsed and checked)", &opened);

    // 2. Verify the data through the device before trusting any of it.
    let mut arena = SliceArena::<SLOTS>::with_slots(rest);
    verify(&mut dev, &mut arena, &img)?;
    let verified = dev.counters();
    report_io(
        "verify (every data byte against its CRC32C or zero padding)",
        &verified.since(&opened),
    );

    // 3. The trace: which neurons fire, per token and layer.
    let trace = Trace::parse(TRACE)?;
    let shape = shape(&img, &trace, &g)?;
    hprintln!(
        "trace: {} tokens x {} layers x {} neurons",
        shape.tokens,
        shape.layers,
        trace.header().neurons
    );

    // 4. The neuron cache (S3-FIFO) and the I/O buffer, both in the arena.
    let keys = u32::try_from(img.total_bundles()).map_err(|_| Error::Config("too many bundles"))?;
    let cfg = CacheConfig {
        slots: (u64::from(keys) * u64::from(CACHE_PERCENT) / 100).max(1) as u32,
        keys,
        bundle_bytes: shape.bundle,
    };
    let mut cache = NeuronCache::new(&mut arena, cfg, S3Fifo::default())?;
    let io = arena.alloc(shape.io_len, BLOCK as usize, SlotKind::IoBuffer)?;
    hprintln!(
        "cache: S3-FIFO, {} of {} bundles of {} B ({}%), {} arena bytes; I/O buffer {} B",
        cfg.slots,
        keys,
        shape.bundle,
        CACHE_PERCENT,
        cfg.arena_bytes(&S3Fifo::default()).unwrap_or(0),
        shape.io_len
    );

    // 5. Fetch each token's firing neurons, layer by layer.
    let mut scratch = Scratch {
        positions: [0; MAX_NEURONS],
        missing: [0; MAX_NEURONS],
        extents: [Extent::default(); MAX_EXTENTS],
        locs: [BundleLoc::Nowhere; MAX_NEURONS],
    };
    let mut f = Fetcher {
        img: &img,
        trace: &trace,
        dev: &mut dev,
        arena: &mut arena,
        cache: &mut cache,
        io,
        sum: Fnv::new(),
        totals: Totals::default(),
    };
    for token in 0..shape.tokens {
        let before = f.dev.counters();
        let (mut needed, mut hits) = (0, 0);
        for layer in 0..shape.layers {
            let (n, h) = f.layer(&mut scratch, token, layer)?;
            needed += n;
            hits += h;
        }
        f.cache.end_token(f.arena, token)?;
        let io = f.dev.counters().since(&before);
        hprintln!(
            "token {}: {} bundles, {} cache hits, {} B in {} read{}",
            token,
            needed,
            hits,
            io.bytes,
            io.commands,
            if io.commands == 1 { "" } else { "s" }
        );
    }
    let (t, sum) = (f.totals, f.sum.0);

    // 6. The report.
    report_io("fetch", &dev.counters().since(&verified));
    hprintln!(
        "fetch: {} tokens x {} layers: {} bundles needed, {} cache hits ({}), {} misses ({} B of bundles), {} dense layer reads; every bundle checked against its CRC32C",
        shape.tokens,
        shape.layers,
        t.needed,
        t.hits,
        Percent(t.hits, t.needed),
        t.misses,
        t.bytes_needed,
        t.dense_layers
    );
    hprintln!("checksum of the fetched bundles (FNV-1a 64): {:016x}", sum);
    let stats = cache.stats();
    hprintln!(
        "cache: {} admitted, {} evicted, {} occupied",
        stats.admitted,
        stats.evicted,
        cache.occupied()
    );
    hprintln!(
        "memory: metadata prefix {} B + arena peak {} B of {} B = {} B of the {} B budget",
        meta.len(),
        arena.peak(),
        arena.capacity(),
        meta.len() + arena.peak(),
        BUDGET
    );
    hprintln!("ok");
    Ok(())
}
