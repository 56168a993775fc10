//! Linear cost models of reading a chunk from the swap area and of
//! recomputing one, fitted on this device as restores run.
//!
//! LLMS fits `T_io(bytes) = a + b * bytes` and `T_recompute(tokens) =
//! c + d * tokens` at install time and splits a restore to minimize
//! `max(T_recompute, T_io)`, the two running in parallel. Here each
//! observation (a chunk read's service time in the swap thread, a
//! recompute's time on the evaluator) updates a least-squares fit, so the
//! models are this device's and this model's; until a model has two
//! distinct observations it uses a prior (a 100 us command and 1 GB/s;
//! 2 ms a token).

/// A least-squares line through observations `(x, y)`.
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    n: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
}

impl Fit {
    fn add(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        self.sx += x;
        self.sy += y;
        self.sxx += x * x;
        self.sxy += x * y;
    }

    /// `(intercept, slope)`, or `prior` until the fit is determined.
    fn line(&self, prior: (f64, f64)) -> (f64, f64) {
        let den = self.n * self.sxx - self.sx * self.sx;
        if self.n < 2.0 || den.abs() < 1e-12 {
            if self.n >= 1.0 && self.sx > 0.0 {
                // One size seen: a line through the origin.
                return (0.0, self.sy / self.sx);
            }
            return prior;
        }
        let slope = (self.n * self.sxy - self.sx * self.sy) / den;
        let icept = (self.sy - slope * self.sx) / self.n;
        (icept.max(0.0), slope.max(0.0))
    }
}

/// The two models.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CostModels {
    read: Fit,
    recompute: Fit,
}

impl CostModels {
    /// Records a read of `bytes` that took `seconds`.
    pub fn observe_read(&mut self, bytes: usize, seconds: f64) {
        self.read.add(bytes as f64, seconds);
    }

    /// Records a recompute of `tokens` that took `seconds`.
    pub fn observe_recompute(&mut self, tokens: usize, seconds: f64) {
        self.recompute.add(tokens as f64, seconds);
    }

    /// Predicted seconds to read a chunk of `bytes`.
    pub fn read_seconds(&self, bytes: usize) -> f64 {
        let (a, b) = self.read.line((100e-6, 1e-9));
        a + b * bytes as f64
    }

    /// Predicted seconds to recompute `tokens` positions.
    pub fn recompute_seconds(&self, tokens: usize) -> f64 {
        let (c, d) = self.recompute.line((0.0, 2e-3));
        c + d * tokens as f64
    }

    /// The models as text: `read a + b/MiB, recompute c + d/token`.
    pub fn describe(&self) -> String {
        let (a, b) = self.read.line((100e-6, 1e-9));
        let (c, d) = self.recompute.line((0.0, 2e-3));
        format!(
            "read {:.0} us + {:.2} ms/MiB ({} samples), recompute {:.2} ms + {:.2} ms/token ({} samples)",
            a * 1e6,
            b * 1048576.0 * 1e3,
            self.read.n,
            c * 1e3,
            d * 1e3,
            self.recompute.n
        )
    }
}

/// How many of the leading `on_flash` chunks (each `(bytes, tokens)`) to
/// recompute rather than read, given `dropped_tokens` that must be
/// recomputed anyway: the split minimizing `max(T_recompute, T_io)`.
pub(crate) fn split(
    models: &CostModels,
    on_flash: &[(usize, usize)],
    dropped_tokens: usize,
) -> usize {
    let mut io: f64 = on_flash.iter().map(|&(b, _)| models.read_seconds(b)).sum();
    let mut rc_tokens = dropped_tokens;
    let rc = |t: usize| {
        if t == 0 {
            0.0
        } else {
            models.recompute_seconds(t)
        }
    };
    let (mut best, mut best_k) = (rc(rc_tokens).max(io), 0);
    for (k, &(b, t)) in on_flash.iter().enumerate() {
        io -= models.read_seconds(b);
        rc_tokens += t;
        let cost = rc(rc_tokens).max(io.max(0.0));
        if cost < best {
            best = cost;
            best_k = k + 1;
        }
    }
    best_k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_line_and_splits_where_the_two_sides_meet() {
        let mut m = CostModels::default();
        for (b, s) in [(1000, 0.002), (3000, 0.004), (5000, 0.006)] {
            m.observe_read(b, s);
        }
        assert!((m.read_seconds(2000) - 0.003).abs() < 1e-9);
        for (t, s) in [(16, 0.016), (32, 0.032)] {
            m.observe_recompute(t, s);
        }
        // Reads of 1 ms each, 16 ms to recompute a chunk: read everything.
        let flash = [(0, 16); 8];
        assert_eq!(split(&m, &flash, 0), 0);
        // Reads of 40 ms each against 16 ms of recompute: recompute some
        // leading chunks while the rest are read.
        let slow = [(39_000, 16); 8];
        let k = split(&m, &slow, 0);
        assert!(k > 0 && k < 8, "{k}");
    }
}
