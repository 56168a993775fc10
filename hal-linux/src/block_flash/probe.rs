//! Finding out what was opened and whether, and how, it can be read around
//! the page cache.
//!
//! The gathering (system calls) and the deciding (a pure function,
//! [`decide`]) are separate so every branch of the policy is tested, including
//! the ones this machine cannot produce (tmpfs refuses O_DIRECT only before
//! Linux 6.6; lode's development machine runs a newer kernel).

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, FileTypeExt};

use super::error::{BlockFlashError, Reason};
use super::options::DirectIo;
use super::os;
use super::report::{AlignSource, BufferedWhy, DirectStatus, FileKind};
use crate::locked_arena::{mapping::Mapping, HugePages};

/// Largest alignment the probe tries; no file system lode knows needs more.
const PROBE_MAX: u32 = 64 << 10;

/// What the file's direct-I/O alignment turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlignAnswer {
    /// Offsets and buffers must be multiples of these.
    Known {
        offset: u32,
        mem: u32,
        source: AlignSource,
    },
    /// statx says the file supports no direct I/O.
    Unsupported,
    /// No O_DIRECT read size worked.
    ProbeFailed,
}

/// The file's kind and length in bytes (a block device's from
/// BLKGETSIZE64, since its inode length is 0).
pub(crate) fn kind_and_len(file: &File) -> Result<(FileKind, u64), BlockFlashError> {
    let meta = file
        .metadata()
        .map_err(|e| BlockFlashError::io(Reason::Stat, e))?;
    let t = meta.file_type();
    if t.is_file() {
        Ok((FileKind::Regular, meta.len()))
    } else if t.is_block_device() {
        let len = match os::block_device_size(file.as_fd()) {
            Ok(len) => len,
            // Should not happen on a block device; the end position is the
            // same number by another road.
            Err(_) => {
                let mut handle = file;
                handle
                    .seek(SeekFrom::End(0))
                    .map_err(|e| BlockFlashError::io(Reason::Stat, e))?
            }
        };
        Ok((FileKind::BlockDevice, len))
    } else {
        Err(BlockFlashError::new(Reason::NotAFile))
    }
}

/// Ask the device or file system for its direct-I/O alignment; the file must
/// already have O_DIRECT set.
pub(crate) fn alignment(
    file: &File,
    kind: FileKind,
    len: u64,
) -> Result<AlignAnswer, BlockFlashError> {
    let stat = |e| BlockFlashError::io(Reason::Stat, e);
    match kind {
        FileKind::BlockDevice => {
            let a = os::logical_block_size(file.as_fd()).map_err(stat)?;
            Ok(AlignAnswer::Known {
                offset: a,
                mem: a,
                source: AlignSource::BlockDeviceIoctl,
            })
        }
        FileKind::Regular => match os::statx_dio_align(file.as_fd()).map_err(stat)? {
            Some(a) if a.offset == 0 => Ok(AlignAnswer::Unsupported),
            Some(a) => Ok(AlignAnswer::Known {
                offset: a.offset,
                mem: a.mem.max(1),
                source: AlignSource::Statx,
            }),
            None => probe(file, len).map_err(stat),
        },
    }
}

