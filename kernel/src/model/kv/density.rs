//! How much attention a KV chunk receives: LLMS's information density.
//!
//! LLMS (arXiv 2403.11805, Eq. 1) ranks chunks by how much the model looks
//! at them: for each column `j` of the causal attention matrix (key
//! position `j`), the mean of its weights over the rows that can see it
//! (`i >= j`), averaged over heads and layers, then over the chunk's
//! positions. A chunk the model attends to strongly loses more when its
//! keys and values are coarsened, so it tolerates less compression.
//!
//! The forward pass keeps, per position, the *sum* of its weights over
//! heads, layers and rows (the chunk's tally, see the [module
//! layout](super)). The count behind each mean is known without storing
//! it: after `len` positions, column `j` has been seen by `len - j` rows in
//! each of `heads` heads of `layers` layers. So the mean is the tally over
//! that count, and nothing but one f32 per position is kept.

use super::super::config::CHUNK_TOKENS;

/// Shape of the attention the tallies were summed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TallyShape {
    /// Query heads whose weights were summed.
    pub heads: usize,
    /// Layers whose weights were summed.
    pub layers: usize,
}

/// Density of chunk `index` from its `tallies` (its positions' summed
/// weights) in a context of `len` positions: the mean over the chunk's
/// evaluated positions of each one's mean received weight. 0 for a chunk
/// with no evaluated position, or a shape with no heads or layers.
pub fn chunk_density(tallies: &[f32], index: usize, len: usize, shape: TallyShape) -> f32 {
    let per_row = shape.heads.saturating_mul(shape.layers);
    if per_row == 0 {
        return 0.0;
    }
    let first = index.saturating_mul(CHUNK_TOKENS);
    let mut sum = 0.0f32;
    let mut n = 0usize;
    for (k, &t) in tallies.iter().take(CHUNK_TOKENS).enumerate() {
        let j = first + k;
        if j >= len {
            break;
        }
        // Rows `j..len` have seen column `j`, in every head of every layer.
        let rows = (len - j).saturating_mul(per_row);
        sum += t / rows as f32;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: TallyShape = TallyShape {
        heads: 1,
        layers: 1,
    };

    #[test]
    fn uniform_causal_attention_has_the_harmonic_density() {
        // Every row spreads its weight evenly over the columns it sees:
        // column j of a 4-position context gets 1/(i+1) from each row i>=j.
        let len = 4;
        let mut tally = [0.0f32; CHUNK_TOKENS];
        for i in 0..len {
            for t in tally.iter_mut().take(i + 1) {
                *t += 1.0 / (i + 1) as f32;
            }
        }
        let d = chunk_density(&tally, 0, len, ONE);
        let want: f32 = (0..len)
            .map(|j| (j..len).map(|i| 1.0 / (i + 1) as f32).sum::<f32>() / (len - j) as f32)
            .sum::<f32>()
            / len as f32;
        assert!((d - want).abs() < 1e-6, "{d} vs {want}");
    }

    #[test]
    fn heads_and_layers_divide_the_tally() {
        let tally = [6.0f32; CHUNK_TOKENS];
        let one = chunk_density(&tally, 0, 1, ONE);
        let six = chunk_density(
            &tally,
            0,
            1,
            TallyShape {
                heads: 3,
                layers: 2,
            },
        );
        assert_eq!(one, 6.0);
        assert_eq!(six, 1.0);
    }

    #[test]
    fn only_evaluated_positions_count() {
        let mut tally = [0.0f32; CHUNK_TOKENS];
        tally[0] = 1.0;
        tally[5] = 99.0; // not evaluated yet: ignored
                         // Chunk 1 of a 17-position context: one position, seen by one row.
        assert_eq!(chunk_density(&tally, 1, 17, ONE), 1.0);
        assert_eq!(chunk_density(&tally, 2, 17, ONE), 0.0);
        assert_eq!(chunk_density(&tally, 0, 0, ONE), 0.0);
        assert_eq!(
            chunk_density(
                &tally,
                0,
                4,
                TallyShape {
                    heads: 0,
                    layers: 1
                }
            ),
            0.0
        );
    }
}
