//! Where a streamed session reads its weights: a device named as
//! `file:<path>` or `fake:<profile>`, opened into one [`AnyDevice`].
//!
//! `file:` opens [`BlockFlash`] (O_DIRECT at the device's alignment,
//! io_uring where available) with a small bounce area: the ring has at most
//! its slots' reads in flight, and a few MiB keeps four 1 MiB reads going.
//! `fake:` loads the image into the deterministic [`FakeFlash`] with that
//! profile's geometry and cost model (virtual time). A cost model stored in
//! the image (`lode pack --cost-model`) replaces a real device's built-in
//! one, so the read planner's merge and dense choices follow measurements.

use std::fmt;
use std::path::PathBuf;

use lode_formats::input::{read_file, Input, Limit};
use lode_hal::fake::{FakeFlash, FaultPlan, Profile};
use lode_hal_linux::{BlockFlash, BlockFlashOptions};
use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{
    Completion, Error as _, ErrorKind, ErrorType, FaultCounts, FaultInjector, Faults, FlashDevice,
    FlashWrite, Geometry, Paced, ReadRequest,
};

/// Nanoseconds since the first call: the pacing clock.
fn real_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

fn real_sleep(ns: u64) {
    std::thread::sleep(std::time::Duration::from_nanos(ns));
}

use crate::image_file::ImageFile;

/// Bounce memory of a `file:` device in a streaming session.
pub const STREAM_BOUNCE: usize = 4 << 20;

/// A parsed device name.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceSpec {
    /// The fake flash with this profile's geometry and cost model.
    Fake(&'static Profile),
    /// The same, its reads paced in real time to the cost model
    /// (`fake:<profile>,paced`), so slow flash meets real compute.
    PacedFake(&'static Profile),
    /// A file or block device.
    File(PathBuf),
}

/// A device name that is neither `file:<path>` nor `fake:<known profile>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadDevice(pub String);

impl fmt::Display for BadDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadDevice {}

impl DeviceSpec {
    /// Parses `fake:<profile>` or `file:<path>`; errors name the known
    /// profiles or the accepted forms.
    pub fn parse(s: &str) -> Result<DeviceSpec, BadDevice> {
        if let Some(name) = s.strip_prefix("fake:") {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name).collect();
            if let Some(name) = name.strip_suffix(",paced") {
                if let Some(p) = Profile::by_name(name) {
                    return Ok(DeviceSpec::PacedFake(p));
                }
            }
            Profile::by_name(name).map(DeviceSpec::Fake).ok_or_else(|| {
                BadDevice(format!(
                    "unknown fake profile `{name}`; known: {}",
                    names.join(", ")
                ))
            })
        } else if let Some(path) = s.strip_prefix("file:") {
            Ok(DeviceSpec::File(PathBuf::from(path)))
        } else {
            Err(BadDevice(format!(
                "device `{s}` must be file:<path> or fake:<profile>[,paced]"
            )))
        }
    }
}

/// One of the devices a session can stream from, so a session has one type
/// whichever the user names. There is one per session, inside the boxed
/// streaming source, so the variants' sizes do not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyDevice {
    /// A file or block device.
    File(BlockFlash),
    /// The deterministic fake flash over the image's bytes.
    Fake(FakeFlash<Vec<u8>>),
    /// Either of the above behind the fault injector (`--inject-faults`).
    Faulty(Box<FaultInjector<AnyDevice>>),
    /// The fake flash paced in real time to its cost model.
    Paced(Box<Paced<AnyDevice>>),
}

/// A device that was opened, and how it reads (for the stats).
#[derive(Debug)]
pub struct OpenedDevice {
    /// The device.
    pub device: AnyDevice,
    /// `file:<path>` or `fake:<profile>`.
    pub name: String,
    /// How it reads: direct or buffered, io_uring or threads, the cost
    /// model and where it came from.
    pub mode: String,
}

