//! What model an image holds: its architecture (llama or Gemma 3, from the
//! geometry and the architecture section) and its hyper-parameters, as
//! the streaming loader and `lode`'s commands read them before anything
//! else.

use lode_formats::image::{Image, SLIDING_WINDOW_ARCH};

use crate::model::arch::{Arch, Gemma3};
use crate::model::config::{LlamaConfig, LlamaConfigExt};
use crate::model::error::LoadError;

/// The architecture an image's geometry and architecture section describe.
pub fn arch_of(img: &Image<'_>) -> Result<Arch, LoadError> {
    match (img.geometry().arch.as_str(), img.arch_params()) {
        ("llama", None) => Ok(Arch::Llama),
        (SLIDING_WINDOW_ARCH, Some(p)) => {
            let arch = Arch::Gemma3(Gemma3 {
                window: p.window as usize,
                local_rope_base: p.local_rope_base,
                swa_period: p.period as usize,
            });
            arch.validate()?;
            Ok(arch)
        }
        _ => Err(LoadError::Layout(
            "the image holds a model of an architecture lode does not run",
        )),
    }
}

/// The model configuration an image's geometry describes: llama's shape,
/// for both architectures lode runs ([`arch_of`] says which).
pub fn config_of(img: &Image<'_>) -> Result<LlamaConfig, LoadError> {
    let g = img.geometry();
    arch_of(img)?;
    let cfg = g.shape(img.tensor_by_name("output.weight").is_none());
    cfg.validate()?;
    Ok(cfg)
}
