//! `lode pack`'s command line: its arguments and the value types they
//! take (the FFN layout, the down column's and a separate head's types).

use std::path::PathBuf;

use lode_formats::DType;
pub use lode_pack::compress::Compress;
use lode_pack::image::FfnLayout;
use lode_pack::placement::PlacementKind;

/// The text the layout's perplexity is measured on when none is named: on
/// every Debian system.
pub(super) const DEFAULT_CHECK_TEXT: &str = "/usr/share/common-licenses/GPL-3";

/// Arguments of `lode pack`.
#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// GGUF model to pack (llama, or Gemma 3).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Output image.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Activation trace of this model whose tokens decide the placement.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Order of the bundles in each layer (freq and coact need --trace).
    #[arg(long, value_enum, default_value = "identity")]
    pub placement: PlacementKind,
    /// Element type of the re-laid-out down column (bundled and split;
    /// dense keeps the model's own).
    #[arg(long, value_enum, default_value = "q8-0")]
    pub down: DownType,
    /// How each layer's FFN is stored: `split` keeps the gate and up rows
    /// as tensors in placement order and the down columns as bundles
    /// (needed by `lode run --sparsity`); `bundled` stores one
    /// gate|up|down bundle per neuron; `dense` copies the three matrices
    /// as they are (dense streaming's best: nothing re-quantized, fewest
    /// bytes; identity placement only).
    /// Default: bundled, and dense (the only one) for Gemma 3.
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// Block size the data is aligned to.
    #[arg(long, default_value_t = 4096)]
    pub block_size: u32,
    /// Text the perplexity change of the bundle layout is measured on
    /// (default: /usr/share/common-licenses/GPL-3 when present).
    #[arg(long = "check-text")]
    pub check_text: Option<PathBuf>,
    /// Tokens of that text to measure on; 0 skips the measurement.
    #[arg(long = "check-tokens", default_value_t = 4096)]
    pub check_tokens: usize,
    /// Device cost model to carry in the image: the JSON file `lode
    /// calibrate --json` wrote for the flash the image will be read from.
    /// Without it `lode run` plans reads with its device's own model
    /// (`lode calibrate --store` can add one later).
    #[arg(long = "cost-model")]
    pub cost_model: Option<PathBuf>,
    /// Layers to leave out (0-based, comma-separated), as `lode prune`
    /// chose them: the image holds the others, renumbered from 0, and
    /// records which layers of which model it kept (its lineage), so `lode
    /// run` streams it like any model and `lode prune --base` can score it.
    #[arg(long = "drop-layers", value_delimiter = ',')]
    pub drop_layers: Vec<usize>,
    /// Gemma 3: store a separate output head, the embedding re-quantized
    /// to this type, so a small budget streams fewer bytes a token (q4-0:
    /// 90 of the tied head's 170 MiB); its perplexity change and top-1
    /// agreement are measured on --check-text. Default: the tied Q8_0 head.
    #[arg(long, value_enum)]
    pub head: Option<HeadType>,
    /// Store each dense layer's FFN matrices losslessly coded (format
    /// 1.5, or 1.4 with --codec-pieces 1; needs --layout dense), so a token
    /// streams fewer bytes: `floats`
    /// codes the f16 scales and minimums (about 9% fewer bytes for
    /// SmolLM2's FFN, decoded at about 1.5 GB/s a core), `all` every field
    /// (about 12%, 0.4 GB/s); `auto` the most compact whose decoding takes
    /// at most half the time the device spends reading it (the device of
    /// --cost-model, else a 1.28 GB/s file; decode speeds measured while
    /// packing): with SmolLM2's, `all` below about 180 MB/s, `floats`
    /// below about 600 MB/s (eMMC), nothing on faster flash.
    /// `lode run` decodes a streamed matrix as it arrives and a resident
    /// one once, at load. Attention, the embedding, a separate head and the
    /// norms stay raw.
    #[arg(long, value_enum, default_value = "none")]
    pub compress: Compress,
    /// With --compress: code each matrix as this many units back to back,
    /// so that many of `lode run`'s threads decode it at once. Each unit
    /// carries its own tables: for SmolLM2's FFN, 1 unit saves 9.36% with
    /// `floats`, 2 units 9.09%, 4 units 8.62%.
    #[arg(long = "codec-pieces", default_value_t = lode_kernel::limits::CODEC_PIECES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=lode_kernel::limits::CODEC_MAX_PIECES as u64))]
    pub codec_pieces: usize,
    /// With --compress: the weight codec version of the units. 2 (image
    /// format 1.6) codes scales and minimums with codebooks that decode in
    /// one table lookup; 1 writes the 16-bit codebooks that lode's readers
    /// of formats 1.4 (one unit a matrix) and 1.5 (several) decode, about
    /// 1.4x slower (`lode bench codec`) and the same size within 0.1%.
    #[arg(long = "codec-version", default_value_t = lode_kernel::codec::VERSION,
          value_parser = clap::builder::RangedU64ValueParser::<u8>::new().range(1..=2))]
    pub codec_version: u8,
    /// Compression-aware re-quantization (lossy, off by default): round the
    /// f16 scales and minimums of every FFN matrix to this many fewer
    /// mantissa bits (of 10) and choose each block's values again for
    /// them, so `--compress` codes them smaller; llama models, --layout
    /// dense. The perplexity change against the GGUF is measured on
    /// --check-text and printed.
    #[arg(long = "coarse-scales", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=8))]
    pub coarse_scales: u32,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// Types a separate output head can be re-quantized to.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadType {
    /// 4-bit with scale: 18 B per 32 elements.
    Q4_0,
    /// 4-bit with scale and minimum: 20 B per 32 elements.
    Q4_1,
    /// 5-bit with scale and minimum: 24 B per 32 elements.
    Q5_1,
}