impl AnyDevice {
    /// Opens `spec` (default: the image's own file) for `image`, a file
    /// with `bounce` bytes of bounce buffers (at most [`STREAM_BOUNCE`]
    /// are ever needed: more than the ring can have in flight).
    pub fn open(
        spec: Option<&DeviceSpec>,
        image: &ImageFile,
        bounce: usize,
    ) -> Result<OpenedDevice, String> {
        let spec = spec
            .cloned()
            .unwrap_or_else(|| DeviceSpec::File(image.path().to_path_buf()));
        match spec {
            DeviceSpec::File(path) => {
                let opts = BlockFlashOptions {
                    bounce_bytes: bounce,
                    ..BlockFlashOptions::default()
                };
                // Refused by name first, without blocking: BlockFlash opens
                // without O_NONBLOCK (io_uring would fail its reads on such
                // a descriptor), so a FIFO would block it forever.
                Input::open(&path).map_err(|e| e.to_string())?;
                let mut dev = BlockFlash::open(&path, opts)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let cost = match image.image().cost_model() {
                    Some(c) => {
                        dev.set_cost_model(CostModel {
                            command_ns: c.command_ns,
                            bytes_per_sec: c.bytes_per_sec,
                            queue_depth: c.queue_depth,
                        })
                        .map_err(|e| {
                            format!("{}: the image's cost model: {e}", image.path().display())
                        })?;
                        "the image's"
                    }
                    None => "the built-in",
                };
                let m = dev.cost_model();
                let mode = format!(
                    "{}, {}, {:.1} MiB of bounce buffers (in the budget); {cost} cost model \
                     ({:.1} us a command, {:.0} MiB/s, queue depth {})",
                    dev.report().direct,
                    dev.report().engine,
                    dev.report().bounce_bytes as f64 / 1048576.0,
                    f64::from(m.command_ns) / 1e3,
                    m.bytes_per_sec as f64 / 1048576.0,
                    m.queue_depth
                );
                Ok(OpenedDevice {
                    device: AnyDevice::File(dev),
                    name: format!("file:{}", path.display()),
                    mode,
                })
            }
            DeviceSpec::PacedFake(profile) => {
                let mut d = AnyDevice::open(Some(&DeviceSpec::Fake(profile)), image, bounce)?;
                d.device = AnyDevice::Paced(Box::new(Paced::new(d.device, real_ns, real_sleep)));
                d.name.push_str(",paced");
                d.mode = d.mode.replacen(
                    "virtual time",
                    "virtual time, reads paced to it in real time",
                    1,
                );
                Ok(d)
            }
            DeviceSpec::Fake(profile) => {
                // The whole image, bounded by the length fstat gives. The
                // fake flash is a chip modelled in memory: its reads cost
                // virtual time and its faults replay from a seed, which
                // needs the bytes in this process. So it holds the image
                // (outside the budget, said in the mode); `file:` is what
                // measures memory.
                let bytes = read_file(image.path(), Limit::whole("lode image"))
                    .map_err(|e| e.to_string())?;
                let mode = format!(
                    "virtual time; the image held in process memory ({:.1} MiB, outside the \
                     budget)",
                    bytes.len() as f64 / 1048576.0
                );
                Ok(OpenedDevice {
                    device: AnyDevice::Fake(FakeFlash::new(bytes, profile, FaultPlan::default())),
                    name: format!("fake:{}", profile.name),
                    mode,
                })
            }
        }
    }

    /// Virtual nanoseconds of I/O on a fake device (0 on a real one).
    pub fn virtual_ns(&self) -> u64 {
        match self {
            AnyDevice::File(_) => 0,
            AnyDevice::Fake(f) => f.now_ns(),
            AnyDevice::Faulty(f) => f.inner().virtual_ns(),
            AnyDevice::Paced(p) => p.inner().virtual_ns(),
        }
    }

    /// This device behind a fault injector with `faults` (itself when
    /// `faults` injects nothing). A latency spike really stalls a file;
    /// on the fake flash it is virtual time, like every other read cost.
    pub fn with_faults(self, faults: Faults) -> AnyDevice {
        if faults.is_none() {
            return self;
        }
        let real = matches!(self, AnyDevice::File(_));
        let mut f = FaultInjector::new(self, faults);
        if real {
            f = f.with_sleep(|ns| std::thread::sleep(std::time::Duration::from_nanos(ns)));
        }
        AnyDevice::Faulty(Box::new(f))
    }

    /// Faults injected so far (zero without an injector).
    pub fn fault_counts(&self) -> FaultCounts {
        match self {
            AnyDevice::Faulty(f) => f.counts(),
            _ => FaultCounts::default(),
        }
    }

    /// The bounce memory of a file device (0 for the fake flash).
    pub fn bounce_bytes(&self) -> usize {
        match self {
            AnyDevice::File(d) => d.report().bounce_bytes,
            AnyDevice::Fake(_) => 0,
            AnyDevice::Faulty(f) => f.inner().bounce_bytes(),
            AnyDevice::Paced(p) => p.inner().bounce_bytes(),
        }
    }
}

impl ErrorType for AnyDevice {
    type Error = ErrorKind;
}

