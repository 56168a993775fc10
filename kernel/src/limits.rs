//! Every bound of the kernel in one file, each derived from the others
//! where it can be and checked at compile time, against each other and
//! against what the formats accept (as TigerBeetle keeps its
//! `constants.zig`).
//!
//! A bound here sizes a fixed table somewhere (a `heapless::Vec`, an
//! array on the stack, a bit set), so changing one is a decision about
//! memory on the smallest target, not a tweak: the assertions below say
//! which other bounds it must agree with.

use lode_formats::{gguf, swap, trace};

/// Most transformer blocks a model may have (the largest llama has 126).
/// Per-layer residency is a `u128` bit set, hence at most 128.
pub const MAX_LAYERS: usize = 128;

/// Positions per KV chunk: the unit the KV cache grows by (and is
/// compressed, swapped and recomputed by).
pub const CHUNK_TOKENS: usize = 16;

/// Most KV chunks one context holds.
pub const MAX_CHUNKS: usize = 512;

/// Most positions one context holds (8192).
pub const MAX_CONTEXT: usize = MAX_CHUNKS * CHUNK_TOKENS;

/// Most contexts one model's memory plan reserves KV room for.
pub const MAX_CONTEXTS: usize = 64;

/// Alignment of every arena slot the model allocates: weights and buffers
/// share one cache line size and SIMD loads of a row start aligned.
pub const ALIGN: usize = 64;

/// Most I/O slots in a streaming ring.
pub const MAX_RING: usize = 8;

/// Most head pieces a pass streams.
pub const MAX_HEAD_PIECES: usize = 256;

/// Most logits of a position an approximate (re-quantized) output head
/// has recomputed exactly from the embedding table (`Model::refine_head`):
/// the candidates a token is sampled from, nearly always.
pub const MAX_REFINED_LOGITS: usize = 64;

/// Logits a position a runtime refines by default for an image whose head
/// is flagged approximate. Each is a synchronous read of one row, which
/// waits behind the prefetches in the device queue: on Gemma 3 270M with
/// a Q4_0 head at a third of the model, 32 decode 11.8 tok/s and 8 decode
/// 15.8, and 8 still give the tied head's top-1 token at 99.7% of the
/// positions measured or more (README, "The tied head").
pub const REFINED_LOGITS: usize = 8;
const _: () = assert!(REFINED_LOGITS <= MAX_REFINED_LOGITS);

/// Most units in a streaming pass: a layer's attention and its FFN (a
/// dense layer's FFN is three units, one a matrix), and the head pieces.
pub const MAX_UNITS: usize = 4 * MAX_LAYERS + MAX_HEAD_PIECES;

/// Size of a streamed head piece when nothing larger streams: big enough
/// to read at full bandwidth, small enough to overlap with the product.
pub const HEAD_PIECE: usize = 1 << 20;

/// Most reads one layer fetch submits in a batch (bounded by the device's
/// queue too).
pub const MAX_FETCH_BATCH: usize = 64;

/// Completions the ring collects per call.
pub const RING_COMPLETIONS: usize = 32;

/// Completions a blocking read collects per call.
pub const BLOCKING_COMPLETIONS: usize = 16;

/// Largest batch a [`Window`](crate::flash::Window) forwards by default,
/// and so its default cap on reads in flight: a UFS command queue, and
/// `BlockFlash`'s default depth.
pub const WINDOW_BATCH: usize = 32;

/// Reads a [`FaultInjector`](crate::flash::fault::FaultInjector) tracks
/// in flight (its reported queue depth is at most this).
pub const FAULT_BATCH: usize = 32;

/// Completions a [`Paced`](crate::flash::Paced) device holds until their
/// real-time deadline: at most this many reads in flight through it.
pub const PACED_IN_FLIGHT: usize = 64;

/// Bad extents one fault injector can hold.
pub const MAX_BAD_EXTENTS: usize = 8;

/// Most candidate plans the read planner's adaptive mode evaluates
/// (dense, per-bundle, coalesced and up to `MAX_CANDIDATES - 3` gap
/// thresholds: the one-command gap's doublings up to the largest read,
/// then its halvings down to a block). Each is one `O(needed)` pass.
pub const MAX_CANDIDATES: usize = 14;

