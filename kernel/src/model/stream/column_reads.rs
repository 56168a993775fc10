//! Whether a sparse run reads only the kept neurons' down columns, token by
//! token, or each streamed split layer's columns whole through the ring.
//!
//! Reading fewer bytes pays only when the kept columns leave whole runs of
//! blocks unread: a token that keeps 60% of SmolLM2's 1,536 neurons needs a
//! column in nearly every 4 KiB block (six or seven 612-byte columns each),
//! so the cheapest plan reads the region anyway, and reads it late: a
//! sparse read waits for the token's activations, while whole columns
//! stream through the ring while the previous layer computes. The choice
//! prices both with the device's cost model and the read planner itself,
//! over kept sets drawn uniformly (real tokens' sets cluster a little more,
//! which `--column-reads sparse` can measure), and reads sparsely only when
//! that costs at most [`SPARSE_READ_SHARE`] of the whole read. Dropped
//! neurons are skipped in the arithmetic either way.

use crate::cost::CostModel;
use crate::flash::Geometry;
use crate::limits::{SPARSE_READ_DRAWS, SPARSE_READ_SHARE};
use crate::plan::{estimate, Mode};
use crate::rng::SplitMix64;

use super::layout::FfnRegion;
use super::sparsity::neurons_kept;

/// How a sparse run reads streamed down columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ColumnReads {
    /// Only the kept neurons' columns, per token (plus gaps cheaper to read
    /// than to skip), after cache hits.
    Sparse,
    /// The layer's columns whole, prefetched through the ring.
    Whole,
}

/// The priced choice for one split layer's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ColumnEstimate {
    /// Neurons a token keeps, of `count`.
    pub keep: usize,
    /// Neurons (columns) in the layer.
    pub count: usize,
    /// Mean planned bytes of a sparse read of `keep` uniform columns.
    pub sparse_bytes: u64,
    /// Mean planned time of that read, in nanoseconds.
    pub sparse_ns: u64,
    /// Bytes of the whole columns.
    pub whole_bytes: u64,
    /// Time of reading them whole, in nanoseconds.
    pub whole_ns: u64,
    /// What the rule chose.
    pub choice: ColumnReads,
}

/// Prices reading `region`'s columns for a run at `sparsity` on a device of
/// `geo` and `cost`, drawing kept sets into `scratch` (at least
/// `region.count` entries); `None` when the region has no columns, the
/// scratch is short or the planner refuses the region.
pub fn estimate_column_reads(
    region: &FfnRegion,
    sparsity: f32,
    geo: &Geometry,
    cost: &CostModel,
    scratch: &mut [u32],
) -> Option<ColumnEstimate> {
    let count = region.count;
    let r = region.plan_region()?;
    if count == 0 || region.bundle == 0 {
        return None;
    }
    let keep = neurons_kept(sparsity, count);
    let all = scratch.get_mut(..count)?;
    let whole = estimate(&r, all_positions(all), geo, cost, Mode::Dense).ok()?;
    let (mut bytes, mut ns) = (0u64, 0u64);
    for seed in 0..SPARSE_READ_DRAWS {
        let kept = draw_kept(all, keep, seed);
        let s = estimate(&r, kept, geo, cost, Mode::Adaptive { merge: true }).ok()?;
        bytes = bytes.saturating_add(s.bytes);
        ns = ns.saturating_add(s.cost_ns);
    }
    let (sparse_bytes, sparse_ns) = (bytes / SPARSE_READ_DRAWS, ns / SPARSE_READ_DRAWS);
    let (num, den) = SPARSE_READ_SHARE;
    let pays = sparse_ns.saturating_mul(den) <= whole.cost_ns.saturating_mul(num);
    Some(ColumnEstimate {
        keep,
        count,
        sparse_bytes,
        sparse_ns,
        whole_bytes: whole.bytes,
        whole_ns: whole.cost_ns,
        choice: if pays {
            ColumnReads::Sparse
        } else {
            ColumnReads::Whole
        },
    })
}

