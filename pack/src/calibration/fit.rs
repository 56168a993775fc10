//! Fitting the kernel's [`CostModel`] to measured points.
//!
//! The model prices a batch of `n` reads of `b` bytes in total as
//! `command_ns + max((n - 1) * command_ns / queue_depth, b / bytes_per_sec)`.
//! Its three numbers are read off three measurements:
//!
//! - **`command_ns`**: a least-squares line through the mean latency of one
//!   read at queue depth 1 against its size (`latency = c + s * bytes`); its
//!   intercept `c` is the fixed cost of a command. It is clamped to between
//!   1 ns and the smallest measured QD1 latency, since a noisy large-read
//!   point can tilt the line into a negative or too-large intercept.
//! - **`bytes_per_sec`**: the highest throughput any point reached. That is
//!   the large reads at the deep queue depth on every device measured so far
//!   (the sequential bandwidth the model wants); QD1's slope `1 / s` is
//!   reported too, and is lower, because one read at a time never keeps the
//!   device busy.
//! - **`queue_depth`**: the *effective* overlap. In a long stream of small
//!   reads the model charges `command_ns / queue_depth` per read, so the
//!   smallest reads at the deep queue depth, `iops` per second, give
//!   `queue_depth = iops * command_ns / 1e9`, rounded and clamped to
//!   `1..=` the depth used. It is usually far below the protocol's depth (4
//!   on this machine's virtio disk at QD32).

use lode_kernel::cost::CostModel;

use super::Point;

/// How the model was obtained, for the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FitInfo {
    /// Intercept of the QD1 line, ns (before clamping).
    pub qd1_intercept_ns: f64,
    /// Slope of the QD1 line, ns per byte.
    pub qd1_ns_per_byte: f64,
    /// Bandwidth implied by the QD1 slope, bytes/s (0 if the slope is not positive).
    pub qd1_bytes_per_sec: f64,
    /// Coefficient of determination of the QD1 line.
    pub qd1_r2: f64,
    /// Read size whose point gave `bytes_per_sec`.
    pub bandwidth_size: u32,
    /// Queue depth of that point.
    pub bandwidth_qd: u16,
    /// IOPS of the smallest deep reads, from which `queue_depth` came.
    pub small_deep_iops: f64,
    /// The unrounded effective overlap.
    pub overlap: f64,
}

/// Least squares `y = a + b x`: `(a, b, r2)`; `None` with fewer than two
/// distinct `x`.
pub fn line(points: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    let a = my - b * mx;
    let r2 = if syy > 0.0 {
        sxy * sxy / (sxx * syy)
    } else {
        1.0
    };
    Some((a, b, r2))
}

/// Fit the model to QD1 points and deep (`qd_used`) points; an error names
/// what is missing.
pub fn fit(qd1: &[Point], deep: &[Point], qd_used: u16) -> Result<(CostModel, FitInfo), String> {
    let xy: Vec<(f64, f64)> = qd1
        .iter()
        .filter(|p| p.reads > 0)
        .map(|p| (f64::from(p.size), p.mean_ns))
        .collect();
    let (a, b, r2) = line(&xy).ok_or("need QD1 points of at least two read sizes")?;
    let min_latency = xy.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let command = a.clamp(1.0, min_latency.max(1.0));
    let best = qd1
        .iter()
        .chain(deep)
        .filter(|p| p.reads > 0)
        .max_by(|x, y| x.bytes_per_sec.total_cmp(&y.bytes_per_sec))
        .ok_or("no point completed a read")?;
    let small = deep
        .iter()
        .filter(|p| p.reads > 0)
        .min_by_key(|p| p.size)
        .ok_or("need at least one deep-queue point")?;
    let overlap = small.iops * command / 1e9;
    let queue_depth = (overlap.round() as u64).clamp(1, u64::from(qd_used.max(1))) as u16;
    let model = CostModel {
        command_ns: command.round().min(f64::from(u32::MAX)) as u32,
        bytes_per_sec: (best.bytes_per_sec.round() as u64).max(1),
        queue_depth,
    };
    let info = FitInfo {
        qd1_intercept_ns: a,
        qd1_ns_per_byte: b,
        qd1_bytes_per_sec: if b > 0.0 { 1e9 / b } else { 0.0 },
        qd1_r2: r2,
        bandwidth_size: best.size,
        bandwidth_qd: best.qd,
        small_deep_iops: small.iops,
        overlap,
    };
    Ok((model, info))
}

