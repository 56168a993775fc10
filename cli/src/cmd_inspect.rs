//! `lode inspect`: print an image's header, model geometry, tensors and
//! bundle regions, and optionally check every data byte.
//!
//! It opens the image the way the runtime does (a FIFO, a directory or a
//! device that is not a block device is refused by name, unread): one read
//! for the header, one for the metadata prefix, so inspecting a
//! multi-gigabyte image costs its metadata in memory (kilobytes of tables,
//! plus the tokenizer when the image has one: 1.8 MB for SmolLM2's
//! 49k-token vocabulary). `--verify` then streams the data part through
//! [`DataVerifier`](lode_formats::image::DataVerifier) in 1 MiB chunks.
//!
//! The tokenizer line builds the tokenizer the way `lode run` does, so it
//! says whether the stored vocabulary is one lode can use.

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use lode_formats::gguf::TOKENS_KEY;
use lode_formats::image::{
    read_file_prefix, BundleRegion, ErrorKind, Image, ImageError, Location, Placement, PrefixError,
};
use lode_formats::input::Input;

use lode_runtime::image_tokenizer::{tokenizer_from_image, tokenizer_gguf};

/// Arguments of `lode inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Path of the lode image to inspect.
    pub image: PathBuf,
    /// Also read every data byte and check it: tensors and bundles against
    /// their CRC32C, padding against zero.
    #[arg(long)]
    pub verify: bool,
}

/// The image at `path` was refused by the reader or the verifier.
#[derive(Debug)]
pub struct ImageRejected {
    /// The image's path.
    pub path: PathBuf,
    /// What the reader or verifier found.
    pub error: ImageError,
    /// The tensor's name, when the error is about a tensor.
    pub tensor: Option<String>,
}

impl fmt::Display for ImageRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)?;
        if let Some(name) = &self.tensor {
            write!(f, " (tensor `{name}`)")?;
        }
        Ok(())
    }
}

impl Error for ImageRejected {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.error)
    }
}

/// An I/O failure on the image file, with its path.
#[derive(Debug)]
struct FileError {
    path: PathBuf,
    what: &'static str,
    source: std::io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path.display(), self.what, self.source)
    }
}

impl Error for FileError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// Chunk size of `--verify`: large sequential reads, bounded memory.
const VERIFY_CHUNK: usize = 1 << 20;

