//! The per-token sparsity rule: each token keeps, per layer, the neurons
//! whose activation `|silu(gate·x)·(up·x)|` is largest, and computes the
//! down projection over those only. One file, so the streaming run and
//! `lode profile`'s measurement of the rule count with the same code.

use crate::model::error::EvalError;

/// Neurons of a layer of `ffn` a sparse run keeps per token at `sparsity`:
/// `ffn` minus the nearest whole number of `sparsity * ffn`, at least one.
/// The run and `lode profile`'s top-k pass both count with this.
pub fn neurons_kept(sparsity: f32, ffn: usize) -> usize {
    // Nearest whole neuron (no `round` in core).
    let drop = (sparsity.clamp(0.0, 1.0) * ffn as f32 + 0.5) as usize;
    ffn.saturating_sub(drop).max(1)
}

/// Zeroes every activation of `h` below the `keep` largest in magnitude
/// (ties with the smallest kept one stay), using `scratch` (at least
/// `h.len()` values): the per-token rule of a sparse run.
pub fn keep_strongest(h: &mut [f32], keep: usize, scratch: &mut [f32]) -> Result<(), EvalError> {
    let n = h.len();
    if keep >= n {
        return Ok(());
    }
    if keep == 0 {
        h.fill(0.0);
        return Ok(());
    }
    let mags = scratch.get_mut(..n).ok_or(EvalError::Compute(
        crate::compute::ErrorKind::ScratchTooSmall,
    ))?;
    for (m, v) in mags.iter_mut().zip(h.iter()) {
        *m = v.abs();
    }
    let (_, &mut t, _) = mags.select_nth_unstable_by(n - keep, |a, b| a.total_cmp(b));
    for v in h.iter_mut() {
        if v.abs() < t {
            *v = 0.0;
        }
    }
    Ok(())
}
