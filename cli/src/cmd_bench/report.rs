//! Presenting `lode bench io` results: a table for people, JSON for
//! scripts, an SVG bar chart of I/O time per strategy.

use std::error::Error;
use std::fmt::Write as _;
use std::io::Write;

use lode_kernel::plan::Mode;

use super::replay::{CacheKind, CacheScope, Totals};

/// What was benchmarked.
#[derive(Debug, serde::Serialize)]
pub struct Meta {
    /// Trace file or synthesis parameters.
    pub source: String,
    /// Device specification.
    pub device: String,
    /// How I/O time was obtained.
    pub clock: &'static str,
    /// Layers.
    pub layers: u32,
    /// Neurons per layer.
    pub neurons: u32,
    /// Bytes per bundle.
    pub bundle_bytes: u32,
    /// Device block size.
    pub block_size: u32,
    /// Sequential bandwidth used for the physical bound, bytes/s.
    pub bandwidth: u64,
    /// Tokens used to profile and place.
    pub profile_tokens: u32,
    /// Tokens replayed.
    pub replay_tokens: u32,
    /// Cache slots (bundles) of the cached strategies.
    pub cache_slots: u32,
    /// The slots as a fraction of all FFN bundles.
    pub cache_fraction: f64,
    /// One cache per layer or one for the model.
    pub cache_scope: CacheScope,
    /// Share of the slots the hot policy pins.
    pub hot_share: f64,
    /// Offline time: profiling plus all placements, seconds.
    pub offline_s: f64,
    /// Of which profiling, seconds.
    pub profile_s: f64,
}

/// One strategy's result, per replayed token.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    /// Strategy name.
    pub name: String,
    /// Placement.
    pub placement: &'static str,
    /// Cache policy.
    pub cache: CacheKind,
    /// `true` for the dense and per-bundle baselines.
    pub baseline: bool,
    /// Whether gap merging was allowed.
    pub merge: bool,
    /// Read commands per token.
    pub commands: f64,
    /// Bytes read per token.
    pub bytes_read: f64,
    /// Bytes read but not needed per token.
    pub bytes_wasted: f64,
    /// I/O time per token, microseconds.
    pub io_us: f64,
    /// Bytes read over I/O time, GB/s.
    pub effective_gbps: f64,
    /// Cache hits over lookups.
    pub hit_rate: f64,
    /// I/O time over the physical bound of this strategy's misses.
    pub x_bound: f64,
    /// Raw sums.
    pub totals: Totals,
}

impl Row {
    /// Per-token figures from the sums.
    pub fn new(
        name: &str,
        placement: &'static str,
        cache: CacheKind,
        mode: Mode,
        baseline: bool,
        t: Totals,
    ) -> Row {
        let tok = t.tokens.max(1) as f64;
        Row {
            name: name.to_string(),
            placement,
            cache,
            baseline,
            merge: matches!(mode, Mode::Adaptive { merge: true } | Mode::Merged),
            commands: t.commands as f64 / tok,
            bytes_read: t.bytes_read as f64 / tok,
            bytes_wasted: t.bytes_read.saturating_sub(t.needed_bytes) as f64 / tok,
            io_us: t.io_ns as f64 / tok / 1e3,
            effective_gbps: if t.io_ns == 0 {
                0.0
            } else {
                t.bytes_read as f64 / t.io_ns as f64
            },
            hit_rate: if t.hits + t.misses == 0 {
                0.0
            } else {
                t.hits as f64 / (t.hits + t.misses) as f64
            },
            x_bound: if t.bound_ns == 0 {
                0.0
            } else {
                t.io_ns as f64 / t.bound_ns as f64
            },
            totals: t,
        }
    }
}

fn baseline<'a>(rows: &'a [Row], name: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.baseline && r.name.ends_with(name))
}

fn best(rows: &[Row]) -> Option<&Row> {
    rows.iter()
        .filter(|r| !r.baseline)
        .min_by(|a, b| a.io_us.total_cmp(&b.io_us))
}

