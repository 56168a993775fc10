//! A device's calibration as data: the points `lode calibrate` measures,
//! the scheduler's [`CostModel`] fitted to them ([`fit`]), the JSON
//! `lode calibrate --json` writes and `lode pack --cost-model` reads back,
//! and the model stored into an image. Measuring itself drives a real
//! device and stays with the command.

mod fit;
mod point;

use std::error::Error;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use lode_formats::image::{read_file_prefix, set_cost_model, StoredCostModel};
use lode_formats::input::{read_file, Input, Limit};
use lode_kernel::cost::CostModel;

pub use fit::{fit, line, predict, FitInfo};
pub use point::{summarise, Job, Pattern, Point};

/// The fitted model as plain numbers, for JSON (written by `--json`, read
/// back by `lode pack --cost-model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelJson {
    /// [`CostModel::command_ns`].
    pub command_ns: u32,
    /// [`CostModel::bytes_per_sec`].
    pub bytes_per_sec: u64,
    /// [`CostModel::queue_depth`].
    pub queue_depth: u16,
}

impl From<CostModel> for ModelJson {
    fn from(m: CostModel) -> Self {
        ModelJson {
            command_ns: m.command_ns,
            bytes_per_sec: m.bytes_per_sec,
            queue_depth: m.queue_depth,
        }
    }
}

/// The part of a `--json` calibration file `lode pack --cost-model` needs.
#[derive(Debug, serde::Deserialize)]
struct StoredJson {
    model: ModelJson,
}

/// The most bytes a calibration JSON may have (1 MiB): `lode calibrate
/// --json` writes a few KiB (two series of at most a few dozen points).
pub const JSON_LIMIT: Limit = Limit::new("calibration JSON", 1 << 20);

/// The cost model in the calibration JSON at `path` (what `lode calibrate
/// --json` wrote), checked the way an image's reader checks it.
pub fn read_model_json(path: &Path) -> Result<StoredCostModel, String> {
    let ctx = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let raw = read_file(path, JSON_LIMIT).map_err(|e| e.to_string())?;
    let text = String::from_utf8(raw).map_err(|e| ctx(&format!("not UTF-8 text ({e})")))?;
    let doc: StoredJson = serde_json::from_str(&text).map_err(|e| {
        ctx(&format!(
            "not a `lode calibrate --json` file ({e}); it needs \
             \"model\": {{\"command_ns\", \"bytes_per_sec\", \"queue_depth\"}}"
        ))
    })?;
    let m = doc.model;
    if m.bytes_per_sec == 0 || m.queue_depth == 0 {
        return Err(ctx(&format!(
            "cost model with bytes_per_sec {} and queue_depth {}: both must be at least 1",
            m.bytes_per_sec, m.queue_depth
        )));
    }
    Ok(StoredCostModel {
        command_ns: m.command_ns,
        bytes_per_sec: m.bytes_per_sec,
        queue_depth: m.queue_depth,
    })
}

/// Everything a calibration measured and fitted: the `--json` file.
#[derive(Debug, serde::Serialize)]
pub struct CalibrationJson<'a> {
    /// The device as named on the command line.
    pub device: &'a str,
    /// How it was opened (engine, direct I/O), as the device reports it.
    pub setup: String,
    /// Whether reads went through io_uring.
    pub io_uring: bool,
    /// Whether reads bypassed the page cache.
    pub direct: bool,
    /// The device's block size.
    pub block_size: u32,
    /// The device's bytes.
    pub capacity: u64,
    /// Reads in flight in the deep measurements.
    pub queue_depth: u16,
    /// Wall-clock seconds per measured point.
    pub seconds_per_point: f64,
    /// The points at queue depth 1.
    pub qd1: &'a [Point],
    /// The points at `queue_depth`.
    pub deep: &'a [Point],
    /// The fitted model.
    pub model: ModelJson,
    /// How it was fitted.
    pub fit: FitInfo,
}

/// One `--raw` job's result.
#[derive(Debug, serde::Serialize)]
pub struct RawJson<'a> {
    /// The job's name (`rand4k`, `seq1m`).
    pub job: &'static str,
    /// The device as named on the command line.
    pub device: &'a str,
    /// How it was opened, as the device reports it.
    pub setup: String,
    /// Whether reads went through io_uring.
    pub io_uring: bool,
    /// Whether reads bypassed the page cache.
    pub direct: bool,
    /// What the job measured.
    pub point: Point,
    /// Bounce-to-arena copy speed, bytes/s.
    pub copy_bytes_per_sec: Option<u64>,
}

/// Rewrite the cost-model section of the image at `path` in place (and the
/// checksums over it), so the image carries `model`.
pub fn store_in_image(path: &Path, model: &CostModel) -> Result<(), Box<dyn Error>> {
    let ctx = |what: &str, e: &dyn std::fmt::Display| format!("{} {what}: {e}", path.display());
    // Opened as an input is (an image on a regular file or a block
    // device), with write access: a FIFO or a device node is refused by
    // name before anything is read or written.
    let file = Input::open_with(path, OpenOptions::new().read(true).write(true))?.into_file();
    let mut prefix =
        read_file_prefix(&file).map_err(|e| ctx("is not a readable lode image", &e))?;
    let stored = StoredCostModel {
        command_ns: model.command_ns,
        bytes_per_sec: model.bytes_per_sec,
        queue_depth: model.queue_depth,
    };
    set_cost_model(&mut prefix, Some(stored)).map_err(|e| ctx("was not changed", &e))?;
    file.write_all_at(&prefix, 0)
        .map_err(|e| ctx("could not be written", &e))?;
    file.sync_data()
        .map_err(|e| ctx("could not be synced", &e))?;
    Ok(())
}