/// What the model predicts for a point: mean latency at QD1, IOPS in a
/// long stream at any depth (`min(queue_depth / command, bandwidth / size)`).
pub fn predict(model: &CostModel, size: u32, qd: u16) -> (f64, f64) {
    let latency = model.read_ns(u64::from(size)) as f64;
    let per_read_ns = if qd <= 1 {
        latency
    } else {
        let overlapped = f64::from(model.command_ns) / f64::from(model.queue_depth.max(1));
        overlapped.max(model.transfer_ns(u64::from(size)) as f64)
    };
    (latency, 1e9 / per_read_ns.max(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::Pattern;

    fn point(size: u32, qd: u16, mean_ns: f64, iops: f64) -> Point {
        Point {
            size,
            qd,
            pattern: Pattern::Random,
            reads: 1000,
            seconds: 1.0,
            mean_ns,
            p50_ns: mean_ns,
            p99_ns: mean_ns,
            iops,
            bytes_per_sec: iops * f64::from(size),
        }
    }

    /// Points generated from the DESIGN.md disk (50 us + 0.8 us per KiB at
    /// QD1, 80k IOPS of 4 KiB and 1.28 GB/s at QD32) give that model back.
    #[test]
    fn recovers_a_known_device() {
        let sizes = [4096u32, 16384, 65536, 131072, 1 << 20];
        let ns = |s: u32| 50_000.0 + f64::from(s) * 1e9 / 1.28e9;
        let qd1: Vec<Point> = sizes
            .iter()
            .map(|&s| point(s, 1, ns(s), 1e9 / ns(s)))
            .collect();
        let deep: Vec<Point> = sizes
            .iter()
            .map(|&s| point(s, 32, ns(s) * 8.0, (80_000.0f64).min(1.28e9 / f64::from(s))))
            .collect();
        let (m, info) = fit(&qd1, &deep, 32).unwrap();
        assert_eq!(m.command_ns, 50_000);
        assert_eq!(m.bytes_per_sec, 1_280_000_000);
        assert_eq!(m.queue_depth, 4);
        assert!((info.qd1_r2 - 1.0).abs() < 1e-9);
        assert!((info.qd1_bytes_per_sec - 1.28e9).abs() < 1.0);
        assert_eq!((info.bandwidth_size, info.bandwidth_qd), (1 << 20, 32));
        let (lat, iops) = predict(&m, 4096, 32);
        assert_eq!(lat, 50_000.0 + 3_200.0);
        assert!((iops - 80_000.0).abs() < 1.0);
        let (_, iops) = predict(&m, 1 << 20, 32);
        assert!((iops - 1.28e9 / f64::from(1u32 << 20)).abs() < 1.0);
    }

    #[test]
    fn noisy_or_missing_points_do_not_give_nonsense() {
        // A line tilted into a negative intercept is clamped to >= 1 ns.
        let qd1 = [point(4096, 1, 10.0, 1e8), point(8192, 1, 1e6, 1e3)];
        let deep = [point(4096, 32, 1e6, 1e3)];
        let (m, _) = fit(&qd1, &deep, 32).unwrap();
        assert!(m.command_ns >= 1 && m.command_ns <= 10);
        assert!(m.is_valid());
        assert!(fit(&qd1[..1], &deep, 32).is_err());
        assert!(fit(&qd1, &[], 32).is_err());
        // Overlap never exceeds the depth used.
        let fast = [point(4096, 8, 1.0, 1e9)];
        let q = [
            point(4096, 1, 100_000.0, 1e4),
            point(8192, 1, 100_100.0, 1e4),
        ];
        assert_eq!(fit(&q, &fast, 8).unwrap().0.queue_depth, 8);
        assert_eq!(line(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
