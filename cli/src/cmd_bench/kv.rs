//! `lode bench kv`: what compressing a context's KV chunks costs in quality,
//! for every scheme side by side on the same texts (see
//! `lode_runtime::kv_quality` for the protocol).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::input::{read_file, Limit};
use lode_runtime::kv_quality::{measure, KvLayout, KvQuality, KvScheme};
use lode_runtime::{ModelFile, Quiet, Session, SessionOptions};

/// Largest text read (the measurement uses its first few thousand tokens).
const TEXT_LIMIT: Limit = Limit::new("texts", 64 << 20);

/// Arguments of `lode bench kv`.
#[derive(clap::Args, Debug)]
pub struct KvArgs {
    /// Model (GGUF or lode image; held in DRAM).
    #[arg(short = 'm', long)]
    pub model: PathBuf,
    /// Texts to measure on, one or more (use texts nothing was tuned on,
    /// and more than one kind: legal text is unusually easy).
    #[arg(long, required = true)]
    pub text: Vec<PathBuf>,
    /// Tokens evaluated and then compressed (a multiple of 16).
    #[arg(long, default_value_t = 1024)]
    pub prefix: usize,
    /// Tokens scored after the compressed prefix.
    #[arg(long, default_value_t = 256)]
    pub continuation: usize,
    /// Threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The schemes compared: LLMS's by density at 8, 4 and about 3 bits,
/// uniform 4 and 2 bits, each in both key layouts.
fn schemes() -> Vec<KvScheme> {
    let mut v = Vec::new();
    for layout in [KvLayout::PerToken, KvLayout::KeysPerChannel] {
        for target in [8.0, 4.0, 3.0] {
            v.push(KvScheme::Tolerance { target, layout });
        }
        v.push(KvScheme::Reversed {
            target: 3.0,
            layout,
        });
        for bits in [4, 2] {
            v.push(KvScheme::Uniform { bits, layout });
        }
    }
    v
}

/// One text's results.
#[derive(serde::Serialize)]
struct TextResult {
    text: String,
    tokens: usize,
    prefix: usize,
    results: Vec<KvQuality>,
}

/// Run the benchmark.
pub fn run(a: &KvArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let file = ModelFile::open(&a.model)?;
    let need = a.prefix + a.continuation + 1;
    let mut texts = Vec::new();
    for path in &a.text {
        let bytes = read_file(path, TEXT_LIMIT).map_err(|e| format!("--text {e}"))?;
        let s = String::from_utf8_lossy(&bytes);
        let mut tokens = file.tokenizer().encode(&s, true);
        if tokens.len() < need {
            return Err(format!(
                "--text {}: {} tokens, fewer than --prefix + --continuation + 1 = {need}",
                path.display(),
                tokens.len()
            )
            .into());
        }
        tokens.truncate(need);
        texts.push((path, tokens));
    }
    let mut opts = SessionOptions::new(need.min(file.config().context));
    opts.threads = a.threads;
    opts.batch = 64;
    let mut session = Session::load(file, &opts, 64, &mut Quiet)?;
    let mut all = Vec::new();
    for (path, tokens) in &texts {
        let results = measure(&mut session, tokens, a.prefix, &schemes())?;
        all.push(TextResult {
            text: path.display().to_string(),
            tokens: tokens.len(),
            prefix: a.prefix,
            results,
        });
    }
    if a.json {
        serde_json::to_writer_pretty(&mut *out, &all)?;
        writeln!(out)?;
        return Ok(());
    }
    for t in &all {
        print_text(t, a.continuation, out)?;
    }
    Ok(())
}

fn print_text(
    t: &TextResult,
    continuation: usize,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let full = t.results.first().map_or(0.0, |r| r.perplexity_full);
    writeln!(
        out,
        "{}: {} chunks compressed ({} tokens), {continuation} scored; full-precision KV perplexity {full:.4}",
        t.text,
        t.prefix / 16,
        t.prefix
    )?;
    writeln!(
        out,
        "  {:<44} {:>9} {:>7} {:>11} {:>10} {:>8} {:>7}",
        "scheme", "8/4/2", "bits", "stored bits", "perplexity", "change", "top-1"
    )?;
    for r in &t.results {
        writeln!(
            out,
            "  {:<44} {:>9} {:>7.2} {:>11.2} {:>10.4} {:>+7.2}% {:>6.1}%",
            r.scheme.label(),
            format!("{}/{}/{}", r.levels[0], r.levels[1], r.levels[2]),
            r.mean_bits,
            r.stored_bits,
            r.perplexity,
            r.perplexity_change_pct,
            r.top1_agreement_pct
        )?;
    }
    Ok(())
}
