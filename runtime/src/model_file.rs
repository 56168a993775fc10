//! A model file opened once: a GGUF (run dense, in DRAM) or a lode image
//! (streamed from flash under a budget), with its shape and tokenizer, so
//! a front end can tokenize and size a session before loading it.

use std::path::{Path, PathBuf};

use lode_formats::gguf::Gguf;
use lode_kernel::model::stream::config_of;
use lode_kernel::model::{LlamaConfig, LlamaConfigExt};
use lode_tokenizer::{ChatTemplate, Tokenizer};

use crate::error::OpenError;
use crate::image_file::{is_image, ImageFile};
use crate::image_tokenizer::{tokenizer_from_image, tokenizer_gguf};

/// Where the weights are.
#[derive(Debug)]
pub(crate) enum Weights {
    /// A GGUF file's bytes, copied into the arena when a session loads.
    Gguf(Vec<u8>),
    /// A lode image: its metadata here, its data read through a device.
    Image(ImageFile),
}

/// An opened model file.
#[derive(Debug)]
pub struct ModelFile {
    pub(crate) path: PathBuf,
    pub(crate) weights: Weights,
    pub(crate) cfg: LlamaConfig,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) chat: Option<ChatTemplate>,
}

impl ModelFile {
    /// Opens `path`: a lode image (by its magic) or a GGUF llama model.
    /// Every defect (missing file, wrong magic or version, truncated
    /// tables, another architecture, an unusable vocabulary) is an error
    /// naming the file.
    pub fn open(path: &Path) -> Result<ModelFile, OpenError> {
        let model = |reason: String| OpenError::Model {
            path: path.to_path_buf(),
            reason,
        };
        if is_image(path) {
            let file = ImageFile::open(path).map_err(|source| OpenError::Image {
                path: path.to_path_buf(),
                source,
            })?;
            let img = file.image();
            let cfg = config_of(&img).map_err(|e| model(e.to_string()))?;
            let tokenizer = tokenizer_from_image(&img).map_err(model)?;
            let chat = tokenizer_gguf(&img)
                .ok()
                .and_then(|g| ChatTemplate::from_gguf(&g).ok());
            return Ok(ModelFile {
                path: path.to_path_buf(),
                weights: Weights::Image(file),
                cfg,
                tokenizer,
                chat,
            });
        }
        let bytes = std::fs::read(path).map_err(|source| OpenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let gguf = |source| OpenError::Gguf {
            path: path.to_path_buf(),
            source,
        };
        let file = Gguf::parse(&bytes).map_err(gguf)?;
        let params = file.check_llama().map_err(gguf)?;
        let cfg = LlamaConfig::from_gguf(&params).map_err(|e| model(e.to_string()))?;
        let tokenizer =
            Tokenizer::from_gguf(&file).map_err(|e| model(format!("tokenizer: {e}")))?;
        let chat = ChatTemplate::from_gguf(&file).ok();
        Ok(ModelFile {
            path: path.to_path_buf(),
            weights: Weights::Gguf(bytes),
            cfg,
            tokenizer,
            chat,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, when it has one lode understands.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The lode image, when the file is one.
    pub fn image(&self) -> Option<&ImageFile> {
        match &self.weights {
            Weights::Image(f) => Some(f),
            Weights::Gguf(_) => None,
        }
    }

    /// Bytes of weights: what a percentage budget is a share of.
    pub fn weight_bytes(&self) -> u64 {
        match &self.weights {
            Weights::Image(f) => f.weight_bytes(),
            Weights::Gguf(b) => b.len() as u64,
        }
    }
}
