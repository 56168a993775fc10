//! `lode image`: make lode images without a model, for trying `inspect`,
//! benchmarking a file device with `bench io --image`, and tests.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

use lode_formats::image::{
    ArchTag, BundleParts, ImageBuilder, LayerSpec, ModelGeometry, StoredCostModel,
};
use lode_formats::input::{read_file, TRACE_LIMIT};
use lode_formats::trace::Trace;
use lode_formats::DType;
use lode_hal::fake::Profile;
use lode_kernel::placement;
use lode_kernel::rng::SplitMix64;

use lode_pack::output::Output;
use lode_pack::placement::{place, PlacementKind};

use crate::progress::Meters;

/// Subcommands of `lode image`.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCmd {
    /// Write an image of random weights in a real model's shape: FFN bundles
    /// per layer (placed by a trace's co-activation when given one) plus the
    /// per-layer norm tensors, every part checksummed.
    Synth(SynthImageArgs),
}

/// Arguments of `lode image synth`.
#[derive(clap::Args, Debug)]
pub struct SynthImageArgs {
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Layers (taken from --trace when given).
    #[arg(long, default_value_t = 30)]
    pub layers: u32,
    /// FFN neurons per layer (taken from --trace when given).
    #[arg(long, default_value_t = 1536)]
    pub neurons: u32,
    /// Hidden size: each bundle is a gate row, an up row and a down column of this many elements.
    #[arg(long, default_value_t = 576)]
    pub hidden: u32,
    /// Element type of the bundles.
    #[arg(long, value_enum, default_value = "q4-1")]
    pub dtype: BundleType,
    /// Activation trace whose first tokens decide the placement.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Placement (needs --trace unless identity).
    #[arg(long, value_enum, default_value = "identity")]
    pub placement: PlacementKind,
    /// Store this fake profile's cost model in the image.
    #[arg(long)]
    pub cost_profile: Option<String>,
    /// Block size the data is aligned to.
    #[arg(long, default_value_t = 4096)]
    pub block_size: u32,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Bundle element types `image synth` can write.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum BundleType {
    /// 4-bit with scale and minimum.
    Q4_1,
    /// 8-bit with scale.
    Q8_0,
    /// Half precision.
    F16,
}

impl BundleType {
    fn dtype(self) -> DType {
        match self {
            BundleType::Q4_1 => DType::Q4_1,
            BundleType::Q8_0 => DType::Q8_0,
            BundleType::F16 => DType::F16,
        }
    }
}

fn random_bytes(n: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Run `lode image`.
/// Most bundle bytes `image synth` makes: it builds the image in memory,
/// so a mistyped geometry must stop here rather than abort on allocation.
const MAX_SYNTH_BYTES: u64 = 2 << 30;

/// Refuses a geometry whose bundles exceed [`MAX_SYNTH_BYTES`].
fn check_size(layers: u32, neurons: u32, row: usize) -> Result<(), Box<dyn Error>> {
    let bytes = u64::from(layers)
        .checked_mul(u64::from(neurons))
        .and_then(|n| n.checked_mul(3 * row as u64));
    match bytes {
        Some(b) if b <= MAX_SYNTH_BYTES => Ok(()),
        _ => Err(format!(
            "{layers} layers of {neurons} bundles of {} B would be more than the {} GiB of \
             bundles image synth builds in memory; choose a smaller geometry",
            3 * row,
            MAX_SYNTH_BYTES >> 30
        )
        .into()),
    }
}

/// Runs `lode image`, reporting to `out`.
pub fn run(cmd: &ImageCmd, out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let ImageCmd::Synth(a) = cmd;
    // The output first: a bad one is refused before any work.
    let output = Output::check(
        &a.output,
        &a.trace.iter().map(PathBuf::as_path).collect::<Vec<_>>(),
    )?;
    let trace_bytes = match &a.trace {
        Some(p) => Some(read_file(p, TRACE_LIMIT)?),
        None => None,
    };
    let trace = match &trace_bytes {
        Some(b) => Some(Trace::parse(b).map_err(|e| {
            format!(
                "{}: {e}",
                a.trace
                    .as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
        })?),
        None => None,
    };
    let (layers, neurons) = trace.as_ref().map_or((a.layers, a.neurons), |t| {
        (t.header().layers, t.header().neurons)
    });
    if layers == 0 || neurons == 0 {
        return Err("an image needs at least one layer and one neuron".into());
    }
    let placed = match (&trace, a.placement) {
        (_, PlacementKind::Identity) => None,
        (Some(t), _) => Some(place(t, t.header().tokens, &mut Meters::new(false))?),
        (None, _) => return Err("--placement freq or coact needs --trace".into()),
    };
    let dtype = a.dtype.dtype();
    let row = dtype.row_bytes(u64::from(a.hidden)).ok_or_else(|| {
        format!(
            "hidden size {} is not a whole number of {} blocks",
            a.hidden,
            dtype.name()
        )
    })? as usize;
    check_size(layers, neurons, row)?;
    let heads = (a.hidden / 64).max(1);
    let geometry = ModelGeometry {
        arch: ArchTag::new("llama").ok_or("bad architecture tag")?,
        layers,
        hidden: a.hidden,
        ffn: neurons,
        heads,
        kv_heads: heads.div_ceil(3).max(1),
        head_dim: 64,
        vocab: 256,
        context: 2048,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        fingerprint: trace.as_ref().map_or(0, |t| t.header().fingerprint),
    };
    let mut rng = SplitMix64::new(a.seed);
    let mut b = ImageBuilder::new(geometry);
    b.block_size(a.block_size);
    if let Some(name) = &a.cost_profile {
        let p = Profile::by_name(name).ok_or_else(|| format!("unknown profile `{name}`"))?;
        b.cost_model(Some(StoredCostModel {
            command_ns: p.cost.command_ns,
            bytes_per_sec: p.cost.bytes_per_sec,
            queue_depth: p.cost.queue_depth,
        }));
    }
    let h = a.hidden as usize;
    b.add_tensor(
        "output_norm.weight",
        DType::F32,
        &[u64::from(a.hidden)],
        random_bytes(4 * h, &mut rng),
    )?;
    for l in 0..layers {
        b.add_tensor(
            format!("blk.{l}.attn_norm.weight"),
            DType::F32,
            &[u64::from(a.hidden)],
            random_bytes(4 * h, &mut rng),
        )?;
        b.add_tensor(
            format!("blk.{l}.ffn_norm.weight"),
            DType::F32,
            &[u64::from(a.hidden)],
            random_bytes(4 * h, &mut rng),
        )?;
        let perm = match &placed {
            Some(p) => p.perm(a.placement, l as usize, neurons),
            None => placement::identity(neurons),
        };
        // Bundles are stored in placement order; their bytes are random.
        let data = random_bytes(3 * row * neurons as usize, &mut rng);
        let parts = BundleParts {
            gate: Some(dtype),
            up: Some(dtype),
            down: Some(dtype),
        };
        b.add_layer(LayerSpec::new(parts, data, perm));
    }
    let len = output.write(|w| Ok(b.write_to(w)?))?;
    writeln!(
        out,
        "wrote {} ({len} bytes: {layers} layers x {neurons} bundles of {} B, {:?} placement)",
        a.output.display(),
        3 * row,
        a.placement
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_formats::image::Image;

    fn args(output: PathBuf) -> SynthImageArgs {
        SynthImageArgs {
            output,
            layers: 2,
            neurons: 64,
            hidden: 64,
            dtype: BundleType::Q8_0,
            trace: None,
            placement: PlacementKind::Identity,
            cost_profile: Some("emmc51".into()),
            block_size: 4096,
            seed: 3,
        }
    }

    #[test]
    fn a_geometry_too_large_to_build_is_refused_before_allocating() {
        let path = std::env::temp_dir().join("lode-never-written.lode");
        let mut a = args(path.clone());
        a.layers = 4000;
        a.neurons = 100_000;
        a.hidden = 4096;
        let mut out = Vec::new();
        let e = run(&ImageCmd::Synth(a), &mut out).unwrap_err().to_string();
        assert!(e.contains("GiB of bundles"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn synthesised_images_open_and_verify() {
        let path =
            std::env::temp_dir().join(format!("lode-image-synth-{}.lode", std::process::id()));
        let mut out = Vec::new();
        run(&ImageCmd::Synth(args(path.clone())), &mut out).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let img = Image::parse(&bytes).unwrap();
        assert_eq!(img.layer_count(), 2);
        let r = img.bundle_region(1).unwrap();
        assert_eq!((r.count, r.bundle_size), (64, 3 * 68));
        assert_eq!(
            img.cost_model().unwrap().command_ns,
            Profile::EMMC51.cost.command_ns
        );
        img.verify_data(&bytes[img.header().meta_len as usize..])
            .unwrap();
    }

    #[test]
    fn bad_arguments_are_errors() {
        let path = std::env::temp_dir().join("lode-never-written.lode");
        let mut a = args(path.clone());
        a.placement = PlacementKind::Coact;
        assert!(run(&ImageCmd::Synth(a), &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("--trace"));
        let mut a = args(path.clone());
        a.hidden = 33;
        assert!(run(&ImageCmd::Synth(a), &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("hidden size"));
        let mut a = args(path.clone());
        a.cost_profile = Some("floppy".into());
        assert!(run(&ImageCmd::Synth(a), &mut Vec::new()).is_err());
        assert!(!path.exists());
    }
}