impl HeadType {
    /// The element type.
    pub fn dtype(self) -> DType {
        match self {
            HeadType::Q4_0 => DType::Q4_0,
            HeadType::Q4_1 => DType::Q4_1,
            HeadType::Q5_1 => DType::Q5_1,
        }
    }
}

impl PackArgs {
    /// How `--compress` writes a coded matrix's units.
    pub fn units(&self) -> lode_pack::compress::Units {
        lode_pack::compress::Units {
            pieces: self.codec_pieces,
            version: self.codec_version,
        }
    }

    /// The defaults of the command line for `model` and `output`, quiet and
    /// without the perplexity measurement (what tests start from).
    #[cfg(test)]
    pub fn quiet_defaults(model: PathBuf, output: PathBuf) -> PackArgs {
        PackArgs {
            model,
            output,
            trace: None,
            placement: PlacementKind::Identity,
            down: DownType::Q8_0,
            layout: None,
            block_size: 4096,
            check_text: None,
            check_tokens: 0,
            cost_model: None,
            drop_layers: Vec::new(),
            head: None,
            compress: Compress::None,
            codec_pieces: lode_kernel::limits::CODEC_PIECES,
            codec_version: lode_kernel::codec::VERSION,
            coarse_scales: 0,
            quiet: true,
        }
    }
}

/// Types the down column can be re-quantized to (DESIGN.md's measured
/// perplexity costs on SmolLM2: Q8_0 +0.9%, Q5_1 +3.8%, Q4_1 +7%).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownType {
    /// 8-bit with scale: 34 B per 32 elements.
    Q8_0,
    /// 5-bit with scale and minimum: 24 B per 32 elements.
    Q5_1,
    /// 4-bit with scale and minimum: 20 B per 32 elements.
    Q4_1,
}

impl DownType {
    /// The element type.
    pub fn dtype(self) -> DType {
        match self {
            DownType::Q8_0 => DType::Q8_0,
            DownType::Q5_1 => DType::Q5_1,
            DownType::Q4_1 => DType::Q4_1,
        }
    }
}

/// The FFN layouts `lode pack` writes (see [`FfnLayout`] for why each
/// exists).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One gate|up|down bundle per neuron: dense streaming only.
    Bundled,
    /// Gate/up rows as tensors in placement order, down columns as
    /// bundles: needed by `lode run --sparsity`.
    Split,
    /// The gate, up and down matrices copied as they are, no bundles:
    /// dense streaming only, the source's exact model in the fewest bytes.
    Dense,
}

impl Layout {
    /// The library's layout.
    pub fn ffn_layout(self) -> FfnLayout {
        match self {
            Layout::Bundled => FfnLayout::Bundled,
            Layout::Split => FfnLayout::Split,
            Layout::Dense => FfnLayout::Dense,
        }
    }
}