/// The human-readable report.
pub fn table(m: &Meta, rows: &[Row], out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out, "lode bench io: {}", m.source)?;
    writeln!(out, "geometry: {} layers x {} neurons, {} B bundles; device {} (block {} B, {:.2} GB/s sequential), time {}", m.layers, m.neurons, m.bundle_bytes, m.device, m.block_size, m.bandwidth as f64 / 1e9, m.clock)?;
    let scope = match m.cache_scope {
        CacheScope::Layer => "split evenly over one cache per layer",
        CacheScope::Model => "one cache for all layers",
    };
    writeln!(
        out,
        "profiled on {} tokens, replayed {}; offline profile + placement {:.2}s (profiling {:.2}s)",
        m.profile_tokens, m.replay_tokens, m.offline_s, m.profile_s
    )?;
    writeln!(
        out,
        "cache {} bundles ({:.1}% of the FFN), {scope}; hot pins {:.0}% of the slots",
        m.cache_slots,
        m.cache_fraction * 100.0,
        m.hot_share * 100.0
    )?;
    writeln!(out)?;
    let per_bundle = baseline(rows, "per-bundle").map(|r| r.io_us);
    writeln!(
        out,
        "{:<28} {:>9} {:>10} {:>10} {:>10} {:>7} {:>6} {:>7} {:>8}",
        "strategy (per token)",
        "commands",
        "MiB read",
        "MiB waste",
        "I/O ms",
        "GB/s",
        "hit %",
        "x bound",
        "speedup"
    )?;
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        b.baseline
            .cmp(&a.baseline)
            .then(a.io_us.total_cmp(&b.io_us))
    });
    for r in sorted {
        let speedup = per_bundle.map_or(String::from("-"), |p| {
            format!("{:.2}x", p / r.io_us.max(1e-9))
        });
        writeln!(
            out,
            "{:<28} {:>9.0} {:>10.2} {:>10.2} {:>10.3} {:>7.2} {:>6.1} {:>7.2} {:>8}",
            r.name,
            r.commands,
            r.bytes_read / 1048576.0,
            r.bytes_wasted / 1048576.0,
            r.io_us / 1e3,
            r.effective_gbps,
            r.hit_rate * 100.0,
            r.x_bound,
            speedup
        )?;
    }
    if let (Some(b), Some(p)) = (best(rows), per_bundle) {
        writeln!(out)?;
        writeln!(out, "best: {} at {:.3} ms/token: {:.2}x lower I/O time than per-bundle reads in original order without a cache, {:.2}x its physical bound", b.name, b.io_us / 1e3, p / b.io_us.max(1e-9), b.x_bound)?;
    }
    Ok(())
}

/// Machine-readable report.
pub fn json(m: &Meta, rows: &[Row], out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        meta: &'a Meta,
        rows: &'a [Row],
        best: Option<&'a str>,
    }
    let doc = Doc {
        meta: m,
        rows,
        best: best(rows).map(|r| r.name.as_str()),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of I/O time per token, fastest first, baselines
/// in grey, the physical bound of each strategy as a tick.
pub fn svg(m: &Meta, rows: &[Row]) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    sorted.sort_by(|a, b| a.io_us.total_cmp(&b.io_us));
    let bar_h = 16.0;
    let left = 230.0;
    let width = 560.0;
    let top = 50.0;
    let h = top + bar_h * 1.25 * sorted.len() as f64 + 40.0;
    let max = sorted.iter().map(|r| r.io_us).fold(1e-9, f64::max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{h}" font-family="sans-serif" font-size="11">"#,
        left + width + 90.0
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">I/O time per token: {} on {}</text>"#,
        xml_escape(&m.source),
        xml_escape(&m.device)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="34" fill="#555">{} layers x {} neurons, {} B bundles, cache {:.1}% of FFN; dark: merging on, light: off, grey: baselines; tick: physical bound</text>"##,
        m.layers,
        m.neurons,
        m.bundle_bytes,
        m.cache_fraction * 100.0
    );
    for (i, r) in sorted.iter().enumerate() {
        let y = top + i as f64 * bar_h * 1.25;
        let w = r.io_us / max * width;
        let color = if r.baseline {
            "#999999"
        } else if r.merge {
            "#2b6cb0"
        } else {
            "#68a0d8"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + bar_h * 0.8,
            xml_escape(&r.name)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{bar_h}" fill="{color}"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}">{:.2} ms</text>"#,
            left + w + 4.0,
            y + bar_h * 0.8,
            r.io_us / 1e3
        );
        if r.x_bound > 0.0 {
            let bx = left + r.io_us / r.x_bound / max * width;
            let _ = writeln!(
                s,
                r#"<line x1="{bx:.1}" x2="{bx:.1}" y1="{}" y2="{}" stroke="black" stroke-width="2"/>"#,
                y - 1.0,
                y + bar_h + 1.0
            );
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
