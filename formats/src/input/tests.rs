use super::*;
use std::format;
use std::string::ToString;
use std::time::{Duration, Instant};

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lode-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The reason `path` was refused, and the message.
fn refused(path: &Path, limit: Limit) -> (InputReason, std::string::String) {
    let e = read_file(path, limit).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    (e.reason, msg)
}

#[test]
fn a_regular_file_is_read_whole() {
    let dir = scratch("regular");
    let p = dir.join("f");
    std::fs::write(&p, b"hello").unwrap();
    let input = Input::open(&p).unwrap();
    assert_eq!((input.kind(), input.len()), (FileKind::Regular, 5));
    let mut head = [0u8; 8];
    assert_eq!(input.read_head(&mut head).unwrap(), 5);
    assert_eq!(&head[..5], b"hello");
    assert_eq!(input.read_all(Limit::new("test", 5)).unwrap(), b"hello");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_fifo_without_a_writer_is_refused_at_once() {
    let dir = scratch("fifo");
    let p = dir.join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&p).status();
    if !made.is_ok_and(|s| s.success()) {
        std::eprintln!("skipped: mkfifo is not available");
        return;
    }
    let t0 = Instant::now();
    let (reason, msg) = refused(&p, Limit::whole("model"));
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t0.elapsed()
    );
    assert!(matches!(reason, InputReason::NotReadable(FileKind::Fifo)));
    assert!(msg.ends_with("is a FIFO (named pipe), not a regular file or a block device"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_is_refused_by_name() {
    let dir = scratch("dir");
    let (reason, msg) = refused(&dir, Limit::whole("model"));
    assert!(matches!(
        reason,
        InputReason::NotReadable(FileKind::Directory)
    ));
    assert!(msg.contains("is a directory"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn character_devices_are_never_read() {
    for dev in ["/dev/zero", "/dev/null", "/dev/urandom"] {
        let p = Path::new(dev);
        if !p.exists() {
            continue;
        }
        let (reason, msg) = refused(p, Limit::whole("model"));
        assert!(
            matches!(reason, InputReason::NotReadable(FileKind::CharDevice)),
            "{msg}"
        );
        assert!(msg.contains("is a character device"), "{msg}");
    }
}

#[test]
fn a_socket_is_named_as_one() {
    let dir = scratch("socket");
    let p = dir.join("sock");
    let Ok(_listener) = std::os::unix::net::UnixListener::bind(&p) else {
        return;
    };
    let (reason, msg) = refused(&p, Limit::whole("model"));
    assert!(
        matches!(reason, InputReason::NotReadable(FileKind::Socket)),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_over_its_limit_is_refused_before_it_is_read() {
    let dir = scratch("large");
    let p = dir.join("big.trace");
    // A sparse file one byte over the trace limit: no disk is used, and a
    // reader that tried to read it would allocate a GiB.
    let f = File::create(&p).unwrap();
    f.set_len(TRACE_LIMIT.max + 1).unwrap();
    drop(f);
    let (reason, msg) = refused(&p, TRACE_LIMIT);
    assert!(matches!(
        reason,
        InputReason::TooLarge { len, .. } if len == TRACE_LIMIT.max + 1
    ));
    assert!(
        msg.ends_with("is 1073741825 bytes; a trace is at most 1073741824 bytes"),
        "{msg}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_keeps_its_cause() {
    let p = Path::new("/nonexistent/lode-input");
    let (reason, msg) = refused(p, Limit::whole("model"));
    assert!(matches!(reason, InputReason::Open(ref e) if e.kind() == io::ErrorKind::NotFound));
    assert!(msg.contains("No such file"), "{msg}");
}

#[test]
fn a_file_that_shrinks_while_open_is_an_error() {
    let dir = scratch("shrink");
    let p = dir.join("f");
    std::fs::write(&p, [7u8; 4096]).unwrap();
    let input = Input::open(&p).unwrap();
    std::fs::write(&p, [7u8; 100]).unwrap();
    let e = input.read_all(Limit::whole("test")).unwrap_err();
    assert!(matches!(
        e.reason(),
        InputReason::Shrank {
            expected: 4096,
            got: 100
        }
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
