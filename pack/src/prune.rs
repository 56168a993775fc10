//! Dropping layers from a model as it is packed: which source layers an
//! image keeps, what their tensors are called in it, and the pruned image's
//! fingerprint.
//!
//! A pruned image is an ordinary image of fewer layers: image layer `i` is
//! source layer `kept[i]`, its tensors renamed from `blk.{kept[i]}.` to
//! `blk.{i}.`, so every runtime streams it unchanged. The image's lineage
//! section (FORMAT.md, kind 10) records `kept` and the unpruned model's
//! fingerprint.

use std::borrow::Cow;
use std::format;
use std::string::String;
use std::vec::Vec;

/// The layers of a `layers`-layer model that dropping `drop` keeps, lowest
/// first. Refuses a layer that does not exist, one named twice, and a drop
/// of every layer, naming the first problem.
pub fn kept_layers(layers: usize, drop: &[usize]) -> Result<Vec<usize>, String> {
    let mut seen = std::vec![false; layers];
    for &l in drop {
        let Some(s) = seen.get_mut(l) else {
            return Err(format!(
                "layer {l} does not exist: the model has {layers} layers (0 to {})",
                layers.saturating_sub(1)
            ));
        };
        if *s {
            return Err(format!("layer {l} is named twice"));
        }
        *s = true;
    }
    let kept: Vec<usize> = (0..layers).filter(|&l| !seen[l]).collect();
    if kept.is_empty() {
        return Err(format!(
            "dropping all {layers} layers leaves nothing to run"
        ));
    }
    Ok(kept)
}

/// The name tensor `name` of the source has in an image keeping `kept`:
/// `None` for a tensor of a dropped layer, the name with its layer
/// renumbered for a kept layer's, and the name itself for tensors outside
/// the layers (embeddings, output head, final norm). A `blk.` name without
/// a layer number is an error: where it belongs cannot be told.
pub fn image_name<'n>(name: &'n str, kept: &[usize]) -> Result<Option<Cow<'n, str>>, String> {
    let Some(rest) = name.strip_prefix("blk.") else {
        return Ok(Some(Cow::Borrowed(name)));
    };
    let layer = rest
        .split_once('.')
        .and_then(|(l, tail)| Some((l.parse::<usize>().ok()?, tail)));
    let Some((layer, tail)) = layer else {
        return Err(format!("tensor {name}: no layer number after blk."));
    };
    Ok(match kept.iter().position(|&k| k == layer) {
        None => None,
        Some(at) if at == layer => Some(Cow::Borrowed(name)),
        Some(at) => Some(Cow::Owned(format!("blk.{at}.{tail}"))),
    })
}

/// The fingerprint of an image holding layers `kept` of a `base_layers`-layer
/// model fingerprinted `base`: a CRC32C of the three, with bit 63 set. A
/// source model's fingerprint is a 32-bit CRC, so the two never collide,
/// and files tied to the unpruned model (traces, KV swap areas) are refused
/// by the pruned image.
pub fn pruned_fingerprint(base: u64, base_layers: usize, kept: &[usize]) -> u64 {
    let mut bytes = Vec::with_capacity(16 + 4 * kept.len());
    bytes.extend_from_slice(&base.to_le_bytes());
    bytes.extend_from_slice(&(base_layers as u64).to_le_bytes());
    for &k in kept {
        bytes.extend_from_slice(&(k as u32).to_le_bytes());
    }
    u64::from(lode_formats::image::crc32c(&bytes)) | 1 << 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_layers_are_the_complement_and_bad_drops_are_named() {
        assert_eq!(kept_layers(5, &[3, 0]).unwrap(), [1, 2, 4]);
        assert_eq!(kept_layers(3, &[]).unwrap(), [0, 1, 2]);
        assert_eq!(
            kept_layers(30, &[30]).unwrap_err(),
            "layer 30 does not exist: the model has 30 layers (0 to 29)"
        );
        assert_eq!(
            kept_layers(5, &[2, 2]).unwrap_err(),
            "layer 2 is named twice"
        );
        assert_eq!(
            kept_layers(2, &[1, 0]).unwrap_err(),
            "dropping all 2 layers leaves nothing to run"
        );
    }

    #[test]
    fn tensors_are_renumbered_or_dropped() {
        let kept = [0, 2, 3];
        let name = |n| image_name(n, &kept).unwrap().map(|c| c.into_owned());
        assert_eq!(name("blk.0.attn_q.weight").unwrap(), "blk.0.attn_q.weight");
        assert_eq!(name("blk.1.attn_q.weight"), None);
        assert_eq!(
            name("blk.2.ffn_norm.weight").unwrap(),
            "blk.1.ffn_norm.weight"
        );
        assert_eq!(name("blk.3.x").unwrap(), "blk.2.x");
        assert_eq!(name("token_embd.weight").unwrap(), "token_embd.weight");
        // A layer tensor without a layer: refused rather than guessed.
        assert!(image_name("blk.x.y", &kept).is_err());
        assert!(image_name("blk.3", &kept).is_err());
    }

    #[test]
    fn the_fingerprint_depends_on_the_base_and_the_layers() {
        let a = pruned_fingerprint(7, 30, &[0, 1, 2]);
        assert_ne!(a, pruned_fingerprint(8, 30, &[0, 1, 2]));
        assert_ne!(a, pruned_fingerprint(7, 30, &[0, 1, 3]));
        assert_ne!(a, pruned_fingerprint(7, 31, &[0, 1, 2]));
        assert!(a >> 63 == 1 && a != 7);
    }
}
