//! The masking pass of a profiling run: each layer's threshold, and the
//! bitsets of the neurons each token kept, which the driver drains into
//! the trace window by window.

use lode_formats::trace::set_bit;
use lode_kernel::model::EvalError;

use super::misused;

/// The masking pass's thresholds and records.
#[derive(Debug, Clone)]
pub(super) struct Mask {
    /// Per layer.
    pub(super) thresholds: Vec<f32>,
    /// The current window's bitsets: token-major, then layer, each
    /// `bitset_len` bytes.
    pub(super) bits: Vec<u8>,
    /// Tokens the current window holds.
    pub(super) window_tokens: usize,
    /// Active (token, neuron) pairs per layer, over every window.
    pub(super) active: Vec<u64>,
    /// Tokens masked, over every window.
    pub(super) tokens: u64,
}

impl Mask {
    /// Zeroes the activations `a` of the batch rows starting at window
    /// token `start` whose score is under `layer`'s threshold, and records
    /// the others.
    pub(super) fn apply(
        &mut self,
        layer: usize,
        start: usize,
        f: usize,
        a: &mut [f32],
        s: &[f32],
    ) -> Result<(), EvalError> {
        let thr = *self
            .thresholds
            .get(layer)
            .ok_or(misused("profiler: no threshold for the layer"))?;
        let b = f.div_ceil(8);
        let layers = self.thresholds.len();
        let mut count = 0u64;
        for (r, (ar, sr)) in a.chunks_exact_mut(f).zip(s.chunks_exact(f)).enumerate() {
            let at = ((start + r) * layers + layer) * b;
            let bits = self
                .bits
                .get_mut(at..at + b)
                .ok_or(misused("profiler: token outside the window"))?;
            for (i, (a, &s)) in ar.iter_mut().zip(sr).enumerate() {
                if s >= thr {
                    set_bit(bits, i as u32);
                    count += 1;
                } else {
                    *a = 0.0;
                }
            }
        }
        if let Some(c) = self.active.get_mut(layer) {
            *c += count;
        }
        Ok(())
    }
}
