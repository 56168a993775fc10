//! Placing a model's FFN neurons on flash from an activation trace: profile
//! the trace's first tokens and compute a placement per layer, both ways
//! (hottest first, and by co-activation).

use std::error::Error;
use std::time::Instant;

use lode_formats::trace::{Trace, TraceHeader};
use lode_kernel::model::LlamaConfig;
use lode_kernel::placement;
use lode_kernel::profile::{LayerProfiler, ProfileLimits};

use crate::progress::Progress;

/// Placement algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum PlacementKind {
    /// The model's own neuron order.
    Identity,
    /// Hottest neurons first (Neuralink-S).
    Freq,
    /// Ripple's greedy co-activation linking.
    Coact,
}

/// Placements of every layer computed from one profile.
pub struct Placements {
    /// Profiled activation counts per layer.
    pub counts: Vec<Vec<u32>>,
    /// `perm[layer][position] = neuron` for frequency order.
    pub freq: Vec<Vec<u32>>,
    /// The same for co-activation linking.
    pub coact: Vec<Vec<u32>>,
    /// Seconds spent profiling.
    pub profile_s: f64,
    /// Seconds spent profiling and placing.
    pub total_s: f64,
}

impl Placements {
    /// The permutation of `kind` for `layer`.
    pub fn perm(&self, kind: PlacementKind, layer: usize, neurons: u32) -> Vec<u32> {
        match kind {
            PlacementKind::Identity => placement::identity(neurons),
            PlacementKind::Freq => self.freq[layer].clone(),
            PlacementKind::Coact => self.coact[layer].clone(),
        }
    }
}

/// Profile tokens `0..tokens` of `trace` and place every layer both ways,
/// reporting a step per layer to `progress`.
pub fn place(
    trace: &Trace<'_>,
    tokens: u32,
    progress: &mut dyn Progress,
) -> Result<Placements, Box<dyn Error>> {
    let h = trace.header();
    let t0 = Instant::now();
    progress.start("profile + placement", u64::from(h.layers));
    let limits = ProfileLimits {
        max_tokens: tokens.max(1),
        ..ProfileLimits::default()
    };
    let mut out = Placements {
        counts: Vec::new(),
        freq: Vec::new(),
        coact: Vec::new(),
        profile_s: 0.0,
        total_s: 0.0,
    };
    for l in 0..h.layers {
        let tp = Instant::now();
        let mut prof = LayerProfiler::new(h.neurons, limits)?;
        for t in 0..tokens.min(h.tokens) {
            prof.add_token(trace.active(t, l)?.iter())?;
        }
        let p = prof.finish();
        out.profile_s += tp.elapsed().as_secs_f64();
        out.freq.push(placement::by_frequency(p.counts()));
        out.coact.push(placement::by_coactivation(&p));
        out.counts.push(p.counts().to_vec());
        progress.tick(1);
    }
    progress.finish();
    out.total_s = t0.elapsed().as_secs_f64();
    Ok(out)
}

/// Whether a trace with header `h` can place the neurons of the model of
/// shape `cfg` and fingerprint `fingerprint`: the same layers and neurons,
/// and recorded on that model (a trace without a fingerprint, such as a
/// synthetic one, is taken on its shape alone).
pub fn check_trace(h: &TraceHeader, cfg: &LlamaConfig, fingerprint: u64) -> Result<(), String> {
    if h.layers as usize != cfg.layers || h.neurons as usize != cfg.ffn {
        return Err(format!(
            "a trace of {} layers x {} neurons, but the model has {} x {}",
            h.layers, h.neurons, cfg.layers, cfg.ffn
        ));
    }
    if h.fingerprint != 0 && h.fingerprint != fingerprint {
        return Err(format!(
            "trace of another model (fingerprint {:#x}, model {fingerprint:#x})",
            h.fingerprint
        ));
    }
    Ok(())
}
