//! `lode trace`: make and describe activation traces.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::input::{read_file, TRACE_LIMIT};
use lode_formats::trace::{Trace, TraceHeader, TraceWriter, FLAG_SYNTHETIC};
use lode_pack::synth::{LayerSynth, SynthParams};

use crate::progress::Progress;

/// Subcommands of `lode trace`.
#[derive(clap::Subcommand, Debug)]
pub enum TraceCmd {
    /// Generate a synthetic activation trace with planted structure.
    ///
    /// Clusters of co-activated neurons (scattered across the layer's
    /// original order), power-law popularity and temporal persistence; see
    /// the parameters. Presets: `opt` (OPT-6.7B-like: ReLU, 32 x 16384
    /// neurons, 5% active, strong co-activation) and `llama` (Llama-2-7B-like:
    /// SwiGLU, 32 x 11008, 35% active, weak co-activation). Any parameter
    /// given overrides the preset.
    Synth(SynthArgs),
    /// Check a trace and print its geometry and activation statistics.
    Info {
        /// Trace file.
        trace: PathBuf,
    },
}

/// Arguments of `lode trace synth`.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Starting point for the parameters.
    #[arg(long, value_enum, default_value = "opt")]
    pub preset: Preset,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub tokens: u32,
    /// Layers per token.
    #[arg(long)]
    pub layers: Option<u32>,
    /// FFN neurons per layer (up to 16,777,216; 7B models have 11,008 to 43,008).
    #[arg(long)]
    pub neurons: Option<u32>,
    /// Mean fraction of neurons active per token and layer (0.001 to 0.9).
    #[arg(long)]
    pub density: Option<f64>,
    /// Neurons per co-activation cluster.
    #[arg(long)]
    pub cluster_size: Option<u32>,
    /// Fraction of activations that come from clusters (0 = none, 1 = all).
    #[arg(long)]
    pub coactivation: Option<f64>,
    /// Probability that each member of an active cluster fires.
    #[arg(long)]
    pub cluster_fire: Option<f64>,
    /// Popularity skew (0 = uniform, 1 = Zipf).
    #[arg(long)]
    pub zipf: Option<f64>,
    /// Extra probability that an active cluster stays active on the next token.
    #[arg(long)]
    pub persistence: Option<f64>,
    /// Seed; the same parameters and seed give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Parameter presets.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// OPT-6.7B-like (ReLU, sparse, strong co-activation).
    Opt,
    /// Llama-2-7B-like (SwiGLU, dense-ish, weak co-activation).
    Llama,
}

impl SynthArgs {
    /// The parameters after applying overrides to the preset.
    pub fn params(&self) -> SynthParams {
        let base = match self.preset {
            Preset::Opt => SynthParams::opt_like(self.tokens, self.seed),
            Preset::Llama => SynthParams::llama_like(self.tokens, self.seed),
        };
        SynthParams {
            layers: self.layers.unwrap_or(base.layers),
            neurons: self.neurons.unwrap_or(base.neurons),
            density: self.density.unwrap_or(base.density),
            cluster_size: self.cluster_size.unwrap_or(base.cluster_size),
            coactivation: self.coactivation.unwrap_or(base.coactivation),
            cluster_fire: self.cluster_fire.unwrap_or(base.cluster_fire),
            zipf: self.zipf.unwrap_or(base.zipf),
            persistence: self.persistence.unwrap_or(base.persistence),
            ..base
        }
    }
}

/// Write a synthetic trace of `p` to `out`, reporting progress unless quiet.
pub fn synthesize<W: Write>(p: &SynthParams, out: W, quiet: bool) -> Result<W, Box<dyn Error>> {
    p.validate()
        .map_err(|e| format!("bad synthesis parameter: {e}"))?;
    let header = TraceHeader {
        layers: p.layers,
        neurons: p.neurons,
        tokens: p.tokens,
        fingerprint: 0,
        flags: FLAG_SYNTHETIC,
    };
    let mut w = TraceWriter::new(out, header)?;
    let mut gens: Vec<LayerSynth> = (0..p.layers).map(|l| LayerSynth::new(p, l)).collect();
    let mut bits = vec![vec![0u8; header.bitset_len()]; p.layers as usize];
    let mut progress = Progress::new("trace synth", u64::from(p.tokens), quiet);
    for _ in 0..p.tokens {
        for (g, b) in gens.iter_mut().zip(bits.iter_mut()) {
            g.next_token(b);
        }
        w.push(&bits)?;
        progress.tick(1);
    }
    progress.finish();
    Ok(w.finish()?)
}

/// Run `lode trace`.
pub fn run(cmd: &TraceCmd, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    match cmd {
        TraceCmd::Synth(args) => {
            let p = args.params();
            lode_pack::output::write_atomically(&args.output, &[], |w| {
                synthesize(&p, w, false)?;
                Ok(())
            })?;
            writeln!(
                out,
                "wrote {} ({} tokens x {} layers x {} neurons, density {}, co-activation {})",
                args.output.display(),
                p.tokens,
                p.layers,
                p.neurons,
                p.density,
                p.coactivation
            )?;
            Ok(())
        }
        TraceCmd::Info { trace } => {
            let bytes = read_file(trace, TRACE_LIMIT)?;
            let t = Trace::parse(&bytes).map_err(|e| format!("{}: {e}", trace.display()))?;
            let h = t.header();
            writeln!(
                out,
                "{}: {} tokens, {} layers, {} neurons per layer{}",
                trace.display(),
                h.tokens,
                h.layers,
                h.neurons,
                if h.flags & FLAG_SYNTHETIC != 0 {
                    " (synthetic)"
                } else {
                    ""
                }
            )?;
            writeln!(out, "model fingerprint: {:#018x}", h.fingerprint)?;
            writeln!(out, "{:>5}  {:>8}", "layer", "density")?;
            for l in 0..h.layers {
                let mut active = 0u64;
                for tok in 0..h.tokens {
                    active += u64::from(t.active(tok, l)?.count());
                }
                let d = active as f64 / (f64::from(h.tokens.max(1)) * f64::from(h.neurons));
                writeln!(out, "{l:>5}  {:>7.2}%", d * 100.0)?;
            }
            Ok(())
        }
    }
}
