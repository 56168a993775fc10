//! Which decoder the layer pass runs: llama's, or Gemma 3's variant of it.
//!
//! Both architectures share the decode loop (`forward.rs`); [`Arch`] is
//! the configuration that says, per layer, what differs: Gemma 3 scales
//! the embedding rows, normalizes each query and key head, adds norms
//! after attention and the FFN, gates its FFN with GELU instead of SiLU,
//! and attends within a sliding window on most layers, with another RoPE
//! base there. The weights those steps use live in [`super::gemma`].

use lode_formats::gguf::Gemma3Params;

use super::config::LlamaConfig;
use super::error::LoadError;

/// The architecture of a loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum Arch {
    /// llama (SmolLM2 and kin): nothing beyond [`LlamaConfig`].
    #[default]
    Llama,
    /// Gemma 3.
    Gemma3(Gemma3),
}

/// What Gemma 3 adds to the shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemma3 {
    /// Positions a local layer's query sees, itself included.
    pub window: usize,
    /// RoPE base of the local layers (the shape's `rope_base` is the
    /// global layers').
    pub local_rope_base: f32,
    /// In each run of `swa_period` layers the last attends globally and the
    /// others locally.
    pub swa_period: usize,
}

/// The FFN's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gate {
    /// `silu(gate) ⊙ up` (llama).
    #[default]
    Silu,
    /// `gelu(gate) ⊙ up`, GELU's tanh approximation (Gemma).
    Gelu,
}

impl Arch {
    /// The configuration and architecture of a Gemma 3 GGUF that
    /// [`check_gemma3`](lode_formats::gguf::Gguf::check_gemma3) read.
    pub fn from_gemma3(p: &Gemma3Params) -> Result<(LlamaConfig, Arch), LoadError> {
        let arch = Arch::Gemma3(Gemma3 {
            window: p.window,
            local_rope_base: p.local_rope_base,
            swa_period: p.swa_period,
        });
        arch.validate()?;
        Ok((p.shape, arch))
    }

    /// Checks the architecture's own numbers.
    pub fn validate(&self) -> Result<(), LoadError> {
        match self {
            Arch::Llama => Ok(()),
            Arch::Gemma3(g) => {
                if g.window == 0 || g.swa_period == 0 {
                    return Err(LoadError::Config(
                        "the sliding window and its layer period must be at least 1",
                    ));
                }
                if !(g.local_rope_base.is_finite() && g.local_rope_base > 0.0) {
                    return Err(LoadError::Config(
                        "the local RoPE base must be positive and finite",
                    ));
                }
                Ok(())
            }
        }
    }

    /// True for Gemma 3.
    pub const fn is_gemma(&self) -> bool {
        matches!(self, Arch::Gemma3(_))
    }

    /// The window of layer `layer`: `Some(positions)` for a local
    /// (sliding-window) layer, `None` for one that sees the whole context.
    pub fn window(&self, layer: usize) -> Option<usize> {
        match self {
            Arch::Llama => None,
            Arch::Gemma3(g) => (layer % g.swa_period != g.swa_period - 1).then_some(g.window),
        }
    }

    /// RoPE base of layer `layer`.
    pub fn rope_base(&self, cfg: &LlamaConfig, layer: usize) -> f32 {
        match self {
            Arch::Gemma3(g) if self.window(layer).is_some() => g.local_rope_base,
            _ => cfg.rope_base,
        }
    }

    /// The factor the embedding rows are multiplied by: `sqrt(hidden)` for
    /// Gemma (as an f32, as llama.cpp computes it), none for llama.
    pub fn embed_scale(&self, cfg: &LlamaConfig) -> Option<f32> {
        self.is_gemma().then(|| sqrt_f32(cfg.hidden as f32))
    }

    /// The FFN's gate.
    pub const fn gate(&self) -> Gate {
        match self {
            Arch::Llama => Gate::Silu,
            Arch::Gemma3(_) => Gate::Gelu,
        }
    }

    /// Whether Q and K heads are stored in NEOX order (rotated pairs `i`
    /// and `i + head_dim / 2`, GGUF's convention for Gemma); the loader
    /// reorders them to the adjacent pairs [`Compute::rope`] rotates.
    ///
    /// [`Compute::rope`]: crate::compute::Compute::rope
    pub const fn neox(&self) -> bool {
        self.is_gemma()
    }
}

/// `√x` correctly rounded (`core` has no square root without `std`): a
/// float estimate from halving the exponent, Newton steps in f64, then the
/// nearest f32.
fn sqrt_f32(x: f32) -> f32 {
    if x <= 0.0 || !x.is_finite() {
        return 0.0;
    }
    let x = f64::from(x);
    let mut y = f64::from_bits((x.to_bits() >> 1) + (1023u64 << 51));
    for _ in 0..8 {
        y = 0.5 * (y + x / y);
    }
    y as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_pattern_and_bases() {
        let g = Arch::Gemma3(Gemma3 {
            window: 512,
            local_rope_base: 10_000.0,
            swa_period: 6,
        });
        let globals: heapless::Vec<usize, 8> = (0..18).filter(|&l| g.window(l).is_none()).collect();
        assert_eq!(globals.as_slice(), &[5, 11, 17]);
        assert_eq!(g.window(0), Some(512));
        assert_eq!(Arch::Llama.window(5), None);
        assert_eq!(sqrt_f32(640.0), 25.298_222);
        assert_eq!(sqrt_f32(4.0), 2.0);
        assert_eq!(Arch::Llama.gate(), Gate::Silu);
        assert_eq!(g.gate(), Gate::Gelu);
    }
}
