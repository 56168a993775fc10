//! `lode prune`'s command line: its arguments and how calibration windows
//! are sampled.

use std::path::PathBuf;

use lode_runtime::prune::ccds::DEFAULT_CANDIDATES;
use lode_runtime::prune::Fitness;

/// How calibration windows are chosen.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// Evenly across k-means clusters of the model's own embeddings (EvoP).
    Ccds,
    /// At random.
    Random,
}

impl Sampling {
    pub(super) fn name(self) -> &'static str {
        match self {
            Sampling::Ccds => "ccds",
            Sampling::Random => "random",
        }
    }
}

/// What the search minimizes (`lode_runtime::prune::Fitness`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitnessArg {
    /// KL divergence from the unpruned model's next-token distribution
    /// (EvoPress).
    Kl,
    /// Perplexity of the calibration text itself.
    Perplexity,
}

impl FitnessArg {
    pub(super) fn fitness(self) -> Fitness {
        match self {
            FitnessArg::Kl => Fitness::Kl,
            FitnessArg::Perplexity => Fitness::Perplexity,
        }
    }

    /// The other one (`--compare-fitness`).
    pub(super) fn other(self) -> Fitness {
        match self {
            FitnessArg::Kl => Fitness::Perplexity,
            FitnessArg::Perplexity => Fitness::Kl,
        }
    }
}

/// Arguments of `lode prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Model (GGUF or lode image; held in DRAM while searching).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Texts the calibration windows are cut from (the search is tuned on
    /// these).
    #[arg(long, required_unless_present = "base", num_args = 1..)]
    pub calib: Vec<PathBuf>,
    /// Texts nothing is tuned on, for the held-out scores (use more than
    /// one kind: legal text is unusually easy).
    #[arg(long, required = true, num_args = 1..)]
    pub held_out: Vec<PathBuf>,
    /// Pruning levels, percent of the layers dropped (rounded to whole
    /// layers).
    #[arg(long, value_delimiter = ',', default_values_t = [20u32])]
    pub levels: Vec<u32>,
    /// Tokens a window.
    #[arg(long, default_value_t = 128)]
    pub window: usize,
    /// Calibration windows, sampled from the calibration texts by
    /// `--sampling` (with 8, about 1,000 tokens, the search fit them better
    /// than it generalized on SmolLM2: see the README's "Fewer layers").
    #[arg(long, default_value_t = 16)]
    pub calib_windows: usize,
    /// How the calibration windows are chosen: `ccds` embeds every window
    /// of the texts with the model (mean hidden row after half the
    /// layers), clusters them (k-means, seeded) and samples evenly across
    /// the clusters, as EvoP does; `random` draws them at random.
    #[arg(long, value_enum, default_value = "ccds")]
    pub sampling: Sampling,
    /// Clusters of `--sampling ccds` (at most `--calib-windows`).
    #[arg(long, default_value_t = 8)]
    pub clusters: usize,
    /// Windows `--sampling ccds` embeds and clusters at most (a larger
    /// corpus is sampled down to this many first, bounding the time).
    #[arg(long, default_value_t = DEFAULT_CANDIDATES)]
    pub candidates: usize,
    /// Also search on a random calibration sample of the same size and
    /// report its choice as `evop-random-calib` (with `--sampling ccds`;
    /// doubles the search time).
    #[arg(long)]
    pub compare_sampling: bool,
    /// What the search minimizes over the calibration windows: `kl`, the
    /// divergence from the unpruned model's next-token distribution (as
    /// EvoPress does), or `perplexity` of the text itself.
    #[arg(long, value_enum, default_value = "kl")]
    pub fitness: FitnessArg,
    /// Also search with the other fitness and report its choice as
    /// `evop-perplexity` (or `evop-kl`), scored like every method (doubles
    /// the search time).
    #[arg(long)]
    pub compare_fitness: bool,
    /// Held-out windows (sampled at random from the held-out texts).
    #[arg(long, default_value_t = 16)]
    pub held_out_windows: usize,
    /// Windows of the search's cheap first scoring.
    #[arg(long, default_value_t = 1)]
    pub cheap_windows: usize,
    /// Generations of the search.
    #[arg(long, default_value_t = 20)]
    pub generations: usize,
    /// Children a generation.
    #[arg(long, default_value_t = 32)]
    pub offspring: usize,
    /// Children scored again on every calibration window.
    #[arg(long, default_value_t = 3)]
    pub survivors: usize,
    /// Random masks scored as the random baseline (the median is shown).
    #[arg(long, default_value_t = 4)]
    pub random: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Write EvoP's choice at each level as a lode image of the kept
    /// layers into this directory (`<model>.evop-drop<N>.lode`, dense
    /// layout, the same as `lode pack --layout dense --drop-layers ...`).
    /// Needs a GGUF as `-m`.
    #[arg(long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Score `-m`, a pruned image, against the model it was pruned from on
    /// the held-out texts, instead of searching (the image's lineage must
    /// name this model).
    #[arg(long, conflicts_with_all = ["calib", "output_dir"])]
    pub base: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