/// Try O_DIRECT reads of 512 bytes, 1 KiB, ... 64 KiB at an offset of the
/// same size (or 0 for a small file) into a page-aligned buffer; the first
/// size accepted is the offset alignment. EINVAL means "misaligned"; any
/// other error is real. Buffers are then kept page-aligned, since the probe
/// says nothing finer about memory.
fn probe(file: &File, len: u64) -> io::Result<AlignAnswer> {
    let page = crate::sys::page_size();
    let (mut buf, _) = Mapping::anonymous(PROBE_MAX as usize, HugePages::Off)?;
    let mut size = 512u32;
    while size <= PROBE_MAX {
        let at = if len >= 2 * u64::from(size) {
            u64::from(size)
        } else {
            0
        };
        let dest = buf
            .as_mut_slice()
            .get_mut(..size as usize)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        match file.read_at(dest, at) {
            Ok(_) => {
                return Ok(AlignAnswer::Known {
                    offset: size,
                    mem: u32::try_from(page).unwrap_or(4096),
                    source: AlignSource::Probe,
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => size *= 2,
            Err(e) => return Err(e),
        }
    }
    Ok(AlignAnswer::ProbeFailed)
}

/// The policy: given what was asked, whether setting O_DIRECT worked (the
/// errno if not), the alignment found (when it was set), and where the
/// window starts, read directly or through the page cache, or refuse.
pub(crate) fn decide(
    want: DirectIo,
    set: Result<(), i32>,
    align: Option<AlignAnswer>,
    window_offset: u64,
) -> Result<DirectStatus, (Reason, Option<i32>)> {
    let buffered = |why| -> Result<DirectStatus, (Reason, Option<i32>)> {
        if want == DirectIo::Require {
            Err(match why {
                BufferedWhy::Refused { errno } => (Reason::DirectRefused, Some(errno)),
                BufferedWhy::WindowUnaligned { offset, align } => {
                    (Reason::WindowUnaligned { offset, align }, None)
                }
                _ => (Reason::DirectRefused, None),
            })
        } else {
            Ok(DirectStatus::Buffered { why })
        }
    };
    if want == DirectIo::Off {
        return Ok(DirectStatus::Buffered {
            why: BufferedWhy::Requested,
        });
    }
    if let Err(errno) = set {
        return buffered(BufferedWhy::Refused { errno });
    }
    match align {
        None | Some(AlignAnswer::ProbeFailed) => buffered(BufferedWhy::ProbeFailed),
        Some(AlignAnswer::Unsupported) => buffered(BufferedWhy::NotSupported),
        Some(AlignAnswer::Known {
            offset,
            mem,
            source,
        }) => {
            if !window_offset.is_multiple_of(u64::from(offset.max(1))) {
                return buffered(BufferedWhy::WindowUnaligned {
                    offset: window_offset,
                    align: offset,
                });
            }
            Ok(DirectStatus::Direct {
                offset_align: offset,
                mem_align: mem,
                source,
            })
        }
    }
}

/// Everything the open path learns: kind, length and the direct-I/O status;
/// O_DIRECT is left set on the file exactly when the status is `Direct`.
pub(crate) fn discover(
    file: &File,
    want: DirectIo,
    window_offset: Option<u64>,
) -> Result<(FileKind, u64, DirectStatus), BlockFlashError> {
    let (kind, len) = kind_and_len(file)?;
    let set = if want == DirectIo::Off {
        Ok(())
    } else {
        os::set_direct(file.as_fd(), true).map_err(|e| e.raw_os_error().unwrap_or(libc::EINVAL))
    };
    let align = match (want, set) {
        (DirectIo::Off, _) | (_, Err(_)) => None,
        _ => Some(alignment(file, kind, len)?),
    };
    let status = decide(want, set, align, window_offset.unwrap_or(0)).map_err(
        |(reason, errno)| match errno {
            Some(e) => BlockFlashError::io(reason, io::Error::from_raw_os_error(e)),
            None => BlockFlashError::new(reason),
        },
    )?;
    if !status.is_direct() {
        os::set_direct(file.as_fd(), false).map_err(|e| BlockFlashError::io(Reason::Stat, e))?;
    }
    Ok((kind, len, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: AlignAnswer = AlignAnswer::Known {
        offset: 512,
        mem: 512,
        source: AlignSource::Statx,
    };

    #[test]
    fn direct_when_everything_agrees() {
        assert_eq!(
            decide(DirectIo::Auto, Ok(()), Some(KNOWN), 4096),
            Ok(DirectStatus::Direct {
                offset_align: 512,
                mem_align: 512,
                source: AlignSource::Statx
            })
        );
        assert!(decide(DirectIo::Require, Ok(()), Some(KNOWN), 0)
            .unwrap()
            .is_direct());
    }

    #[test]
    fn auto_falls_back_and_says_why() {
        let b = |why| Ok(DirectStatus::Buffered { why });
        assert_eq!(
            decide(DirectIo::Auto, Err(libc::EINVAL), None, 0),
            b(BufferedWhy::Refused {
                errno: libc::EINVAL
            })
        );
        assert_eq!(
            decide(DirectIo::Auto, Ok(()), Some(AlignAnswer::Unsupported), 0),
            b(BufferedWhy::NotSupported)
        );
        assert_eq!(
            decide(DirectIo::Auto, Ok(()), Some(AlignAnswer::ProbeFailed), 0),
            b(BufferedWhy::ProbeFailed)
        );
        assert_eq!(
            decide(DirectIo::Auto, Ok(()), Some(KNOWN), 1028),
            b(BufferedWhy::WindowUnaligned {
                offset: 1028,
                align: 512
            })
        );
        assert_eq!(
            decide(DirectIo::Off, Ok(()), Some(KNOWN), 0),
            b(BufferedWhy::Requested)
        );
    }

    #[test]
    fn require_turns_every_fallback_into_an_error() {
        assert_eq!(
            decide(DirectIo::Require, Err(libc::EINVAL), None, 0),
            Err((Reason::DirectRefused, Some(libc::EINVAL)))
        );
        assert_eq!(
            decide(DirectIo::Require, Ok(()), Some(AlignAnswer::Unsupported), 0),
            Err((Reason::DirectRefused, None))
        );
        assert_eq!(
            decide(DirectIo::Require, Ok(()), Some(KNOWN), 100),
            Err((
                Reason::WindowUnaligned {
                    offset: 100,
                    align: 512
                },
                None
            ))
        );
    }

    #[test]
    fn probe_finds_a_power_of_two_on_a_real_file() {
        let path = std::env::temp_dir().join(format!("lode-probe-{}", std::process::id()));
        std::fs::write(&path, vec![1u8; 256 << 10]).unwrap();
        let f = File::open(&path).unwrap();
        if os::set_direct(f.as_fd(), true).is_ok() {
            match probe(&f, 256 << 10).unwrap() {
                AlignAnswer::Known { offset, .. } => {
                    assert!(offset.is_power_of_two() && (512..=PROBE_MAX).contains(&offset))
                }
                other => panic!("a file system with O_DIRECT probed as {other:?}"),
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}
