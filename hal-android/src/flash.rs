//! `AndroidFlash`: a flash device over a descriptor the app hands in.

use std::fs::File;
use std::os::fd::OwnedFd;

use lode_hal_linux::file_flash::{
    FileFlash, FileFlashError, FileFlashOptions, FileFlashStats, Window,
};
use lode_kernel::arena::DramArena;
use lode_kernel::cost::CostModel;
use lode_kernel::flash::{Completion, ErrorType, FlashDevice, Geometry, ReadRequest};

/// A [`FlashDevice`] over a file descriptor owned by this process, or over
/// an uncompressed APK asset (a window of the APK's descriptor).
///
/// Every read, write and check is delegated to
/// [`FileFlash`](lode_hal_linux::FileFlash); this type owns the Android ways
/// of getting a file, and is where the I/O thread will live.
#[derive(Debug)]
pub struct AndroidFlash {
    inner: FileFlash,
}

impl AndroidFlash {
    /// Take ownership of `fd` (for example `ParcelFileDescriptor.detachFd()`)
    /// and expose `window` of it, `(offset, len)`, or the whole file when
    /// `None`. The descriptor is closed when the device is dropped.
    ///
    /// `opts.writable` has no effect here: writes work when the descriptor
    /// was opened for writing (mode `"rw"`), and are refused as
    /// [`Reason::ReadOnly`](lode_hal_linux::file_flash::Reason::ReadOnly)
    /// otherwise.
    pub fn from_fd(
        fd: OwnedFd,
        window: Option<(u64, u64)>,
        opts: FileFlashOptions,
    ) -> Result<Self, FileFlashError> {
        let inner = FileFlash::from_file(File::from(fd), window.map(Window::from), opts)?;
        Ok(AndroidFlash { inner })
    }

    /// An asset stored uncompressed in the APK: `fd`, `offset` and `len` are
    /// what `AAsset_openFileDescriptor64` (or Java's
    /// `AssetFileDescriptor`) returns. Compressed assets have no descriptor;
    /// list the model under `noCompress` in the build so it stays readable in
    /// place.
    pub fn from_asset(
        fd: OwnedFd,
        offset: u64,
        len: u64,
        opts: FileFlashOptions,
    ) -> Result<Self, FileFlashError> {
        Self::from_fd(fd, Some((offset, len)), opts)
    }

    /// The window of the file the device exposes.
    pub fn window(&self) -> Window {
        self.inner.window()
    }

    /// Bytes at the end of the window short of a whole block (unreadable).
    pub fn tail_bytes(&self) -> u64 {
        self.inner.tail_bytes()
    }

    /// Totals of the work done so far.
    pub fn stats(&self) -> FileFlashStats {
        self.inner.stats()
    }

    /// The underlying device.
    pub fn as_file_flash(&self) -> &FileFlash {
        &self.inner
    }
}

impl ErrorType for AndroidFlash {
    type Error = FileFlashError;
}

impl FlashDevice for AndroidFlash {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn cost_model(&self) -> CostModel {
        self.inner.cost_model()
    }

    fn submit<A: DramArena>(
        &mut self,
        arena: &mut A,
        reads: &[ReadRequest],
    ) -> Result<(), FileFlashError> {
        self.inner.submit(arena, reads)
    }