/// Most arena slots one forward step writes at once.
pub const MAX_WRITTEN: usize = 7;

/// Heat levels the hot-window cache policy distinguishes.
pub const HEAT_LEVELS: usize = 16;

/// Bytes one streamed-read checksum covers (at most; a device with
/// smaller blocks still reads whole check blocks). 4 KiB keeps the table
/// at 0.1% of the data it checks while a read of one block stays one read.
pub const CHECK_BLOCK: usize = 4096;

/// Times a streamed read is tried before its error or checksum mismatch
/// stops the run: a transient fault (a flipped bit on the bus, a retried
/// command) clears on the next read, a bad medium does not.
pub const MAX_READ_ATTEMPTS: u32 = 3;

/// Most pieces one streamed read's check is cut into, each CRC'd by
/// whichever compute thread takes it (a few a thread, so a thread that
/// starts late leaves its share to the others).
pub const CHECK_PIECES: usize = 8;

/// Fewest bytes worth a piece of their own: handing a piece to another
/// thread costs about a microsecond, a hardware CRC of 64 KiB several.
pub const CHECK_PIECE_MIN: usize = 64 * 1024;

/// A sparse run reads only the kept neurons' down columns when the planner
/// prices that at most this share (numerator, denominator) of reading the
/// layer's columns whole: whole columns stream through the ring ahead of
/// use, while a sparse read waits for the token's activations, so it must
/// save more than the overlap it gives up (column_reads.rs).
pub const SPARSE_READ_SHARE: (u64, u64) = (3, 4);

/// Kept sets the column-read choice prices (uniformly drawn, fixed seeds).
pub const SPARSE_READ_DRAWS: u64 = 4;

/// Bytes of the largest KV swap-area context record: `MAX_CHUNKS` chunk
/// pointers and `MAX_CONTEXT` token ids (45 KiB). The swap area reads a
/// record whole to check its CRC32C, so this sizes its I/O buffer.
pub const MAX_SWAP_RECORD: usize =
    swap::RECORD_HEADER_LEN + MAX_CHUNKS * swap::CHUNK_ENTRY_LEN + MAX_CONTEXT * 4;

/// Bytes of the largest KV swap-area directory: one entry per context.
pub const MAX_SWAP_DIRECTORY: usize = swap::DIR_HEADER_LEN + MAX_CONTEXTS * swap::DIR_ENTRY_LEN;

/// Precision of the weight codec's rANS probabilities: every frequency
/// table sums to `2^CODEC_PROB_BITS`. 12 bits keep a decode table of
/// `2^12` four-byte entries (16 KiB, in L1) and pack a slot's symbol,
/// frequency and start into one `u32`; finer tables cost cache misses for
/// well under 1% of the bits (measured by `lode bench codec`).
pub const CODEC_PROB_BITS: u32 = 12;

/// Slots of a codec decode table.
pub const CODEC_SLOTS: usize = 1 << CODEC_PROB_BITS;

/// Most symbols of one codec frequency table: a byte's values, or the
/// distinct high parts of a tensor's f16 scales.
pub const CODEC_SYMBOLS: usize = 256;

/// rANS lanes (interleaved states) of every codec stream: four
/// independent multiply chains keep a core's pipeline full.
pub const CODEC_LANES: usize = 4;

/// Most distinct values an f16 field's codebook holds in one unit.
/// SmolLM2's tensors have 380 to 1,200 distinct scales or minimums each;
/// a unit with more stores that field raw.
pub const CODEC_MAX_BOOK: usize = 4096;

/// Precision of a 16-bit codebook's rANS probabilities (section kind 2,
/// what version 1 units hold). Version 2 units code f16 fields at
/// `CODEC_PROB_BITS` instead (kind 3): once values seen at most a few
/// times are escaped, the coarser probabilities cost under 0.1% of the
/// bits and a decode is one table lookup instead of a search.
pub const CODEC_BOOK_PROB_BITS: u32 = 16;

/// Bits of a codebook decode's first lookup (a slot's top bits to the
/// first value it can decode to; a short scan finishes the search).
pub const CODEC_BOOK_COARSE_BITS: u32 = 12;

/// Most fields a block type has (Q5_1: scale, minimum, high bits, values).
pub const CODEC_MAX_FIELDS: usize = 4;

