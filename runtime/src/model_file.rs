//! A model file opened once: a GGUF (run dense, in DRAM) or a lode image
//! (streamed from flash under a budget), with its shape and tokenizer, so
//! a front end can tokenize and size a session before loading it.

use std::path::{Path, PathBuf};

use lode_formats::gguf::{Gguf, GEMMA3_ARCH};
use lode_formats::input::{Input, InputError, Limit};
use lode_hal_linux::MappedFile;
use lode_kernel::model::stream::{arch_of, config_of};
use lode_kernel::model::{Arch, LlamaConfig, LlamaConfigExt};
use lode_tokenizer::{ChatTemplate, Tokenizer};

use crate::error::OpenError;
use crate::image_file::{damaged_image_magic, starts_as_image, ImageFile};
use crate::image_tokenizer::{tokenizer_from_image, tokenizer_gguf};

/// A GGUF file's bytes, which a session copies into its arena: mapped, so
/// the file is read once and its pages are given back as the load copies
/// them (never resident twice); read into memory where it cannot be mapped.
#[derive(Debug)]
pub(crate) enum GgufBytes {
    /// The file, mapped read-only.
    Mapped(MappedFile),
    /// The file, read whole.
    Read(Vec<u8>),
}

impl GgufBytes {
    /// The bytes of `input`, mapped when possible.
    fn load(input: &Input) -> Result<GgufBytes, InputError> {
        if let Ok(map) = MappedFile::map(input.file(), input.len()) {
            return Ok(GgufBytes::Mapped(map));
        }
        // Empty, or on a file system that cannot map: its length from
        // fstat still bounds the read.
        Ok(GgufBytes::Read(input.read_all(Limit::whole("GGUF model"))?))
    }

    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            GgufBytes::Mapped(m) => m.as_slice(),
            GgufBytes::Read(v) => v,
        }
    }

    /// Gives back the memory of `part` (a slice of [`GgufBytes::bytes`])
    /// once it has been used: it stays readable, read again from the file
    /// when touched. Nothing to give back for bytes read into memory.
    pub(crate) fn release(&self, part: &[u8]) {
        if let GgufBytes::Mapped(m) = self {
            m.release_slice(part);
        }
    }
}

/// Where the weights are.
#[derive(Debug)]
pub(crate) enum Weights {
    /// A GGUF file's bytes, copied into the arena when a session loads.
    Gguf(GgufBytes),
    /// A lode image: its metadata here, its data read through a device.
    Image(ImageFile),
}

/// An opened model file.
#[derive(Debug)]
pub struct ModelFile {
    pub(crate) path: PathBuf,
    pub(crate) weights: Weights,
    pub(crate) cfg: LlamaConfig,
    /// llama or Gemma 3.
    pub(crate) arch: Arch,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) chat: Option<ChatTemplate>,
    /// The model's identity: an image's geometry fingerprint, a GGUF's
    /// [`Gguf::fingerprint`] (what an image packed from it carries).
    pub(crate) fingerprint: u64,
}

/// Which layers of which model a pruned image holds (its lineage section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedFrom {
    /// Fingerprint of the unpruned model.
    pub base_fingerprint: u64,
    /// Layers of the unpruned model.
    pub base_layers: usize,
    /// The unpruned model's index of each layer this model holds.
    pub kept: Vec<usize>,
}

