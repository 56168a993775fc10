//! What a [`BlockFlash`](super::BlockFlash) found and chose when it opened:
//! the kind of file, whether the page cache is bypassed and with which
//! alignment, and which I/O engine runs, each with the reason. Benchmarks and
//! `lode calibrate` print it, so a number is never quoted without saying
//! what produced it.

use std::fmt;

/// What the opened path or descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (a model image on a file system, an APK).
    Regular,
    /// A block device node (a partition, a loop device).
    BlockDevice,
}

/// Where the direct-I/O alignment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlignSource {
    /// `ioctl(BLKSSZGET)`: the block device's logical sector size.
    BlockDeviceIoctl,
    /// `statx(STATX_DIOALIGN)`: the file system's own answer.
    Statx,
    /// The smallest power of two (512 and up) that an O_DIRECT read accepted.
    Probe,
}

/// Why reads go through the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferedWhy {
    /// The options asked for buffered I/O.
    Requested,
    /// The file system refused O_DIRECT when opening or setting the flag.
    Refused {
        /// The errno of the refusal (EINVAL on tmpfs before Linux 6.6).
        errno: i32,
    },
    /// statx reported that this file supports no direct I/O.
    NotSupported,
    /// No O_DIRECT read of 512 bytes to 64 KiB succeeded.
    ProbeFailed,
    /// The window starts off the direct-I/O alignment (an APK asset, say).
    WindowUnaligned {
        /// File offset of the window.
        offset: u64,
        /// Alignment direct I/O would need.
        align: u32,
    },
}

/// Whether the page cache is bypassed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectStatus {
    /// O_DIRECT: reads go from the device to the bounce buffers.
    Direct {
        /// File offsets and lengths must be multiples of this.
        offset_align: u32,
        /// Buffer addresses must be multiples of this.
        mem_align: u32,
        /// Where the numbers came from.
        source: AlignSource,
    },
    /// Buffered reads through the page cache.
    Buffered {
        /// Why.
        why: BufferedWhy,
    },
}

impl DirectStatus {
    /// `true` when the page cache is bypassed.
    pub fn is_direct(&self) -> bool {
        matches!(self, DirectStatus::Direct { .. })
    }
}

/// Why the pread pool runs instead of io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackWhy {
    /// The options asked for it ([`Engine::Threads`](super::Engine::Threads)).
    Forced,
    /// The kernel refused to set up a ring.
    Unavailable {
        /// ENOSYS (no io_uring), EPERM (seccomp, or the sysctl), ENOMEM...
        errno: i32,
        /// `kernel.io_uring_disabled` when readable: 1 restricts io_uring to
        /// a group, 2 disables it.
        sysctl_disabled: Option<u8>,
    },
}

/// The I/O engine that carries the reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineStatus {
    /// io_uring, batched: one system call submits a whole batch.
    IoUring {
        /// Submission-queue entries.
        entries: u32,
        /// The file is registered with the ring (saves a file lookup per read).
        fixed_file: bool,
        /// The bounce memory is registered (saves pinning pages per read);
        /// refused when it exceeds RLIMIT_MEMLOCK.
        fixed_buffers: bool,
        /// Completions are posted when collected (`DEFER_TASKRUN`, Linux
        /// 6.1+), which keeps a bursty disk's queue full; the ring is then
        /// bound to one thread (see `block_flash/uring.rs`).
        deferred: bool,
    },
    /// A bounded pool of threads each doing blocking `pread`s.
    Threads {
        /// Worker threads.
        threads: u16,
        /// CPU the workers are pinned to.
        pinned_cpu: Option<usize>,
        /// Why io_uring is not used.
        why: FallbackWhy,
    },
}

impl EngineStatus {
    /// `true` for io_uring.
    pub fn is_io_uring(&self) -> bool {
        matches!(self, EngineStatus::IoUring { .. })
    }
}

/// Everything [`BlockFlash`](super::BlockFlash) decided at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// What was opened.
    pub file: FileKind,
    /// Direct or buffered, and why.
    pub direct: DirectStatus,
    /// The engine, and why.
    pub engine: EngineStatus,
    /// Bytes of bounce memory the device owns (outside any arena).
    pub bounce_bytes: usize,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "regular file",
            FileKind::BlockDevice => "block device",
        })
    }
}