    fn complete<A: DramArena>(
        &mut self,
        arena: &mut A,
        done: &mut [Completion],
    ) -> Result<usize, FileFlashError> {
        self.inner.complete(arena, done)
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FileFlashError> {
        self.inner.write(offset, data)
    }

    fn sync(&mut self) -> Result<(), FileFlashError> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lode_hal_linux::file_flash::Reason;
    use lode_hal_linux::LockedArena;
    use lode_kernel::arena::SlotKind;
    use lode_kernel::flash::{Error as _, ErrorKind};
    use lode_kernel::rng::SplitMix64;
    use std::path::PathBuf;

    const BLOCK: usize = 4096;

    /// A temp file deleted on drop; its bytes are seeded noise.
    struct Temp {
        path: PathBuf,
        bytes: Vec<u8>,
    }

    impl Temp {
        fn new(tag: &str, len: usize) -> Temp {
            let mut rng = SplitMix64::new(len as u64 ^ 0xA5);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let path = std::env::temp_dir().join(format!(
                "lode-hal-android-{tag}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::write(&path, &bytes).unwrap();
            Temp { path, bytes }
        }

        fn fd(&self) -> OwnedFd {
            OwnedFd::from(File::open(&self.path).unwrap())
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn read(flash: &mut AndroidFlash, offset: u64, len: usize) -> Vec<u8> {
        let mut arena = LockedArena::new(len + BLOCK).unwrap();
        let dest = arena.alloc(len, BLOCK, SlotKind::IoBuffer).unwrap();
        let r = ReadRequest {
            tag: 0,
            offset,
            len: len as u32,
            dest,
            dest_offset: 0,
        };
        flash.read_blocking(&mut arena, &[r]).unwrap();
        arena.bytes(dest).unwrap().to_vec()
    }

    #[test]
    fn asset_window_reads_its_bytes() {
        // An asset at a 4-byte-aligned (zip-aligned, not block-aligned)
        // offset inside a larger "APK".
        let apk = Temp::new("asset", 20 * BLOCK);
        let (offset, len) = (1028u64, 9 * BLOCK as u64 + 300);
        let mut flash =
            AndroidFlash::from_asset(apk.fd(), offset, len, FileFlashOptions::default()).unwrap();
        assert_eq!(flash.window(), Window::new(offset, len));
        assert_eq!(flash.geometry().capacity, 9 * BLOCK as u64);
        assert_eq!(flash.tail_bytes(), 300);
        let got = read(&mut flash, 2 * BLOCK as u64, 3 * BLOCK);
        let start = offset as usize + 2 * BLOCK;
        assert_eq!(got, &apk.bytes[start..start + 3 * BLOCK]);
        assert_eq!(flash.stats().commands, 1);
        assert_eq!(flash.stats().bytes_read, 3 * BLOCK as u64);
    }

    #[test]
    fn whole_descriptor_by_default() {
        let file = Temp::new("whole", 5 * BLOCK);
        let mut flash =
            AndroidFlash::from_fd(file.fd(), None, FileFlashOptions::default()).unwrap();
        assert_eq!(flash.geometry().capacity, 5 * BLOCK as u64);
        assert_eq!(read(&mut flash, 0, 5 * BLOCK), file.bytes);
    }

    #[test]
    fn bad_windows_and_writes_are_refused() {
        let file = Temp::new("bad", 4 * BLOCK);
        let err = AndroidFlash::from_asset(
            file.fd(),
            100,
            4 * BLOCK as u64,
            FileFlashOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::OutOfRange);
        assert!(
            matches!(err.reason(), Reason::WindowPastEnd { .. }),
            "{err}"
        );
        // A read-only descriptor cannot be written.
        let mut flash =
            AndroidFlash::from_fd(file.fd(), None, FileFlashOptions::default()).unwrap();
        assert_eq!(
            flash.write(0, &[0; BLOCK]).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        // Requests are checked by the shared rules.
        let mut arena = LockedArena::new(1 << 16).unwrap();
        let dest = arena.alloc(BLOCK, BLOCK, SlotKind::IoBuffer).unwrap();
        let r = ReadRequest {
            tag: 1,
            offset: 100,
            len: BLOCK as u32,
            dest,
            dest_offset: 0,
        };
        assert_eq!(
            flash.submit(&mut arena, &[r]).unwrap_err().kind(),
            ErrorKind::Misaligned
        );
        assert_eq!(flash.in_flight(), 0);
    }

    #[test]
    fn writable_descriptor_round_trips() {
        let file = Temp::new("rw", 4 * BLOCK);
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file.path)
            .unwrap();
        let mut flash = AndroidFlash::from_fd(
            OwnedFd::from(rw),
            Some((BLOCK as u64, 2 * BLOCK as u64)),
            FileFlashOptions::default(),
        )
        .unwrap();
        flash.write(BLOCK as u64, &[0x5A; BLOCK]).unwrap();
        flash.sync().unwrap();
        assert_eq!(read(&mut flash, BLOCK as u64, BLOCK), vec![0x5A; BLOCK]);
        let on_disk = std::fs::read(&file.path).unwrap();
        assert_eq!(&on_disk[2 * BLOCK..3 * BLOCK], &[0x5A; BLOCK][..]);
        assert_eq!(&on_disk[..2 * BLOCK], &file.bytes[..2 * BLOCK]);
    }
}
