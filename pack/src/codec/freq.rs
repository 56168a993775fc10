//! Counts to a frequency table that sums to a power of two (`target`
//! for byte tables, `2^CODEC_BOOK_PROB_BITS` for codebooks): the rANS
//! decoder's probabilities. Every symbol that occurs keeps at least 1 (it
//! must stay decodable); the rounding is then moved, one unit at a time,
//! to wherever it costs fewest bits, so the table's loss against the
//! order-0 entropy stays small even for rare symbols.

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
