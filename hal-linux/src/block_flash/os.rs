//! The system calls `BlockFlash` needs that `std` does not wrap: block-device
//! ioctls, `statx` for the direct-I/O alignment, toggling O_DIRECT on an open
//! descriptor, and pinning a thread to a CPU.
//!
//! Every function takes a borrowed descriptor (so it cannot outlive the file)
//! and plain values, passes the kernel only pointers to locals that live
//! across the call, and turns a failure into `io::Error`.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `_IOR(0x12, 114, size_t)`: the size of a block device in bytes. Not in the
/// `libc` crate; this is the encoding of every architecture lode targets
/// (x86, Arm, RISC-V: read direction in bits 30-31, argument size in bits
/// 16-29, type 0x12, number 114).
const BLKGETSIZE64: u32 =
    (2 << 30) | ((std::mem::size_of::<usize>() as u32) << 16) | (0x12 << 8) | 114;

/// The logical sector size of a block device (`BLKSSZGET`): the alignment
/// O_DIRECT requires of offsets, lengths and buffers on it.
pub(crate) fn logical_block_size(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one `int` through the pointer, which points to
    // a live local of that type; the descriptor is open for the borrow.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::BLKSSZGET as _, &mut size) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// The size of a block device in bytes (`BLKGETSIZE64`).
pub(crate) fn block_device_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 (the kernel's `u64`, whatever the
    // size_t in the request code) through the pointer, which points to a live
    // local u64; the descriptor is open for the borrow.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), BLKGETSIZE64 as _, &mut size) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// Direct-I/O alignment as `statx(STATX_DIOALIGN)` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DioAlign {
    /// Required alignment of buffer addresses; 0 when direct I/O is unsupported.
    pub(crate) mem: u32,
    /// Required alignment of file offsets and lengths; 0 when unsupported.
    pub(crate) offset: u32,
}

/// The file's direct-I/O alignment, or `None` when the kernel or the file
/// system does not answer (before Linux 6.1, or a file system without the
/// field); then a probe has to find it.
pub(crate) fn statx_dio_align(fd: BorrowedFd<'_>) -> io::Result<Option<DioAlign>> {
    let mut buf = MaybeUninit::<libc::statx>::zeroed();
    // The raw system call, not libc's `statx` wrapper: Bionic has the wrapper
    // only from API level 30, and a static library must link on older ones.
    // SAFETY: the path is a valid NUL-terminated empty string and with
    // AT_EMPTY_PATH the call describes `fd` itself; the kernel writes at most
    // one `struct statx` into `buf`, which is that size and lives across the
    // call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            buf.as_mut_ptr(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // No statx at all (very old kernels, some sandboxes): probe instead.
        return match e.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: zero bytes are a valid `statx` (plain integers), and the kernel
    // filled in what it reported.
    let st = unsafe { buf.assume_init() };
    if st.stx_mask & libc::STATX_DIOALIGN == 0 {
        return Ok(None);
    }
    Ok(Some(DioAlign {
        mem: st.stx_dio_mem_align,
        offset: st.stx_dio_offset_align,
    }))
}

/// Set or clear O_DIRECT on an open descriptor (`fcntl(F_SETFL)`). A file
/// system without direct I/O refuses with EINVAL.
pub(crate) fn set_direct(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer argument; the descriptor is open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    if new == flags {
        return Ok(());
    }
    // SAFETY: F_SETFL takes an integer argument; the descriptor is open.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `true` when the descriptor has O_DIRECT set.
#[cfg(test)]
pub(crate) fn is_direct(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no pointer argument; the descriptor is open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_DIRECT != 0)
}

/// Pin the calling thread to one CPU. A CPU the set cannot name, or one the
/// process may not run on, is EINVAL.
pub(crate) fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let set = MaybeUninit::<libc::cpu_set_t>::zeroed();
    // SAFETY: an all-zero cpu_set_t is the empty set (it is a plain bit
    // array).
    let mut set = unsafe { set.assume_init() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu` is below the set's bit count (checked above), so CPU_SET
    // stays inside the array; then sched_setaffinity reads `size_of` bytes
    // from a live local. Pid 0 is the calling thread.
    let rc = unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `kernel.io_uring_disabled` (0 allowed, 1 only for a group, 2 disabled),
/// when the sysctl exists and is readable.
pub(crate) fn io_uring_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn blkgetsize64_has_the_kernels_encoding() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
    }

    #[test]
    fn regular_files_answer_statx_and_refuse_block_ioctls() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        // A regular file is not a block device.
        assert!(logical_block_size(f.as_fd()).is_err());
        assert!(block_device_size(f.as_fd()).is_err());
        // statx answers (Some or None), never an error, on a plain file.
        statx_dio_align(f.as_fd()).unwrap();
    }

    #[test]
    fn direct_flag_toggles() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("lode-os-direct-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert!(!is_direct(f.as_fd()).unwrap());
        if set_direct(f.as_fd(), true).is_ok() {
            assert!(is_direct(f.as_fd()).unwrap());
        }
        set_direct(f.as_fd(), false).unwrap();
        assert!(!is_direct(f.as_fd()).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn pinning_checks_the_cpu() {
        let err = pin_current_thread(1 << 20).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        // Pin a scratch thread (not the test harness's) to a CPU it may use.
        std::thread::spawn(|| pin_current_thread(0).unwrap())
            .join()
            .unwrap();
    }
}