/// Units `lode pack` codes a streamed matrix in by default (a chain,
/// `CODEC.md`; `--codec-pieces`): each decodes on its own thread, so a
/// matrix decodes on up to this many cores. Each unit pays its own tables:
/// SmolLM2's FFN matrices with `--compress floats` shrink 9.36% as one
/// unit, 9.09% as two, 8.62% as four. Two matches this machine's two
/// threads; a phone with more cores may want four.
pub const CODEC_PIECES: usize = 2;

/// Most units a chain may have: a reader refuses more, so the pieces of
/// one decode fit a fixed array.
pub const CODEC_MAX_PIECES: usize = lode_formats::image::layout::MAX_CHAIN_UNITS;

// The swap format holds every context, chunk and token the kernel does,
// in chunks of the same size.
const _: () = assert!(MAX_CONTEXTS as u64 <= swap::MAX_DIR_ENTRIES as u64);
const _: () = assert!(MAX_CHUNKS as u64 <= swap::MAX_RECORD_CHUNKS as u64);
const _: () = assert!(MAX_CONTEXT as u64 <= swap::MAX_RECORD_TOKENS as u64);
const _: () = assert!(CHUNK_TOKENS as u64 == swap::CHUNK_TOKENS as u64);
// A record and a directory each fit a u32 length (their pointers' field).
const _: () = assert!(MAX_SWAP_RECORD <= u32::MAX as usize);
const _: () = assert!(MAX_SWAP_DIRECTORY <= MAX_SWAP_RECORD);

// The per-layer bit sets are u128.
const _: () = assert!(MAX_LAYERS <= 128);
// The formats accept at least as many layers as the kernel runs, so every
// model the kernel can run can be stored and traced.
const _: () = assert!(MAX_LAYERS as u64 <= gguf::MAX_LAYERS as u64);
const _: () = assert!(MAX_LAYERS as u64 <= trace::MAX_LAYERS as u64);
// Schedule indexes are u16, with u16::MAX meaning "none".
const _: () = assert!(MAX_UNITS < u16::MAX as usize);
// A context is whole chunks; positions fit a u32 (RoPE takes u32).
const _: () = assert!(MAX_CONTEXT.is_multiple_of(CHUNK_TOKENS));
const _: () = assert!(MAX_CONTEXT <= u32::MAX as usize);
// Alignment is a power of two (slot arithmetic rounds with it).
const _: () = assert!(ALIGN.is_power_of_two());
// A check block is a whole number of the smallest device block.
const _: () = assert!(CHECK_BLOCK.is_power_of_two() && CHECK_BLOCK >= 512);
const _: () = assert!(MAX_READ_ATTEMPTS >= 1);
const _: () = assert!(SPARSE_READ_SHARE.1 > 0 && SPARSE_READ_DRAWS >= 1);
const _: () = assert!(CHECK_PIECES >= 1 && CHECK_PIECE_MIN >= CHECK_BLOCK);

// A ring collects at least one completion per slot per call.
const _: () = assert!(MAX_RING <= RING_COMPLETIONS);
// Heat levels are u8 values, and each level has two lists of u32 ends.
const _: () = assert!(HEAT_LEVELS >= 1 && HEAT_LEVELS <= u8::MAX as usize + 1);
// The adaptive planner always has its three fixed candidates.
const _: () = assert!(MAX_CANDIDATES > 3);
// A decode table entry packs symbol (8 bits), frequency - 1 and start
// (CODEC_PROB_BITS each) into a u32; 32-bit states renormalised by 16
// bits need at most 16 bits of probability.
const _: () = assert!(CODEC_SYMBOLS <= 256 && 8 + 2 * CODEC_PROB_BITS <= 32);
const _: () = assert!(CODEC_PROB_BITS <= 16 && CODEC_LANES >= 1);
// Codebook indices are u16, and a codebook state decode stays in 32 bits
// with one 16-bit renormalisation (probability bits at most 16).
const _: () = assert!(CODEC_MAX_BOOK <= 1 << 16 && CODEC_BOOK_PROB_BITS <= 16);
const _: () = assert!(CODEC_BOOK_COARSE_BITS <= CODEC_BOOK_PROB_BITS);
const _: () = assert!(CODEC_PIECES >= 1 && CODEC_PIECES <= CODEC_MAX_PIECES);