impl fmt::Display for DirectStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectStatus::Direct {
                offset_align,
                mem_align,
                source,
            } => {
                let from = match source {
                    AlignSource::BlockDeviceIoctl => "BLKSSZGET",
                    AlignSource::Statx => "statx",
                    AlignSource::Probe => "probe",
                };
                write!(
                    f,
                    "O_DIRECT ({offset_align}-byte offsets, {mem_align}-byte buffers, from {from})"
                )
            }
            DirectStatus::Buffered { why } => {
                f.write_str("buffered (page cache): ")?;
                match why {
                    BufferedWhy::Requested => f.write_str("requested"),
                    BufferedWhy::Refused { errno } => write!(
                        f,
                        "O_DIRECT refused: {}",
                        std::io::Error::from_raw_os_error(*errno)
                    ),
                    BufferedWhy::NotSupported => f.write_str("statx reports no direct I/O"),
                    BufferedWhy::ProbeFailed => f.write_str("no O_DIRECT read size was accepted"),
                    BufferedWhy::WindowUnaligned { offset, align } => {
                        write!(f, "window at offset {offset} is not {align}-byte aligned")
                    }
                }
            }
        }
    }
}

impl fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineStatus::IoUring {
                entries,
                fixed_file,
                fixed_buffers,
                deferred,
            } => {
                write!(f, "io_uring ({entries} entries")?;
                if *deferred {
                    f.write_str(", deferred completions")?;
                }
                if *fixed_file {
                    f.write_str(", fixed file")?;
                }
                if *fixed_buffers {
                    f.write_str(", fixed buffers")?;
                }
                f.write_str(")")
            }
            EngineStatus::Threads {
                threads,
                pinned_cpu,
                why,
            } => {
                write!(f, "pread pool ({threads} threads")?;
                if let Some(cpu) = pinned_cpu {
                    write!(f, " on CPU {cpu}")?;
                }
                match why {
                    FallbackWhy::Forced => f.write_str(", forced)"),
                    FallbackWhy::Unavailable {
                        errno,
                        sysctl_disabled,
                    } => {
                        write!(
                            f,
                            ", io_uring unavailable: {}",
                            std::io::Error::from_raw_os_error(*errno)
                        )?;
                        if let Some(v) = sysctl_disabled.filter(|&v| v > 0) {
                            write!(f, ", kernel.io_uring_disabled = {v}")?;
                        }
                        f.write_str(")")
                    }
                }
            }
        }
    }
}

impl fmt::Display for OpenReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, {}, {}, {} KiB bounce",
            self.file,
            self.engine,
            self.direct,
            self.bounce_bytes >> 10
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_sentences() {
        let r = OpenReport {
            file: FileKind::BlockDevice,
            direct: DirectStatus::Direct {
                offset_align: 512,
                mem_align: 512,
                source: AlignSource::BlockDeviceIoctl,
            },
            engine: EngineStatus::IoUring {
                entries: 32,
                fixed_file: true,
                fixed_buffers: false,
                deferred: true,
            },
            bounce_bytes: 1 << 20,
        };
        assert_eq!(
            r.to_string(),
            "block device, io_uring (32 entries, deferred completions, fixed file), O_DIRECT \
             (512-byte offsets, 512-byte buffers, from BLKSSZGET), 1024 KiB bounce"
        );
        let t = EngineStatus::Threads {
            threads: 1,
            pinned_cpu: Some(3),
            why: FallbackWhy::Unavailable {
                errno: libc::EPERM,
                sysctl_disabled: Some(2),
            },
        };
        let text = t.to_string();
        assert!(text.starts_with("pread pool (1 threads on CPU 3, io_uring unavailable: "));
        assert!(text.ends_with("kernel.io_uring_disabled = 2)"), "{text}");
        assert!(!t.is_io_uring());
        let b = DirectStatus::Buffered {
            why: BufferedWhy::WindowUnaligned {
                offset: 1028,
                align: 4096,
            },
        };
        assert!(!b.is_direct());
        assert!(b
            .to_string()
            .contains("offset 1028 is not 4096-byte aligned"));
    }
}
