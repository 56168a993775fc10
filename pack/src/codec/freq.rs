//! Counts to a frequency table that sums to a power of two (`PROB_TOTAL`
//! for byte tables, `2^CODEC_BOOK_PROB_BITS` for codebooks, whose
//! frequencies are also rounded to one-byte levels): the rANS decoder's
//! probabilities. Every symbol that occurs keeps at least 1 (it
//! must stay decodable); the rounding is then moved, one unit at a time,
//! to wherever it costs fewest bits, so the table's loss against the
//! order-0 entropy stays small even for rare symbols.

use lode_kernel::codec::level_freq;

/// Bits `count` symbols cost at frequency `f` (of any total: only
/// differences are compared, and `coded_bits` adds the total back).
fn cost(count: u64, f: u32) -> f64 {
    if count == 0 {
        return 0.0;
    }
    -(count as f64) * f64::from(f).log2()
}

/// The table summing to `target` for `counts` (one per symbol, at least
/// one nonzero and at most `target` nonzero).
pub fn normalize(counts: &[u64], target: u32) -> Vec<u32> {
    let total: u64 = counts.iter().sum();
    assert!(total > 0, "normalize: no symbols");
    let scale = f64::from(target) / total as f64;
    let mut f: Vec<u32> = counts
        .iter()
        .map(|&c| match c {
            0 => 0,
            c => ((c as f64 * scale).round() as u32).max(1),
        })
        .collect();
    let mut sum: i64 = f.iter().map(|&x| i64::from(x)).sum();
    while sum != i64::from(target) {
        // Largest gain (adding) or smallest loss (removing) of one unit.
        let add = sum < i64::from(target);
        let best = (0..f.len())
            .filter(|&i| counts[i] > 0 && (add || f[i] > 1))
            .map(|i| {
                let next = if add { f[i] + 1 } else { f[i] - 1 };
                (i, cost(counts[i], next) - cost(counts[i], f[i]))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
            .expect("a symbol to adjust");
        if add {
            f[best] += 1;
            sum += 1;
        } else {
            f[best] -= 1;
            sum -= 1;
        }
    }
    f
}

/// A codebook's frequencies as one-byte levels (`level_freq`): every
/// symbol but the most frequent gets the level nearest (in ratio) to its
/// ideal frequency of `2^prob_bits`, and the most frequent one takes what
/// is left. Returns that symbol's index, every symbol's level (the implied
/// one's unused) and the frequencies the decoder will use. At most half
/// of `2^prob_bits` symbols, so the others' lowest levels always fit.
pub fn levels(counts: &[u64], prob_bits: u32) -> (usize, Vec<u8>, Vec<u32>) {
    let total: u32 = 1 << prob_bits;
    let n: u64 = counts.iter().sum();
    let implied = (0..counts.len()).max_by_key(|&i| counts[i]).unwrap_or(0);
    let nearest = |ideal: f64| -> u8 {
        (0..=255u8)
            .min_by(|&a, &b| {
                let d = |q: u8| (f64::from(level_freq(q)) / ideal).ln().abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap_or(0)
    };
    let mut q: Vec<u8> = counts
        .iter()
        .map(|&c| nearest((c as f64 * f64::from(total) / n as f64).max(1.0)))
        .collect();
    q[implied] = 0;
    // Lower the largest others until the implied frequency keeps at least
    // half its ideal (and at least 1); one step each time, so this ends.
    let want = ((counts[implied] as f64 * f64::from(total) / n as f64) / 2.0).max(1.0);
    loop {
        let others: u64 = (0..q.len())
            .filter(|&i| i != implied)
            .map(|i| u64::from(level_freq(q[i])))
            .sum();
        if others < u64::from(total) && (u64::from(total) - others) as f64 >= want {
            let f = (0..q.len())
                .map(|i| {
                    if i == implied {
                        (u64::from(total) - others) as u32
                    } else {
                        level_freq(q[i])
                    }
                })
                .collect();
            return (implied, q, f);
        }
        let big = (0..q.len())
            .filter(|&i| i != implied && q[i] > 0)
            .max_by_key(|&i| q[i])
            .expect("a symbol above level 0 while the others exceed the total");
        q[big] -= 1;
    }
}

/// Bits `counts` cost under table `f` summing to `target`.
pub fn coded_bits(counts: &[u64], f: &[u32], target: u32) -> f64 {
    let n: u64 = counts.iter().sum();
    n as f64 * f64::from(target).log2()
        + counts
            .iter()
            .zip(f)
            .map(|(&c, &x)| cost(c, x.max(1)))
            .sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_kernel::codec::PROB_TOTAL;

    #[test]
    fn sums_and_keeps_every_symbol() {
        for counts in [
            vec![1u64],
            vec![5, 0, 0, 1],
            vec![1_000_000, 1, 1, 1, 0, 7],
            (0..256).map(|i| 1 + i * i).collect(),
            vec![1; 256],
        ] {
            for target in [PROB_TOTAL, 1 << 16] {
                let f = normalize(&counts, target);
                assert_eq!(f.iter().sum::<u32>(), target);
                for (c, x) in counts.iter().zip(&f) {
                    assert_eq!(*c == 0, *x == 0, "{counts:?} -> {f:?}");
                }
            }
        }
        // One symbol: all the probability, zero bits.
        assert_eq!(normalize(&[0, 9, 0], PROB_TOTAL), vec![0, PROB_TOTAL, 0]);
        assert_eq!(coded_bits(&[0, 9, 0], &[0, PROB_TOTAL, 0], PROB_TOTAL), 0.0);
        // Uniform over four: two bits each.
        let f = normalize(&[3, 3, 3, 3], 1 << 16);
        assert!((coded_bits(&[3, 3, 3, 3], &f, 1 << 16) - 24.0).abs() < 1e-9);
    }
}
