//! A one-line progress meter on stderr for long offline work (synthesis,
//! profiling, packing, benchmarks). It redraws in place on a terminal and
//! prints a line per 10% otherwise, so CI logs stay short.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Progress of `total` steps of one job.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    last_decile: u64,
    tty: bool,
    start: Instant,
    quiet: bool,
}

impl Progress {
    /// Start a meter. `quiet` suppresses all output (for `--json`).
    pub fn new(label: &str, total: u64, quiet: bool) -> Self {
        Progress {
            label: label.to_string(),
            total: total.max(1),
            done: 0,
            last_decile: 0,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            quiet,
        }
    }

    /// Advance by `n` steps.
    pub fn tick(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        if self.quiet {
            return;
        }
        let pct = self.done * 100 / self.total;
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(
                err,
                "\r{}: {:3}% ({}/{})  {:.1}s",
                self.label,
                pct,
                self.done,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        } else if pct / 10 > self.last_decile {
            self.last_decile = pct / 10;
            let _ = writeln!(err, "{}: {}%", self.label, pct);
        }
    }

    /// Finish the line and report the elapsed time.
    pub fn finish(self) -> f64 {
        let secs = self.start.elapsed().as_secs_f64();
        if !self.quiet {
            let mut err = std::io::stderr().lock();
            if self.tty {
                let _ = writeln!(err);
            }
            let _ = writeln!(err, "{}: done in {:.2}s", self.label, secs);
        }
        secs
    }
}

/// Draws the progress `lode_pack` reports as one [`Progress`] meter per
/// job; `quiet` suppresses them all, as it does a meter.
pub struct Meters {
    quiet: bool,
    current: Option<Progress>,
}

impl Meters {
    /// Meters that print unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Meters {
            quiet,
            current: None,
        }
    }
}

impl lode_pack::progress::Progress for Meters {
    fn start(&mut self, label: &str, total: u64) {
        // A job that failed ended without a finish: its meter goes silently.
        self.current = Some(Progress::new(label, total, self.quiet));
    }

    fn tick(&mut self, steps: u64) {
        if let Some(p) = &mut self.current {
            p.tick(steps);
        }
    }

    fn finish(&mut self) {
        if let Some(p) = self.current.take() {
            p.finish();
        }
    }
}
