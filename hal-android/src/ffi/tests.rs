//! The C interface exercised from Rust the way C would call it, plus checks
//! that `include/lode.h` declares exactly these functions and compiles with
//! the same struct sizes.

use super::*;
use crate::flash::tests::Temp;
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::ptr::{null, null_mut};

const BLOCK: usize = 4096;

fn open(file: &Temp, offset: u64, length: u64, opts: Option<&LodeOptions>) -> Result<u64, i32> {
    let f = File::open(&file.path).unwrap();
    let mut h = 0u64;
    let p = opts.map_or(null(), |o| o as *const LodeOptions);
    // SAFETY: valid pointers to live locals.
    let rc = unsafe { lode_open_fd(f.as_raw_fd(), offset, length, p, &mut h) };
    // The caller may close its descriptor at once: lode has its own.
    drop(f);
    if rc == LODE_OK {
        assert_ne!(h, 0);
        Ok(h)
    } else {
        Err(rc)
    }
}

fn read(h: u64, offset: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` has `len` writable bytes.
    let rc = unsafe { lode_read(h, offset, buf.as_mut_ptr().cast(), len) };
    if rc == LODE_OK {
        Ok(buf)
    } else {
        Err(rc)
    }
}

#[test]
fn open_read_query_close() {
    let file = Temp::new("ffi", 40 * BLOCK);
    let h = open(&file, 0, 0, None).unwrap();
    // Larger than one staging chunk (512 KiB): read in pieces.
    let len = 36 * BLOCK;
    assert_eq!(
        read(h, 2 * BLOCK as u64, len).unwrap(),
        &file.bytes[2 * BLOCK..2 * BLOCK + len]
    );
    let mut g = LodeGeometry::default();
    // SAFETY: valid pointer to a local.
    assert_eq!(unsafe { lode_geometry(h, &mut g) }, LODE_OK);
    assert_eq!(g.block_size, 4096);
    assert_eq!(g.capacity, 40 * BLOCK as u64);
    assert_eq!(g.max_transfer, 512 << 10);
    assert_eq!(g.queue_depth, 32);
    let mut m = LodeCostModel::default();
    // SAFETY: as above.
    assert_eq!(unsafe { lode_cost_model(h, &mut m) }, LODE_OK);
    assert_eq!(m.command_ns, UFS31_UNCALIBRATED.command_ns);
    let new = LodeCostModel {
        command_ns: 30_000,
        queue_depth: 3,
        reserved: 0,
        bytes_per_sec: 1_000_000_000,
    };
    // SAFETY: as above.
    assert_eq!(unsafe { lode_set_cost_model(h, &new) }, LODE_OK);
    // SAFETY: as above.
    assert_eq!(unsafe { lode_cost_model(h, &mut m) }, LODE_OK);
    assert_eq!(m, new);
    let bad = LodeCostModel {
        bytes_per_sec: 0,
        ..new
    };
    // SAFETY: as above.
    let rc = unsafe { lode_set_cost_model(h, &bad) };
    assert_eq!(rc, LODE_ERR_INVALID_ARGUMENT);
    assert_eq!(lode_close(h), LODE_OK);
    // Closed: every call says so, none crashes.
    assert_eq!(lode_close(h), LODE_ERR_BAD_HANDLE);
    assert_eq!(read(h, 0, BLOCK), Err(LODE_ERR_BAD_HANDLE));
    // SAFETY: as above.
    assert_eq!(unsafe { lode_geometry(h, &mut g) }, LODE_ERR_BAD_HANDLE);
    assert_eq!(lode_close(0), LODE_ERR_BAD_HANDLE);
    assert_eq!(lode_close(u64::MAX), LODE_ERR_BAD_HANDLE);
}

#[test]
fn asset_windows_and_their_limits() {
    let apk = Temp::new("ffi-asset", 20 * BLOCK);
    let h = open(&apk, 1028, 9 * BLOCK as u64 + 300, None).unwrap();
    assert_eq!(
        read(h, BLOCK as u64, 2 * BLOCK).unwrap(),
        &apk.bytes[1028 + BLOCK..1028 + 3 * BLOCK]
    );
    assert_eq!(read(h, 100, BLOCK), Err(LODE_ERR_MISALIGNED));
    assert_eq!(read(h, 0, 100), Err(LODE_ERR_MISALIGNED));
    assert_eq!(
        read(h, 8 * BLOCK as u64, 2 * BLOCK),
        Err(LODE_ERR_OUT_OF_RANGE)
    );
    assert_eq!(read(h, u64::MAX - 4095, BLOCK), Err(LODE_ERR_OUT_OF_RANGE));
    assert_eq!(read(h, 0, 0), Ok(vec![]));
    // SAFETY: a NULL buffer with a length is refused before any access.
    assert_eq!(unsafe { lode_read(h, 0, null_mut(), BLOCK) }, LODE_ERR_NULL);
    // SAFETY: NULL with length 0 reads nothing.
    assert_eq!(unsafe { lode_read(h, 0, null_mut(), 0) }, LODE_OK);
    assert_eq!(lode_close(h), LODE_OK);
    // A window past the end, and an offset past the end with length 0.
    assert_eq!(
        open(&apk, 100, 20 * BLOCK as u64, None),
        Err(LODE_ERR_OUT_OF_RANGE)
    );
    assert_eq!(
        open(&apk, 21 * BLOCK as u64, 0, None),
        Err(LODE_ERR_OUT_OF_RANGE)
    );
    // The rest of the file from an offset.
    let h = open(&apk, 4 * BLOCK as u64, 0, None).unwrap();
    assert_eq!(
        read(h, 15 * BLOCK as u64, BLOCK).unwrap(),
        &apk.bytes[19 * BLOCK..]
    );
    assert_eq!(lode_close(h), LODE_OK);
}

#[test]
fn bad_arguments_are_codes() {
    let file = Temp::new("ffi-bad", 8 * BLOCK);
    let f = File::open(&file.path).unwrap();
    // SAFETY: NULL out is checked first.
    let rc = unsafe { lode_open_fd(f.as_raw_fd(), 0, 0, null(), null_mut()) };
    assert_eq!(rc, LODE_ERR_NULL);
    let mut h = 0u64;
    // SAFETY: valid pointers.
    let rc = unsafe { lode_open_fd(-1, 0, 0, null(), &mut h) };
    assert_eq!(rc, LODE_ERR_INVALID_ARGUMENT);
    // SAFETY: as above; a closed descriptor number is EBADF inside.
    let rc = unsafe { lode_open_fd(987_654, 0, 0, null(), &mut h) };
    assert_eq!(rc, LODE_ERR_INVALID_ARGUMENT);
    let mut o = LodeOptions::defaults();
    // SAFETY: valid pointer.
    assert_eq!(unsafe { lode_options_default(&mut o) }, LODE_OK);
    assert_eq!(o, LodeOptions::defaults());
    // SAFETY: NULL is refused.
    assert_eq!(unsafe { lode_options_default(null_mut()) }, LODE_ERR_NULL);
    let cases = [
        LodeOptions { size: 8, ..o },
        LodeOptions { flags: 4, ..o },
        LodeOptions { reserved: 1, ..o },
        LodeOptions {
            queue_depth: 0,
            ..o
        },
        LodeOptions {
            queue_depth: 70_000,
            ..o
        },
        LodeOptions {
            max_transfer: 100,
            ..o
        },
        LodeOptions { io_cpu: -2, ..o },
        LodeOptions {
            io_cpu: 1 << 20,
            ..o
        },
        LodeOptions {
            budget_bytes: 10,
            budget_floor: 11,
            ..o
        },
        LodeOptions {
            cost: LodeCostModel {
                command_ns: 1,
                ..LodeCostModel::default()
            },
            ..o
        },
    ];
    for c in cases {
        assert_eq!(
            open(&file, 0, 0, Some(&c)),
            Err(LODE_ERR_INVALID_ARGUMENT),
            "{c:?}"
        );
    }
    // A descriptor that is not a file.
    let (r, _w) = std::io::pipe().unwrap();
    // SAFETY: valid pointers.
    let rc = unsafe { lode_open_fd(r.as_raw_fd(), 0, 1, null(), &mut h) };
    assert_eq!(rc, LODE_ERR_INVALID_ARGUMENT);
    // Misaligned out-pointers are refused, not written.
    let mut words = [0u64; 3];
    let odd = (words.as_mut_ptr() as usize + 1) as *mut LodeGeometry;
    let h = open(&file, 0, 0, None).unwrap();
    // SAFETY: the misaligned pointer is checked before any write.
    assert_eq!(unsafe { lode_geometry(h, odd) }, LODE_ERR_INVALID_ARGUMENT);
    assert_eq!(words, [0; 3]);
    // SAFETY: NULL is refused.
    assert_eq!(unsafe { lode_geometry(h, null_mut()) }, LODE_ERR_NULL);
    // SAFETY: as above.
    assert_eq!(unsafe { lode_cost_model(h, null_mut()) }, LODE_ERR_NULL);
    // SAFETY: as above.
    assert_eq!(unsafe { lode_set_cost_model(h, null()) }, LODE_ERR_NULL);
    assert_eq!(lode_close(h), LODE_OK);
}

#[test]
fn options_pin_the_thread_and_open_direct() {
    let file = Temp::new("ffi-opts", 16 * BLOCK);
    let o = LodeOptions {
        io_cpu: 0,
        flags: LODE_OPEN_DIRECT | LODE_OPEN_DSYNC,
        queue_depth: 8,
        max_transfer: 64 << 10,
        bounce_bytes: 1 << 20,
        budget_bytes: 1000,
        budget_floor: 100,
        ..LodeOptions::defaults()
    };
    let h = open(&file, 0, 0, Some(&o)).unwrap();
    let mut g = LodeGeometry::default();
    // SAFETY: valid pointer.
    assert_eq!(unsafe { lode_geometry(h, &mut g) }, LODE_OK);
    assert_eq!((g.queue_depth, g.max_transfer), (8, 64 << 10));
    assert_eq!(read(h, 0, 16 * BLOCK).unwrap(), file.bytes);
    let (mut allowed, mut epoch) = (0u64, 0u64);
    // SAFETY: valid pointers.
    assert_eq!(unsafe { lode_budget(h, &mut allowed, &mut epoch) }, LODE_OK);
    assert_eq!((allowed, epoch), (1000, 0));
    assert_eq!(lode_close(h), LODE_OK);
}

#[test]
fn trim_levels_shrink_the_budget() {
    let file = Temp::new("ffi-trim", 4 * BLOCK);
    let o = LodeOptions {
        budget_bytes: 1000 << 20,
        budget_floor: 200 << 20,
        ..LodeOptions::defaults()
    };
    let h = open(&file, 0, 0, Some(&o)).unwrap();
    let mut allowed = 0u64;
    // SAFETY: valid pointers throughout.
    unsafe {
        assert_eq!(lode_trim(h, 10, &mut allowed), LODE_OK);
        assert_eq!(allowed, 600 << 20);
        assert_eq!(lode_trim(h, 20, &mut allowed), LODE_OK);
        assert_eq!(allowed, 600 << 20);
        assert_eq!(lode_trim(h, 80, null_mut()), LODE_OK);
        let mut epoch = 0u64;
        assert_eq!(lode_budget(h, &mut allowed, &mut epoch), LODE_OK);
        assert_eq!((allowed, epoch), (200 << 20, 2));
        assert_eq!(lode_trim(h, -1, &mut allowed), LODE_ERR_INVALID_ARGUMENT);
        assert_eq!(lode_trim(h, 0, &mut allowed), LODE_OK);
        assert_eq!(allowed, 1000 << 20);
        assert_eq!(lode_budget(h, null_mut(), null_mut()), LODE_OK);
        assert_eq!(lode_trim(h + 1000, 10, &mut allowed), LODE_ERR_BAD_HANDLE);
    }
    assert_eq!(lode_close(h), LODE_OK);
}

#[test]
fn handles_work_across_threads_and_close_waits_for_readers() {
    let file = Temp::new("ffi-threads", 64 * BLOCK);
    let h = open(&file, 0, 0, None).unwrap();
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let expect = file.bytes[i * 8 * BLOCK..(i + 1) * 8 * BLOCK].to_vec();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    match read(h, (i * 8 * BLOCK) as u64, 8 * BLOCK) {
                        Ok(got) => assert_eq!(got, expect),
                        // Closed by the main thread meanwhile: a code, not a crash.
                        Err(code) => {
                            assert_eq!(code, LODE_ERR_BAD_HANDLE);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    // SAFETY: valid pointer.
    assert_eq!(unsafe { lode_trim(h, 40, null_mut()) }, LODE_OK);
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(lode_close(h), LODE_OK);
    for r in readers {
        r.join().unwrap();
    }
}

#[test]
fn every_code_has_a_description() {
    for code in [
        LODE_OK,
        LODE_ERR_NULL,
        LODE_ERR_BAD_HANDLE,
        LODE_ERR_INVALID_ARGUMENT,
        LODE_ERR_MISALIGNED,
        LODE_ERR_OUT_OF_RANGE,
        LODE_ERR_TOO_LARGE,
        LODE_ERR_IO,
        LODE_ERR_UNSUPPORTED,
        LODE_ERR_NO_MEMORY,
        LODE_ERR_BUSY,
        LODE_ERR_PANIC,
        LODE_ERR_OTHER,
    ] {
        // SAFETY: lode_strerror returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(lode_strerror(code)) };
        assert!(!text.to_bytes().is_empty());
        assert_ne!(text.to_bytes(), b"unknown error code", "{code}");
    }
    // SAFETY: as above.
    let unknown = unsafe { CStr::from_ptr(lode_strerror(12345)) };
    assert_eq!(unknown.to_bytes(), b"unknown error code");
    assert_eq!(guard(|| panic!("caught")), LODE_ERR_PANIC);
}

const HEADER: &str = include_str!("../../include/lode.h");
const SOURCE: &str = include_str!("../ffi.rs");

/// Names of `lode_*` functions declared in the header or defined here.
fn names(text: &str, before: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .match_indices(before)
        .filter_map(|(i, _)| {
            let rest = &text[i + before.len()..];
            let end = rest.find('(')?;
            let name = rest[..end].trim();
            (name.starts_with("lode_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| name.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn the_header_declares_exactly_the_exported_functions() {
    let mut declared: Vec<String> = names(HEADER, "int32_t ");
    declared.extend(names(HEADER, "const char *"));
    declared.sort();
    let mut defined = names(SOURCE, "extern \"C\" fn ");
    defined.sort();
    assert_eq!(declared, defined);
    assert_eq!(defined.len(), 10);
    // The error codes agree.
    for (name, value) in [
        ("LODE_ERR_NULL", LODE_ERR_NULL),
        ("LODE_ERR_BAD_HANDLE", LODE_ERR_BAD_HANDLE),
        ("LODE_ERR_INVALID_ARGUMENT", LODE_ERR_INVALID_ARGUMENT),
        ("LODE_ERR_MISALIGNED", LODE_ERR_MISALIGNED),
        ("LODE_ERR_OUT_OF_RANGE", LODE_ERR_OUT_OF_RANGE),
        ("LODE_ERR_TOO_LARGE", LODE_ERR_TOO_LARGE),
        ("LODE_ERR_IO", LODE_ERR_IO),
        ("LODE_ERR_UNSUPPORTED", LODE_ERR_UNSUPPORTED),
        ("LODE_ERR_NO_MEMORY", LODE_ERR_NO_MEMORY),
        ("LODE_ERR_BUSY", LODE_ERR_BUSY),
        ("LODE_ERR_PANIC", LODE_ERR_PANIC),
        ("LODE_ERR_OTHER", LODE_ERR_OTHER),
    ] {
        let line = format!("#define {name} ({value})");
        assert!(HEADER.contains(&line), "{line}");
    }
}

/// Compile the header with the system C compiler, asserting the struct
/// sizes and field offsets Rust uses. Skipped (with a note) without `cc`.
#[test]
fn the_header_compiles_and_matches_the_struct_layouts() {
    use std::mem::{offset_of, size_of};
    let dir = std::env::temp_dir().join(format!("lode-h-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = format!(
        "#include \"{}\"\n\
         _Static_assert(sizeof(struct lode_options) == {}, \"options\");\n\
         _Static_assert(sizeof(struct lode_geometry) == {}, \"geometry\");\n\
         _Static_assert(sizeof(struct lode_cost_model) == {}, \"cost\");\n\
         _Static_assert(offsetof(struct lode_options, budget_bytes) == {}, \"budget\");\n\
         _Static_assert(offsetof(struct lode_options, cost) == {}, \"cost field\");\n\
         _Static_assert(offsetof(struct lode_geometry, capacity) == {}, \"capacity\");\n\
         _Static_assert(offsetof(struct lode_cost_model, bytes_per_sec) == {}, \"bps\");\n\
         int main(void) {{ return 0; }}\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/include/lode.h"),
        size_of::<LodeOptions>(),
        size_of::<LodeGeometry>(),
        size_of::<LodeCostModel>(),
        offset_of!(LodeOptions, budget_bytes),
        offset_of!(LodeOptions, cost),
        offset_of!(LodeGeometry, capacity),
        offset_of!(LodeCostModel, bytes_per_sec),
    );
    let src = dir.join("layout.c");
    std::fs::write(&src, c).unwrap();
    let run = std::process::Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-include",
            "stddef.h",
        ])
        .arg(&src)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match run {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("no C compiler ({e}): header layout check skipped"),
    }
}
