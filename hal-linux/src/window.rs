//! `Window`: where a device's medium lies inside a file.
//!
//! A model stored as an uncompressed asset inside an APK is the bytes
//! `offset .. offset + len` of the APK file, and zip aligns entries only to 4
//! bytes. Such a start cannot be expressed as a window *of a device*
//! ([`lode_kernel::flash::Window`], which needs a block-aligned start so that
//! aligned requests stay aligned): under buffered `pread` any file position
//! works, so the medium itself begins mid-block. Placing the medium in the
//! file is therefore the binding's business, and this is the one place both
//! Linux devices ([`FileFlash`](crate::FileFlash),
//! [`BlockFlash`](crate::BlockFlash)) and through them `AndroidFlash` do it:
//! check the window against the file once, at open, and turn device
//! offsets into file positions.
//!
//! A block-aligned part of an open device (a KV swap area after the image,
//! say) is [`lode_kernel::flash::Window`] over the device instead.

/// The byte range of the backing file that a device exposes as its whole
/// address space: device offset 0 is file offset `offset`.
///
/// An uncompressed asset inside an APK is such a window of the APK file; a
/// plain model file is the window covering all of it. The start need not be
/// block-aligned (zip entries are only 4-byte aligned): alignment rules apply
/// to device offsets, which is what the kernel plans in. That holds for
/// buffered `pread`; a direct-I/O device needs an aligned start and says so
/// when it is given an unaligned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// File offset of device byte 0.
    pub offset: u64,
    /// Length of the window in bytes.
    pub len: u64,
}

/// Why a window does not give a usable device over a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Misfit {
    /// The window reaches past the end of the file (or past `u64::MAX`).
    PastEnd { window: Window, file_len: u64 },
    /// The window holds no whole block.
    TooSmall { len: u64, block_size: u32 },
}

impl Window {
    /// The window of `len` bytes starting at file offset `offset`.
    pub const fn new(offset: u64, len: u64) -> Self {
        Window { offset, len }
    }

    /// One past the last file byte of the window, or `None` when that does
    /// not fit in a `u64`.
    pub const fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.len)
    }

    /// Check `window` (the whole file when `None`) against a file of
    /// `file_len` bytes read in `block_size` blocks, once, at open: the window
    /// and the device's capacity (its length rounded down to a block; the
    /// bytes past the last whole block are outside the device).
    pub(crate) fn place(
        window: Option<Window>,
        file_len: u64,
        block_size: u32,
    ) -> Result<(Window, u64), Misfit> {
        let window = window.unwrap_or(Window::new(0, file_len));
        match window.end() {
            Some(end) if end <= file_len => {}
            _ => return Err(Misfit::PastEnd { window, file_len }),
        }
        let block = u64::from(block_size.max(1));
        let capacity = window.len - window.len % block;
        if capacity == 0 {
            return Err(Misfit::TooSmall {
                len: window.len,
                block_size,
            });
        }
        Ok((window, capacity))
    }

    /// The file position of device offset `offset`; `None` past `u64::MAX`
    /// (admission keeps requests inside the capacity, so only a corrupt
    /// request gets there).
    pub(crate) fn position(&self, offset: u64) -> Option<u64> {
        self.offset.checked_add(offset)
    }
}

impl From<(u64, u64)> for Window {
    /// `(offset, len)`, the shape in which Android hands out asset windows.
    fn from((offset, len): (u64, u64)) -> Self {
        Window { offset, len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_end_does_not_overflow() {
        assert_eq!(Window::new(10, 5).end(), Some(15));
        assert_eq!(Window::new(u64::MAX, 1).end(), None);
        assert_eq!(Window::from((3, 4)), Window::new(3, 4));
    }

    #[test]
    fn placing_checks_the_file_and_rounds_the_capacity_down() {
        assert_eq!(
            Window::place(None, 3 * 4096 + 10, 4096),
            Ok((Window::new(0, 3 * 4096 + 10), 3 * 4096))
        );
        let w = Window::new(10, 2 * 4096 + 1);
        assert_eq!(Window::place(Some(w), 3 * 4096, 4096), Ok((w, 2 * 4096)));
        let past = Window::new(4096, 3 * 4096);
        assert_eq!(
            Window::place(Some(past), 3 * 4096, 4096),
            Err(Misfit::PastEnd {
                window: past,
                file_len: 3 * 4096
            })
        );
        let wrap = Window::new(u64::MAX, 2);
        assert!(matches!(
            Window::place(Some(wrap), 10, 4096),
            Err(Misfit::PastEnd { .. })
        ));
        assert_eq!(
            Window::place(Some(Window::new(10, 4095)), 8192, 4096),
            Err(Misfit::TooSmall {
                len: 4095,
                block_size: 4096
            })
        );
        assert_eq!(Window::new(10, 4096).position(5), Some(15));
        assert_eq!(Window::new(u64::MAX, 1).position(1), None);
    }
}
