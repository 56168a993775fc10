//! Decoded views of an image's FFN bundle regions: which rows a bundle
//! holds, where a layer's region is, and its neuron placement.

use zerocopy::little_endian::U32;

use crate::DType;

/// Which rows a bundle holds, in storage order gate, up, down, each a row of
/// `hidden` elements of its dtype. Absent parts take no bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleParts {
    /// The gate-projection row (absent in non-gated FFNs).
    pub gate: Option<DType>,
    /// The up-projection row.
    pub up: Option<DType>,
    /// The down-projection column.
    pub down: Option<DType>,
}

impl BundleParts {
    /// The parts in storage order.
    pub fn in_order(&self) -> [Option<DType>; 3] {
        [self.gate, self.up, self.down]
    }

    /// Bytes of one bundle's content for a model of width `hidden`; `None`
    /// when no part is present, a row is not a whole number of blocks, or
    /// the size does not fit in a `u32`.
    pub fn bundle_bytes(&self, hidden: u32) -> Option<u32> {
        let mut total = 0u64;
        let mut any = false;
        for dtype in self.in_order().into_iter().flatten() {
            total = total.checked_add(dtype.row_bytes(u64::from(hidden))?)?;
            any = true;
        }
        if !any || total == 0 {
            return None;
        }
        u32::try_from(total).ok()
    }
}

/// One layer's bundle region: where its FFN neuron bundles are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BundleRegion {
    /// Layer index.
    pub layer: usize,
    /// Absolute offset of the region (block-aligned).
    pub offset: u64,
    /// Bytes of the region: `count * stride`.
    pub length: u64,
    /// Bundles (neurons) in the region.
    pub count: u32,
    /// Bytes of one bundle's content.
    pub bundle_size: u32,
    /// Distance between consecutive bundles; bytes past `bundle_size` are zero.
    pub stride: u32,
    /// What each bundle holds.
    pub parts: BundleParts,
    /// Index of the layer's first bundle among all bundles of the image.
    pub first_bundle: u64,
}

impl BundleRegion {
    /// Absolute offset of the bundle at placement position `pos`.
    pub fn bundle_offset(&self, pos: u32) -> Option<u64> {
        if pos >= self.count {
            return None;
        }
        self.offset
            .checked_add(u64::from(pos).checked_mul(u64::from(self.stride))?)
    }
}

/// A layer's placement: the order in which its neurons' bundles are stored.
///
/// The bundle at position `p` holds neuron `perm[p]`, and neuron `n` is at
/// position `inverse[n]`. Both are checked to be mutually inverse
/// permutations when the image is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    perm: &'a [U32],
    inverse: &'a [U32],
}

impl<'a> Placement<'a> {
    pub(crate) fn new(perm: &'a [U32], inverse: &'a [U32]) -> Self {
        Placement { perm, inverse }
    }

    /// Neurons (and positions) in the layer.
    pub fn len(&self) -> usize {
        self.perm.len()
    }

    /// `true` when the layer has no bundles.
    pub fn is_empty(&self) -> bool {
        self.perm.is_empty()
    }

    /// The neuron stored at position `pos`.
    pub fn neuron_at(&self, pos: u32) -> Option<u32> {
        self.perm.get(pos as usize).map(|v| v.get())
    }

    /// The position of neuron `neuron`.
    pub fn position_of(&self, neuron: u32) -> Option<u32> {
        self.inverse.get(neuron as usize).map(|v| v.get())
    }

    /// The stored permutation: position to neuron.
    pub fn perm(&self) -> &'a [U32] {
        self.perm
    }

    /// The stored inverse: neuron to position.
    pub fn inverse(&self) -> &'a [U32] {
        self.inverse
    }

    /// `true` when every neuron sits at its own index.
    pub fn is_identity(&self) -> bool {
        self.perm
            .iter()
            .enumerate()
            .all(|(i, n)| n.get() as usize == i)
    }

    /// Positions whose neuron is not the one of the same index.
    pub fn moved(&self) -> usize {
        self.perm
            .iter()
            .enumerate()
            .filter(|(i, n)| n.get() as usize != *i)
            .count()
    }
}
