//! `lode profile`: record which FFN neurons a real model activates on a
//! text, under per-layer thresholds calibrated to a target sparsity, and
//! measure what cutting the others costs in perplexity. The work is
//! [`lode_pack::profile`]'s; this is its command line: the arguments, the
//! progress meters, and the summary (or JSON) it prints.

#[cfg(test)]
mod tests;

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_pack::profile::{OptionError, ProfileOptions};

pub use lode_pack::profile::{ProfileReport, ScoreMode};

use crate::progress::Meters;

/// Arguments of `lode profile`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProfileArgs {
    /// GGUF model file (llama architecture).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// UTF-8 text to calibrate on and profile.
    #[arg(long)]
    pub text: PathBuf,
    /// Target fraction of each layer's FFN neurons to cut, in [0, 1).
    #[arg(long)]
    pub sparsity: f64,
    /// Output activation trace.
    #[arg(short, long)]
    pub output: PathBuf,
    /// How a neuron is scored.
    #[arg(long, value_enum, default_value = "exact")]
    pub mode: ScoreMode,
    /// Tokens per window (the context is reset between windows).
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Most tokens of the text to use.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
    /// Threads for the numeric work (default: every available core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Neurons the top-k pass (`lode run`'s rule) keeps or drops together:
    /// 1 (default) each alone; 32 prices reading the GGUF's down blocks
    /// whole, each spanning 32 neurons.
    #[arg(long, default_value_t = 1)]
    pub group: usize,
    /// No progress meter.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object (with per-layer thresholds and sparsity)
    /// instead of the summary; implies no progress meter.
    #[arg(long)]
    pub json: bool,
}

impl ProfileArgs {
    /// What the library is asked to do.
    fn options(&self) -> ProfileOptions {
        ProfileOptions {
            model: self.model.clone(),
            text: self.text.clone(),
            sparsity: self.sparsity,
            output: self.output.clone(),
            mode: self.mode,
            window: self.window,
            max_tokens: self.max_tokens,
            threads: self.threads,
            group: self.group,
        }
    }
}

/// Runs `lode profile`, printing the summary (or JSON) to `out`.
pub fn run(a: &ProfileArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let r = profile(a)?;
    if a.json {
        serde_json::to_writer(&mut *out, &r)?;
        writeln!(out)?;
    } else {
        write_summary(&r, out)?;
    }
    out.flush()?;
    Ok(())
}

/// Profiles as `a` says, with progress meters unless `--quiet` or
/// `--json`; an option out of range is named by its flag.
pub fn profile(a: &ProfileArgs) -> Result<ProfileReport, Box<dyn Error>> {
    let mut meters = Meters::new(a.quiet || a.json);
    lode_pack::profile::profile(&a.options(), &mut meters).map_err(|e| {
        match e.downcast::<OptionError>() {
            Ok(bad) => flag_error(&bad).into(),
            Err(e) => e,
        }
    })
}

/// `bad` in terms of the command line's flags.
fn flag_error(bad: &OptionError) -> String {
    match bad {
        OptionError::Sparsity(s) => format!("--sparsity {s} is outside [0, 1)"),
        OptionError::Window(_) => {
            "--window must be at least 2 (a window scores its tokens after the first)".into()
        }
        OptionError::MaxTokens(_) => "--max-tokens must be at least 2".into(),
        OptionError::Threads => "--threads must be at least 1".into(),
        OptionError::Group => "--group must be at least 1".into(),
        OptionError::WindowPastContext {
            window,
            room,
            model,
        } => format!(
            "--window {window} exceeds the {room} positions {} can attend to",
            model.display()
        ),
    }
}

fn mode_name(mode: ScoreMode) -> &'static str {
    match mode {
        ScoreMode::Exact => "exact |silu(gate)*up|",
        ScoreMode::Gate => "gate |silu(gate)|",
    }
}

fn write_summary(r: &ProfileReport, out: &mut dyn Write) -> std::io::Result<()> {
    let pct = |v: f64| v * 100.0;
    writeln!(
        out,
        "profiled {} tokens in {} windows of {} ({} scores), {} predictions, thresholds from {} tokens",
        r.tokens, r.windows, r.window, mode_name(r.mode), r.predictions, r.sampled_tokens
    )?;
    writeln!(
        out,
        "sparsity: target {:.2}%, achieved {:.2}% (layers {:.2}% to {:.2}%)",
        pct(r.target_sparsity),
        pct(r.achieved_sparsity),
        pct(r.min_layer_sparsity),
        pct(r.max_layer_sparsity)
    )?;
    writeln!(
        out,
        "perplexity: dense {:.4}, sparse {:.4} ({:+.2}%)",
        r.dense_ppl, r.sparse_ppl, r.ppl_change_percent
    )?;
    if r.top_k_group > 1 {
        writeln!(
            out,
            "perplexity keeping each layer's strongest groups of {} neurons (at least {} neurons): {:.4} ({:+.2}%)",
            r.top_k_group, r.top_k_keep, r.top_k_ppl, r.top_k_ppl_change_percent
        )?;
    } else {
        writeln!(
            out,
            "perplexity of lode run's per-token rule (the strongest {} neurons of each layer): {:.4} ({:+.2}%)",
            r.top_k_keep, r.top_k_ppl, r.top_k_ppl_change_percent
        )?;
    }
    writeln!(
        out,
        "wrote {} ({} bytes, model fingerprint {}) in {:.2} s (dense pass {:.2} s, sparse pass {:.2} s, top-k pass {:.2} s)",
        r.output,
        r.trace_bytes,
        r.fingerprint,
        r.seconds,
        r.dense_seconds,
        r.sparse_seconds,
        r.top_k_seconds
    )
}
