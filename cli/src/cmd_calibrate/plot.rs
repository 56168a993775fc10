//! The calibration chart: effective bandwidth against read size on a log2
//! axis, measured at QD1 and at the deep queue depth (solid, with dots), and
//! what the fitted model predicts for each (dashed). Where the lines meet is
//! where the model is right; where the deep line flattens is the bandwidth.

use std::fmt::Write as _;

use lode_kernel::cost::CostModel;

use lode_pack::calibration::{predict, Point};

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 50.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG document; `title` names the device and engine.
pub fn svg(title: &str, qd1: &[Point], deep: &[Point], model: &CostModel) -> String {
    let all: Vec<&Point> = qd1.iter().chain(deep).collect();
    let min_size = all.iter().map(|p| p.size).min().unwrap_or(4096).max(1);
    let max_size = all
        .iter()
        .map(|p| p.size)
        .max()
        .unwrap_or(1 << 20)
        .max(min_size * 2);
    let mib = |bps: f64| bps / f64::from(1u32 << 20);
    let mut top = all.iter().map(|p| mib(p.bytes_per_sec)).fold(1.0, f64::max);
    for p in &all {
        let (_, iops) = predict(model, p.size, p.qd);
        top = top.max(mib(iops * f64::from(p.size)));
    }
    let top = top * 1.1;
    let lx0 = f64::from(min_size).log2();
    let lx1 = f64::from(max_size).log2();
    let x = |size: u32| LEFT + (f64::from(size).log2() - lx0) / (lx1 - lx0) * (W - LEFT - RIGHT);
    let y = |v: f64| H - BOTTOM - v / top * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="13">Effective read bandwidth vs read size: {}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="34" fill="#555">model: {} ns per command, {:.0} MiB/s, overlap {}; solid = measured, dashed = model</text>"##,
        model.command_ns,
        mib(model.bytes_per_sec as f64),
        model.queue_depth
    );
    // Axes and grid.
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM
    );
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
        H - BOTTOM
    );
    let mut size = min_size;
    while size <= max_size {
        let label = if size >= 1 << 20 {
            format!("{}M", size >> 20)
        } else {
            format!("{}K", size >> 10)
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            x(size),
            H - BOTTOM + 16.0
        );
        size = size.saturating_mul(2);
        if size == u32::MAX {
            break;
        }
    }
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#ddd"/>"##,
            y(v),
            W - RIGHT,
            y(v)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"#,
            LEFT - 6.0,
            y(v) + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">read size</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">MiB/s</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0
    );
    for (points, color, name) in [(qd1, "#c05621", "QD1"), (deep, "#2b6cb0", "deep")] {
        let mut sorted: Vec<&Point> = points.iter().collect();
        sorted.sort_by_key(|p| p.size);
        let measured: Vec<String> = sorted
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.size), y(mib(p.bytes_per_sec))))
            .collect();
        let modelled: Vec<String> = sorted
            .iter()
            .map(|p| {
                let (_, iops) = predict(model, p.size, p.qd);
                format!("{:.1},{:.1}", x(p.size), y(mib(iops * f64::from(p.size))))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            measured.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="5,4"/>"#,
            modelled.join(" ")
        );
        for p in &sorted {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(p.size),
                y(mib(p.bytes_per_sec))
            );
        }
        if let Some(last) = sorted.last() {
            let label = if name == "deep" {
                format!("QD{}", last.qd)
            } else {
                name.to_string()
            };
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" fill="{color}" text-anchor="end">{label}</text>"#,
                x(last.size) - 4.0,
                y(mib(last.bytes_per_sec)) - 6.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_pack::calibration::Pattern;

    #[test]
    fn draws_both_series_and_the_model() {
        let p = |size: u32, qd: u16, bps: f64| Point {
            size,
            qd,
            pattern: Pattern::Random,
            reads: 10,
            seconds: 1.0,
            mean_ns: 1.0,
            p50_ns: 1.0,
            p99_ns: 1.0,
            iops: bps / f64::from(size),
            bytes_per_sec: bps,
        };
        let qd1 = [p(4096, 1, 7e7), p(1 << 20, 1, 1.2e9)];
        let deep = [p(4096, 32, 3e8), p(1 << 20, 32, 1.5e9)];
        let m = CostModel {
            command_ns: 50_000,
            bytes_per_sec: 1_500_000_000,
            queue_depth: 4,
        };
        let svg = svg("file:<x> & y", &qd1, &deep, &m);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("file:&lt;x&gt; &amp; y"));
        assert!(svg.contains(">4K<") && svg.contains(">1M<") && svg.contains(">QD32<"));
        // Empty input still makes a document.
        assert!(svg_ok(&super::svg("", &[], &[], &m)));
    }

    fn svg_ok(s: &str) -> bool {
        s.starts_with("<svg") && s.trim_end().ends_with("</svg>")
    }
}