impl FlashDevice for AnyDevice {
    fn geometry(&self) -> Geometry {
        match self {
            AnyDevice::File(d) => d.geometry(),
            AnyDevice::Fake(d) => d.geometry(),
            AnyDevice::Faulty(d) => d.geometry(),
            AnyDevice::Paced(d) => d.geometry(),
        }
    }

    fn cost_model(&self) -> CostModel {
        match self {
            AnyDevice::File(d) => d.cost_model(),
            AnyDevice::Fake(d) => d.cost_model(),
            AnyDevice::Faulty(d) => d.cost_model(),
            AnyDevice::Paced(d) => d.cost_model(),
        }
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), ErrorKind> {
        match self {
            AnyDevice::File(d) => d.submit(arena, reads).map_err(|e| e.kind()),
            AnyDevice::Fake(d) => d.submit(arena, reads).map_err(|e| e.kind()),
            AnyDevice::Faulty(d) => d.submit(arena, reads).map_err(|e| e.kind()),
            AnyDevice::Paced(d) => d.submit(arena, reads).map_err(|e| e.kind()),
        }
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, ErrorKind> {
        match self {
            AnyDevice::File(d) => d.complete(arena, done).map_err(|e| e.kind()),
            AnyDevice::Fake(d) => d.complete(arena, done).map_err(|e| e.kind()),
            AnyDevice::Faulty(d) => d.complete(arena, done).map_err(|e| e.kind()),
            AnyDevice::Paced(d) => d.complete(arena, done).map_err(|e| e.kind()),
        }
    }

    fn in_flight(&self) -> usize {
        match self {
            AnyDevice::File(d) => d.in_flight(),
            AnyDevice::Fake(d) => d.in_flight(),
            AnyDevice::Faulty(d) => d.in_flight(),
            AnyDevice::Paced(d) => d.in_flight(),
        }
    }
}

impl FlashWrite for AnyDevice {
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ErrorKind> {
        match self {
            AnyDevice::File(d) => d.write(offset, data).map_err(|e| e.kind()),
            AnyDevice::Fake(d) => d.write(offset, data).map_err(|e| e.kind()),
            AnyDevice::Faulty(d) => d.write(offset, data).map_err(|e| e.kind()),
            AnyDevice::Paced(d) => d.write(offset, data).map_err(|e| e.kind()),
        }
    }

    fn sync(&mut self) -> Result<(), ErrorKind> {
        match self {
            AnyDevice::File(d) => d.sync().map_err(|e| e.kind()),
            AnyDevice::Fake(d) => d.sync().map_err(|e| e.kind()),
            AnyDevice::Faulty(d) => d.sync().map_err(|e| e.kind()),
            AnyDevice::Paced(d) => d.sync().map_err(|e| e.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_errors() {
        assert_eq!(
            DeviceSpec::parse("file:/x").unwrap(),
            DeviceSpec::File(PathBuf::from("/x"))
        );
        assert!(
            matches!(DeviceSpec::parse("fake:ufs40"), Ok(DeviceSpec::Fake(p)) if p.name == "ufs40")
        );
        assert!(
            matches!(DeviceSpec::parse("fake:emmc51,paced"), Ok(DeviceSpec::PacedFake(p)) if p.name == "emmc51")
        );
        assert!(DeviceSpec::parse("fake:emmc51,fast").is_err());
        let e = DeviceSpec::parse("fake:floppy").unwrap_err().to_string();
        assert!(e.contains("ufs40"), "{e}");
        let e = DeviceSpec::parse("tape:0").unwrap_err().to_string();
        assert!(e.contains("file:<path> or fake:<profile>"), "{e}");
    }

    /// Both variants keep the flash contract (`lode_hal::conformance`),
    /// writes included.
    #[test]
    fn both_variants_keep_the_flash_contract() {
        use lode_hal::conformance::{check_writable, Config};
        let cfg = Config::default();
        check_writable(&cfg, |m| {
            AnyDevice::Fake(FakeFlash::new(
                m.to_vec(),
                &Profile::UFS40,
                FaultPlan::none(),
            ))
        })
        .unwrap();
        let path = std::env::temp_dir().join(format!("lode-runtime-any-{}", std::process::id()));
        check_writable(&cfg, |m| {
            std::fs::write(&path, m).unwrap();
            let opts = BlockFlashOptions {
                writable: true,
                bounce_bytes: STREAM_BOUNCE,
                ..BlockFlashOptions::default()
            };
            let dev = BlockFlash::open(&path, opts).unwrap();
            std::fs::remove_file(&path).unwrap();
            AnyDevice::File(dev)
        })
        .unwrap();
    }
}