/// `0..buf.len()` written into `buf`.
fn all_positions(buf: &mut [u32]) -> &[u32] {
    for (i, p) in buf.iter_mut().enumerate() {
        *p = i as u32;
    }
    buf
}

/// `keep` positions of `0..buf.len()`, each set equally likely, in
/// increasing order at the front of `buf` (selection sampling: position
/// `i` is taken with probability still-needed / still-left).
fn draw_kept(buf: &mut [u32], keep: usize, seed: u64) -> &[u32] {
    let n = buf.len();
    let mut rng = SplitMix64::new(0x05ee_dc01_u64 ^ seed.wrapping_mul(0x9E37_79B9));
    let mut taken = 0usize;
    for i in 0..n {
        let left = (n - i) as u64;
        let need = keep.saturating_sub(taken) as u64;
        if rng.below(left) < need {
            if let Some(slot) = buf.get_mut(taken) {
                *slot = i as u32;
            }
            taken += 1;
        }
    }
    buf.get(..taken).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::DType;
    use crate::model::stream::FfnKind;
    use crate::model::BundleTypes;

    fn region(bundle: usize, count: usize) -> FfnRegion {
        FfnRegion {
            offset: 0,
            len: bundle * count,
            count,
            bundle,
            types: BundleTypes {
                rows: DType::Q4_1,
                down: DType::Q8_0,
            },
            kind: FfnKind::Bundled,
        }
    }

    fn geo() -> Geometry {
        Geometry {
            block_size: 4096,
            capacity: 1 << 30,
            max_transfer: 1 << 20,
            queue_depth: 4,
        }
    }

    const DISK: CostModel = CostModel {
        command_ns: 50_000,
        bytes_per_sec: 1_280_000_000,
        queue_depth: 4,
    };

    #[test]
    fn draws_are_sorted_distinct_and_of_the_asked_size() {
        let mut buf = [0u32; 100];
        for seed in 0..8 {
            let kept = draw_kept(&mut buf, 37, seed).to_vec();
            assert_eq!(kept.len(), 37);
            assert!(kept.windows(2).all(|w| w[0] < w[1]), "{kept:?}");
            assert!(kept.iter().all(|&p| p < 100));
        }
        assert_ne!(
            draw_kept(&mut buf, 37, 0).to_vec(),
            draw_kept(&mut [0; 100], 37, 1)
        );
    }

    #[test]
    fn sixty_percent_of_smollm2_columns_read_whole() {
        // 612-byte Q8_0 columns, 1,536 a layer: a token keeping 922 needs
        // almost every block, and a late read of almost all of them loses.
        let mut s = [0u32; 1536];
        let e = estimate_column_reads(&region(612, 1536), 0.4, &geo(), &DISK, &mut s).unwrap();
        assert_eq!((e.keep, e.count), (922, 1536));
        assert_eq!(e.choice, ColumnReads::Whole, "{e:?}");
        assert!(e.sparse_bytes * 10 > e.whole_bytes * 9, "{e:?}");
    }

    #[test]
    fn few_wide_columns_read_sparsely() {
        // 16 KiB bundles, 5% kept: the skipped runs are long.
        let mut s = [0u32; 512];
        let e = estimate_column_reads(&region(16384, 512), 0.95, &geo(), &DISK, &mut s).unwrap();
        assert_eq!(e.choice, ColumnReads::Sparse, "{e:?}");
        assert!(e.sparse_bytes * 4 < e.whole_bytes, "{e:?}");
    }

    #[test]
    fn short_scratch_or_no_columns_is_none() {
        let mut s = [0u32; 10];
        assert!(estimate_column_reads(&region(612, 11), 0.4, &geo(), &DISK, &mut s).is_none());
        assert!(estimate_column_reads(&region(0, 0), 0.4, &geo(), &DISK, &mut s).is_none());
    }
}