/// Run `lode inspect`, printing to `out`.
pub fn run(args: &InspectArgs, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let path = args.image.as_path();
    let io_err = |what: &'static str| {
        move |source| FileError {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let reject = |error: ImageError| ImageRejected {
        path: path.to_path_buf(),
        error,
        tensor: None,
    };

    // A FIFO, a directory or a character device is refused here by name.
    let input = Input::open(path)?;
    let mut file = input.into_file();
    // The same reader, size cap and length rule as `lode run`.
    let prefix = read_file_prefix(&file).map_err(|e| -> Box<dyn Error> {
        match e {
            PrefixError::Io(source) => io_err("cannot read")(source).into(),
            PrefixError::Format(error) => reject(error).into(),
            _ => reject(ImageError::new(
                ErrorKind::OutOfRange,
                Location::Offset(0),
                "the header declares a metadata prefix longer than 256 MiB",
            ))
            .into(),
        }
    })?;
    let image = Image::parse(&prefix).map_err(reject)?;
    let header = *image.header();

    print_image(out, path, &image)?;

    if args.verify {
        let result = verify(&mut file, &image).map_err(io_err("cannot read"))?;
        if let Err(error) = result {
            let tensor = match error.location() {
                Location::Tensor(i) => image.tensor(i).map(|t| t.name.to_string()),
                _ => None,
            };
            return Err(ImageRejected {
                path: path.to_path_buf(),
                error,
                tensor,
            }
            .into());
        }
        let decoded =
            coded::verify(&mut file, &image).map_err(|e| format!("{}: {e}", path.display()))?;
        let also = match decoded {
            0 => String::new(),
            n => format!("; {n} coded tensors decoded"),
        };
        writeln!(
            out,
            "verify: ok ({} data bytes checked{also})",
            header.data_len()
        )?;
    }
    Ok(())
}

/// Stream the data part through the image's verifier. The outer `Result`
/// is the file, the inner one the image.
fn verify(file: &mut File, image: &Image<'_>) -> std::io::Result<Result<(), ImageError>> {
    let header = image.header();
    file.seek(SeekFrom::Start(header.meta_len))?;
    let mut verifier = image.data_verifier();
    let mut remaining = header.data_len();
    let mut buf = vec![0u8; VERIFY_CHUNK];
    while remaining > 0 {
        let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let chunk = buf.get_mut(..n).unwrap_or_default();
        file.read_exact(chunk)?;
        if let Err(e) = verifier.update(chunk) {
            return Ok(Err(e));
        }
        remaining -= n as u64;
    }
    Ok(verifier.finish())
}

fn print_image(out: &mut dyn Write, path: &Path, image: &Image<'_>) -> std::io::Result<()> {
    let h = image.header();
    writeln!(out, "lode image {}", path.display())?;
    writeln!(out, "  format       {}.{}", h.major, h.minor)?;
    writeln!(out, "  block size   {} bytes", h.block_size)?;
    writeln!(
        out,
        "  metadata     {} bytes ({} sections)",
        h.meta_len, h.section_count
    )?;
    writeln!(out, "  data         {} bytes", h.data_len())?;
    writeln!(out, "  file         {} bytes", h.file_len)?;

    let g = image.geometry();
    writeln!(out, "model")?;
    writeln!(out, "  architecture {}", g.arch.as_str())?;
    writeln!(out, "  layers       {}", g.layers)?;
    writeln!(out, "  hidden       {}", g.hidden)?;
    writeln!(out, "  ffn          {}", g.ffn)?;
    writeln!(
        out,
        "  heads        {} (kv heads {}, head dim {})",
        g.heads, g.kv_heads, g.head_dim
    )?;
    writeln!(out, "  vocab        {}", g.vocab)?;
    writeln!(out, "  context      {}", g.context)?;
    writeln!(out, "  rope base    {}", g.rope_base)?;
    writeln!(out, "  rms eps      {:e}", g.rms_eps)?;
    writeln!(out, "  fingerprint  {:016x}", g.fingerprint)?;
    if let Some(a) = image.arch_params() {
        writeln!(
            out,
            "  attention    window {} on local layers (RoPE base {}), every {}th layer global",
            a.window, a.local_rope_base, a.period
        )?;
    }
    if let Some(l) = image.lineage() {
        writeln!(
            out,
            "  pruned from  model {:016x} of {} layers: kept {:?}, dropped {:?}",
            l.base_fingerprint(),
            l.base_layers(),
            l.kept().collect::<Vec<_>>(),
            l.dropped().collect::<Vec<_>>()
        )?;
    }

    match image.cost_model() {
        Some(c) => writeln!(
            out,
            "cost model     {} ns per command, {} bytes/s, queue depth {}",
            c.command_ns, c.bytes_per_sec, c.queue_depth
        )?,
        None => writeln!(out, "cost model     not stored")?,
    }
    writeln!(out, "tokenizer      {}", tokenizer_summary(image))?;

    writeln!(out, "tensors ({})", image.tensor_count())?;
    let width = image
        .tensors()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    writeln!(
        out,
        "  {:<width$}  {:<5} {:<22} {:>12} {:>12}  stored",
        "name", "type", "shape", "offset", "length"
    )?;
    for t in image.tensors() {
        let shape = format!("{:?}", t.shape.dims());
        writeln!(
            out,
            "  {:<width$}  {:<5} {:<22} {:>12} {:>12}  {}",
            t.name,
            t.dtype.name(),
            shape,
            t.offset,
            t.length,
            coded::stored_as(t.codec, t.data_len())
        )?;
    }
    coded::summary(out, image)?;

    writeln!(out, "ffn layout     {}", layout::summary(image))?;
    writeln!(out, "bundle regions ({})", image.layer_count())?;
    writeln!(
        out,
        "  {:>5} {:>12} {:>10} {:>7} {:>6} {:>6}  {:<16} {:<16} placement",
        "layer", "offset", "length", "bundles", "size", "stride", "parts", "codecs"
    )?;
    for region in image.layers() {
        let l = region.layer;
        let codecs = codec_summary(image.codec_tags(l).unwrap_or_default());
        let placement = placement_summary(image.placement(l));
        writeln!(
            out,
            "  {:>5} {:>12} {:>10} {:>7} {:>6} {:>6}  {:<16} {:<16} {}",
            l,
            region.offset,
            region.length,
            region.count,
            region.bundle_size,
            region.stride,
            parts_summary(&region),
            codecs,
            placement
        )?;
    }
    Ok(())
}

/// The tokenizer section's size and token count, and whether lode can build
/// a tokenizer from it (a vocabulary lode does not support is reported, not
/// treated as a defect of the image).
fn tokenizer_summary(image: &Image<'_>) -> String {
    let Some(bytes) = image.tokenizer_gguf() else {
        return "not stored (packed before format 1.1)".to_string();
    };
    let tokens = match tokenizer_gguf(image) {
        Ok(file) => file
            .get_array(TOKENS_KEY)
            .map_or("no".to_string(), |a| a.len().to_string()),
        Err(e) => return format!("{} bytes, unreadable: {e}", bytes.len()),
    };
    let usable = match tokenizer_from_image(image) {
        Ok(t) => match t.pre_tokenizer() {
            Some(pre) => format!("{} merges, {pre:?} pre-tokenizer", t.merge_count()),
            None => format!("{:?}", t.model()),
        },
        Err(e) => format!("unusable: {e}"),
    };
    format!("{} bytes, {tokens} tokens, {usable}", bytes.len())
}

/// `gate/up/down` dtypes, `-` for an absent part.
fn parts_summary(region: &BundleRegion) -> String {
    let names: Vec<&str> = region
        .parts
        .in_order()
        .iter()
        .map(|p| p.map_or("-", |d| d.name()))
        .collect();
    names.join("/")
}

/// `raw` when every bundle is raw, else a count per codec tag.
fn codec_summary(tags: &[u8]) -> String {
    if tags.is_empty() {
        return "-".to_string();
    }
    let mut counts = [0usize; 256];
    for &t in tags {
        if let Some(c) = counts.get_mut(usize::from(t)) {
            *c += 1;
        }
    }
    let parts: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(tag, &n)| match tag {
            0 if n == tags.len() => "raw".to_string(),
            0 => format!("raw {n}"),
            _ => format!("tag{tag} {n}"),
        })
        .collect();
    parts.join(", ")
}

/// `identity`, or how many positions hold another neuron.
fn placement_summary(placement: Option<Placement<'_>>) -> String {
    match placement {
        None => "-".to_string(),
        Some(p) if p.is_empty() => "-".to_string(),
        Some(p) if p.is_identity() => "identity".to_string(),
        Some(p) => format!("permuted ({} of {} moved)", p.moved(), p.len()),
    }
}

mod coded;
mod layout;
#[cfg(test)]
mod tests;
