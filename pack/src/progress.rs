//! Progress of long offline work (profiling, placement, packing), reported
//! to whoever shows it: the `lode` command draws a meter on stderr, tests
//! and libraries pass [`Silent`].

/// Receives the progress of one job after another.
pub trait Progress {
    /// A job of `total` steps called `label` starts.
    fn start(&mut self, label: &str, total: u64);
    /// `steps` more steps of the current job are done.
    fn tick(&mut self, steps: u64);
    /// The current job has ended.
    fn finish(&mut self);
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: u64) {}
    fn tick(&mut self, _: u64) {}
    fn finish(&mut self) {}
}