impl ModelFile {
    /// Opens `path`: a lode image (by its magic) or a GGUF llama model.
    /// Every defect (missing file, a path that is no file, wrong magic or
    /// version, truncated tables, another architecture, an unusable
    /// vocabulary) is an error naming the file. The file is opened once,
    /// as [`Input`] opens inputs: a FIFO, a directory or a character
    /// device such as `/dev/zero` is refused by name, unread.
    pub fn open(path: &Path) -> Result<ModelFile, OpenError> {
        let model = |reason: String| OpenError::Model {
            path: path.to_path_buf(),
            reason,
        };
        let input = Input::open(path).map_err(OpenError::Input)?;
        if starts_as_image(&input) {
            let file = ImageFile::from_input(&input).map_err(|source| OpenError::Image {
                path: path.to_path_buf(),
                source,
            })?;
            let img = file.image();
            let cfg = config_of(&img).map_err(|e| model(e.to_string()))?;
            let arch = arch_of(&img).map_err(|e| model(e.to_string()))?;
            let tokenizer = tokenizer_from_image(&img).map_err(model)?;
            let chat = tokenizer_gguf(&img)
                .ok()
                .and_then(|g| ChatTemplate::from_gguf(&g).ok())
                .or_else(|| arch.is_gemma().then(ChatTemplate::gemma));
            let fingerprint = img.geometry().fingerprint;
            return Ok(ModelFile {
                path: path.to_path_buf(),
                weights: Weights::Image(file),
                cfg,
                arch,
                tokenizer,
                chat,
                fingerprint,
            });
        }
        if let Some(n) = damaged_image_magic(&input) {
            return Err(model(format!(
                "its first 8 bytes are a lode image's magic with {n} of them changed: a \
                 damaged image (restore it, or pack it again)"
            )));
        }
        let bytes = GgufBytes::load(&input).map_err(OpenError::Input)?;
        let gguf = |source| OpenError::Gguf {
            path: path.to_path_buf(),
            source,
        };
        let file = Gguf::parse(bytes.bytes()).map_err(gguf)?;
        let (cfg, arch) = if file.get_str("general.architecture") == Ok(GEMMA3_ARCH) {
            let params = file.check_gemma3().map_err(gguf)?;
            Arch::from_gemma3(&params).map_err(|e| model(e.to_string()))?
        } else {
            let params = file.check_llama().map_err(gguf)?;
            let cfg = LlamaConfig::from_gguf(&params).map_err(|e| model(e.to_string()))?;
            (cfg, Arch::Llama)
        };
        let tokenizer =
            Tokenizer::from_gguf(&file).map_err(|e| model(format!("tokenizer: {e}")))?;
        // Gemma GGUFs may carry no template; Gemma's turn layout is the one
        // it was trained with (llama.cpp's `gemma` template).
        let chat = ChatTemplate::from_gguf(&file)
            .ok()
            .or_else(|| arch.is_gemma().then(ChatTemplate::gemma));
        let fingerprint = file.fingerprint();
        // The tokenizer and the chat template are copies: what parsing
        // touched (the metadata, the vocabulary) is not needed resident.
        bytes.release(bytes.bytes());
        Ok(ModelFile {
            path: path.to_path_buf(),
            weights: Weights::Gguf(bytes),
            cfg,
            arch,
            tokenizer,
            chat,
            fingerprint,
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

    /// The model's architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
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

    /// The model's identity: what an image packed from it records, and
    /// what a pruned image names as its base.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Which layers of which model this is, for a pruned image; `None` for
    /// a GGUF or an image of every layer.
    pub fn pruned_from(&self) -> Option<PrunedFrom> {
        let l = self.image()?.image().lineage()?;
        Some(PrunedFrom {
            base_fingerprint: l.base_fingerprint(),
            base_layers: l.base_layers() as usize,
            kept: l.kept().map(|k| k as usize).collect(),
        })
    }

    /// Bytes of weights: what a percentage budget is a share of.
    pub fn weight_bytes(&self) -> u64 {
        match &self.weights {
            Weights::Image(f) => f.weight_bytes(),
            Weights::Gguf(b) => b.bytes().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::image_file::is_image;
    use lode_formats::input::{FileKind, InputReason};

    /// The kind `path` was refused as.
    fn refused_as(path: &Path) -> FileKind {
        let t0 = std::time::Instant::now();
        let e = ModelFile::open(path).unwrap_err();
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(e.kind(), ErrorKind::Io);
        assert!(
            e.to_string().starts_with(&path.display().to_string()),
            "{e}"
        );
        match e {
            OpenError::Input(i) => match i.reason() {
                InputReason::NotReadable(kind) => *kind,
                r => panic!("{r}"),
            },
            e => panic!("{e}"),
        }
    }

    #[test]
    fn paths_that_are_not_files_are_refused_unread() {
        let dir = std::env::temp_dir().join(format!("lode-model-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(refused_as(&dir), FileKind::Directory);
        assert!(!is_image(&dir));
        let fifo = dir.join("pipe");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            assert_eq!(refused_as(&fifo), FileKind::Fifo);
            assert!(!is_image(&fifo));
        }
        if Path::new("/dev/zero").exists() {
            assert_eq!(refused_as(Path::new("/dev/zero")), FileKind::CharDevice);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
