//! The bytes of an image's FFN layout against the same matrices in their
//! source's type: what `--layout dense`, `split` or bundles cost on flash,
//! so a layout that grows the model says by how much.

use lode_formats::image::{BundleRegion, Image};
use lode_formats::DType;

/// How a layer's FFN is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dense,
    Split,
    Bundled,
}

fn kind(r: &BundleRegion) -> Kind {
    match (r.parts.gate, r.parts.up, r.parts.down) {
        _ if r.count == 0 && r.length == 0 => Kind::Dense,
        (None, None, Some(_)) => Kind::Split,
        _ => Kind::Bundled,
    }
}

/// Bytes of tensor `name`, and its type.
fn tensor(image: &Image<'_>, name: &str) -> (u64, Option<DType>) {
    image
        .tensor_by_name(name)
        .map_or((0, None), |(_, t)| (t.length, Some(t.dtype)))
}

/// One line: the layout of the image's FFN layers, their bytes by part,
/// and the bytes of the same three matrices at the gate rows' type.
pub fn summary(image: &Image<'_>) -> String {
    let g = image.geometry();
    let (mut rows, mut columns, mut bundles, mut equal) = (0u64, 0u64, 0u64, 0u64);
    let mut kinds = [0usize; 3];
    let mut row_type = None;
    for r in image.layers() {
        let name = |s: &str| format!("blk.{}.{s}", r.layer);
        let k = kind(&r);
        kinds[k as usize] += 1;
        let (gate, gt) = tensor(image, &name("ffn_gate.weight"));
        let (up, _) = tensor(image, &name("ffn_up.weight"));
        match k {
            Kind::Dense => {
                let (down, _) = tensor(image, &name("ffn_down.weight"));
                rows += gate + up;
                columns += down;
                row_type = row_type.or(gt);
            }
            Kind::Split => {
                rows += gate + up;
                columns += r.length;
                row_type = row_type.or(gt);
            }
            Kind::Bundled => {
                bundles += r.length;
                row_type = row_type.or(r.parts.gate);
            }
        }
        if let Some(rb) = row_type.and_then(|t| t.row_bytes(g.hidden as u64)) {
            equal += 3 * g.ffn as u64 * rb;
        }
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    let total = rows + columns + bundles;
    let how = match kinds {
        [n, 0, 0] if n > 0 => format!(
            "dense in {n} layers: gate and up {:.1} MiB + down {:.1} MiB",
            mib(rows),
            mib(columns)
        ),
        [0, n, 0] if n > 0 => format!(
            "split in {n} layers: gate and up rows {:.1} MiB + down columns {:.1} MiB",
            mib(rows),
            mib(columns)
        ),
        [0, 0, n] if n > 0 => format!("bundles in {n} layers: {:.1} MiB", mib(bundles)),
        [d, s, b] => format!("mixed ({d} dense, {s} split, {b} bundled layers)"),
    };
    match row_type.filter(|_| equal > 0) {
        Some(t) => format!(
            "{how} = {:.1} MiB; the three matrices at {} are {:.1} MiB ({:.2}x)",
            mib(total),
            t.name(),
            mib(equal),
            total as f64 / equal as f64
        ),
        None => format!("{how} = {:.1} MiB", mib(total)),
    }
}
