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

/// The per-token rule at a coarser grain: `h` cut into groups of `group`
/// consecutive neurons (the last may be shorter), each token keeps the
/// `ceil(keep / group)` groups of largest energy `Σ h²` and zeroes the
/// rest (ties with the weakest kept group stay). Reading whole groups is
/// what a byte-for-byte regrouping of the source's down blocks allows (a
/// Q4_1 or Q8_0 block spans 32 neurons), so `lode profile --group` prices
/// that layout's quality with this. Uses `2 * ceil(h.len() / group)`
/// floats of `scratch`; `group` 0 or 1 is [`keep_strongest`].
pub fn keep_strongest_groups(
    h: &mut [f32],
    keep: usize,
    group: usize,
    scratch: &mut [f32],
) -> Result<(), EvalError> {
    if group <= 1 {
        return keep_strongest(h, keep, scratch);
    }
    let groups = h.len().div_ceil(group);
    let kept = keep.div_ceil(group);
    if kept >= groups {
        return Ok(());
    }
    if kept == 0 {
        h.fill(0.0);
        return Ok(());
    }
    let short = EvalError::Compute(crate::compute::ErrorKind::ScratchTooSmall);
    let (energy, order) = scratch
        .get_mut(..2 * groups)
        .ok_or(short)?
        .split_at_mut(groups);
    for (e, g) in energy.iter_mut().zip(h.chunks(group)) {
        *e = g.iter().map(|v| v * v).sum();
    }
    order.copy_from_slice(energy);
    let (_, &mut t, _) = order.select_nth_unstable_by(groups - kept, |a, b| a.total_cmp(b));
    for (e, g) in energy.iter().zip(h.chunks_mut(group)) {
        if *e < t {
            g.fill(0.0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_the_strongest_whole() {
        // Groups of 2: energies 1, 25, 0.02, 4 (the last group is short).
        let mut h = [1.0, 0.0, 3.0, -4.0, 0.1, 0.1, 2.0];
        let mut s = [0.0; 8];
        keep_strongest_groups(&mut h, 3, 2, &mut s).unwrap();
        assert_eq!(h, [0.0, 0.0, 3.0, -4.0, 0.0, 0.0, 2.0]);
    }

    #[test]
    fn groups_of_one_are_the_neuron_rule() {
        let mut a = [0.5, -2.0, 1.0, 0.25, -3.0];
        let mut b = a;
        keep_strongest_groups(&mut a, 2, 1, &mut [0.0; 5]).unwrap();
        keep_strongest(&mut b, 2, &mut [0.0; 5]).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, [0.0, -2.0, 0.0, 0.0, -3.0]);
    }

    #[test]
    fn groups_keep_everything_or_need_scratch() {
        let mut h = [1.0, 2.0, 3.0, 4.0];
        keep_strongest_groups(&mut h, 3, 2, &mut [0.0; 4]).unwrap();
        assert_eq!(h, [1.0, 2.0, 3.0, 4.0]);
        let e = keep_strongest_groups(&mut h, 1, 2, &mut [0.0; 3]).unwrap_err();
        assert!(matches!(e, EvalError::Compute(_)));
        keep_strongest_groups(&mut h, 0, 2, &mut [0.0; 4]).unwrap();
        assert_eq!(h, [0.0; 4]);
    }
}
