//! What one timed job measured: the reads' pattern, size and depth, and
//! the summary of their latencies.

/// Where the reads of a job go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly random offsets, aligned to the read size (fio's default
    /// `blockalign`), over the whole device.
    Random,
    /// One read after another from offset 0, wrapping at the end.
    Sequential,
}

/// One measurement: `size`-byte reads, `qd` in flight, for `seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// Bytes per read.
    pub size: u32,
    /// Reads kept in flight.
    pub qd: u16,
    /// Wall-clock time to keep issuing reads.
    pub seconds: f64,
    /// Offsets.
    pub pattern: Pattern,
}

/// What one job measured.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Point {
    /// Bytes per read.
    pub size: u32,
    /// Reads kept in flight.
    pub qd: u16,
    /// Offsets.
    pub pattern: Pattern,
    /// Reads completed.
    pub reads: u64,
    /// Wall-clock seconds from the first submission to the last completion.
    pub seconds: f64,
    /// Mean latency of one read (submission to collected completion), ns.
    pub mean_ns: f64,
    /// Median latency, ns.
    pub p50_ns: f64,
    /// 99th-percentile latency, ns.
    pub p99_ns: f64,
    /// Reads per second.
    pub iops: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
}

/// Mean and percentiles of `latencies` (sorted in place), and the rates.
pub fn summarise(job: &Job, latencies: &mut [u64], seconds: f64) -> Point {
    latencies.sort_unstable();
    let reads = latencies.len() as u64;
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() - 1) as f64 * p).round() as usize;
        latencies[i.min(latencies.len() - 1)] as f64
    };
    let mean = if latencies.is_empty() {
        0.0
    } else {
        latencies.iter().map(|&x| x as f64).sum::<f64>() / latencies.len() as f64
    };
    let secs = seconds.max(1e-9);
    Point {
        size: job.size,
        qd: job.qd,
        pattern: job.pattern,
        reads,
        seconds,
        mean_ns: mean,
        p50_ns: pct(0.5),
        p99_ns: pct(0.99),
        iops: reads as f64 / secs,
        bytes_per_sec: reads as f64 * f64::from(job.size) / secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_of_known_latencies() {
        let job = Job {
            size: 4096,
            qd: 1,
            seconds: 1.0,
            pattern: Pattern::Random,
        };
        let mut lat: Vec<u64> = (1..=100).rev().map(|x| x * 1000).collect();
        let p = summarise(&job, &mut lat, 0.5);
        assert_eq!(p.reads, 100);
        assert_eq!(p.mean_ns, 50_500.0);
        assert_eq!(p.p50_ns, 51_000.0);
        assert_eq!(p.p99_ns, 99_000.0);
        assert_eq!(p.iops, 200.0);
        assert_eq!(p.bytes_per_sec, 200.0 * 4096.0);
        let empty = summarise(&job, &mut [], 0.0);
        assert_eq!((empty.reads, empty.mean_ns, empty.p99_ns), (0, 0.0, 0.0));
    }
}
