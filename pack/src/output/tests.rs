use super::*;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lode-output-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn success_replaces_and_failure_leaves_the_old_file() {
    let dir = scratch("replace");
    let path = dir.join("out.bin");
    write_atomically(&path, &[], |w| Ok(w.write_all(b"first")?)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"first");
    let err = write_atomically(&path, &[], |w| {
        w.write_all(b"half of it")?;
        Err::<(), Box<dyn Error>>("failed midway".into())
    });
    assert_eq!(err.unwrap_err().to_string(), "failed midway");
    assert_eq!(
        fs::read(&path).unwrap(),
        b"first",
        "the old file is untouched"
    );
    let fresh = dir.join("never.bin");
    assert!(write_atomically(&fresh, &[], |_| Err::<(), Box<dyn Error>>("no".into())).is_err());
    assert_eq!(names(&dir), ["out.bin"], "no temporary is left");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_names_the_file_and_keeps_its_cause() {
    let dir = scratch("cause");
    let path = dir.join("out.bin");
    let e = write_atomically(&path, &[], |_| {
        Err::<(), Box<dyn Error>>(io::Error::from_raw_os_error(28).into())
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with(&format!(
        "cannot write {}: writing the temporary",
        path.display()
    )));
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(names(&dir).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_permissions_of_the_replaced_file_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("mode");
    let path = dir.join("out.bin");
    fs::write(&path, b"old").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    write_atomically(&path, &[], |w| Ok(w.write_all(b"new")?)).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn targets_that_are_not_regular_files_are_refused() {
    let dir = scratch("kinds");
    // Only checked, never written: as root a broken check would replace
    // the device node.
    let e = Output::check(Path::new("/dev/null"), &[]).unwrap_err();
    assert!(matches!(
        e,
        OutputError::NotRegular {
            kind: FileKind::CharDevice,
            ..
        }
    ));
    assert_eq!(
        e.to_string(),
        "cannot write /dev/null: it is a character device; an output must be a regular file \
         or a new path"
    );
    let sub = dir.join("sub");
    fs::create_dir(&sub).unwrap();
    let e = write_atomically(&sub, &[], |w| Ok(w.write_all(b"x")?)).unwrap_err();
    assert!(e.to_string().contains("it is a directory"), "{e}");
    assert!(sub.is_dir());
    let fifo = dir.join("pipe");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        let e = write_atomically(&fifo, &[], |w| Ok(w.write_all(b"x")?)).unwrap_err();
        assert!(e.to_string().contains("it is a FIFO (named pipe)"), "{e}");
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    }
    // A link to a device is the device.
    let link = dir.join("null-link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    assert!(matches!(
        Output::check(&link, &[]),
        Err(OutputError::NotRegular { .. })
    ));
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nothing"), &dangling).unwrap();
    let e = Output::check(&dangling, &[]).unwrap_err();
    assert!(
        e.to_string().contains("symbolic link that names no file"),
        "{e}"
    );
    let e = Output::check(&dir.join("no/such/dir/out"), &[]).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_output_that_is_an_input_is_refused() {
    let dir = scratch("input");
    let model = dir.join("m.gguf");
    fs::write(&model, b"the model").unwrap();
    let other = dir.join("trace");
    let missing = dir.join("missing");
    let e = Output::check(&model, &[&missing, &other, &model]).unwrap_err();
    assert!(matches!(e, OutputError::IsInput { .. }));
    assert!(
        e.to_string().contains("also an input of this command"),
        "{e}"
    );
    // Another name of the same file: a hard link, a symbolic link, a path
    // spelled differently.
    let hard = dir.join("hard");
    fs::hard_link(&model, &hard).unwrap();
    let soft = dir.join("soft");
    std::os::unix::fs::symlink(&model, &soft).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    let dotted = dir.join("sub/../m.gguf");
    for alias in [&hard, &soft, &dotted] {
        let e = Output::check(alias, &[&model]).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("same file as the input {}", model.display())),
            "{e}"
        );
    }
    assert_eq!(fs::read(&model).unwrap(), b"the model");
    // A symbolic link to a file that is no input is followed: the file is
    // replaced and the link kept.
    let real = dir.join("real.out");
    fs::write(&real, b"old").unwrap();
    let link = dir.join("link.out");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    write_atomically(&link, &[&model], |w| Ok(w.write_all(b"new")?)).unwrap();
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(&real).unwrap(), b"new");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crashed_writers_temporary_is_removed_and_the_old_file_kept() {
    let dir = scratch("stale");
    let path = dir.join("out.lode");
    fs::write(&path, b"old image").unwrap();
    // What `kill -9` mid-write leaves: a temporary of a pid that is gone.
    let stale = temp_path(&path, dead_pid());
    fs::write(&stale, b"half an image").unwrap();
    // A temporary of a live process (pid 1), and of another name, stay.
    let live = temp_path(&path, 1);
    fs::write(&live, b"in progress").unwrap();
    let other = temp_path(&dir.join("other.lode"), dead_pid());
    fs::write(&other, b"not ours").unwrap();
    let out = Output::check(&path, &[]).unwrap();
    assert_eq!(out.removed(), std::slice::from_ref(&stale));
    assert!(!stale.exists() && live.exists() && other.exists());
    assert_eq!(fs::read(&path).unwrap(), b"old image");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn temporary_names_are_recognised_exactly() {
    let t = Path::new("/x/out.lode");
    assert_eq!(temp_pid(OsStr::new(".out.lode.123.partial"), t), Some(123));
    for not in [
        "out.lode",
        ".out.lode.partial",
        ".out.lode..partial",
        ".out.lode.12a.partial",
        ".out.lode.123.partial.x",
        ".out.lodex.123.partial",
        ".other.123.partial",
    ] {
        assert_eq!(temp_pid(OsStr::new(not), t), None, "{not}");
    }
}

/// Environment variable that turns [`child_writer`] into a slow writer.
const CHILD_ENV: &str = "LODE_OUTPUT_TEST_CHILD";
/// Chunks the child writes, one a millisecond.
const CHILD_CHUNKS: usize = 100;
const CHUNK: usize = 4096;

/// Not a test of its own: run by [`killed_at_many_points`] as a child
/// process that writes its target slowly, to be killed mid-way.
#[test]
fn child_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    write_atomically(Path::new(&path), &[], |w| {
        for i in 0..CHILD_CHUNKS {
            w.write_all(&[(i % 251) as u8; CHUNK])?;
            w.flush()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })
    .unwrap();
}

/// Kills a writer (SIGKILL) at many points, from before it starts to after
/// it finishes: the target is always whole, old or new, never partial; the
/// next check removes what the killed writer left, and a write after it
/// succeeds.
#[test]
fn killed_at_many_points() {
    let dir = scratch("killed");
    let path = dir.join("out.bin");
    let new: Vec<u8> = (0..CHILD_CHUNKS)
        .flat_map(|i| [(i % 251) as u8; CHUNK])
        .collect();
    let exe = std::env::current_exe().unwrap();
    let mut outcomes = [0usize; 2];
    let mut cleaned = 0;
    let points = [0u64, 1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, 400];
    // The last point lets the writer finish.
    for delay in points.map(Some).into_iter().chain([None]) {
        let delay_ms = delay.unwrap_or(u64::MAX);
        fs::write(&path, b"old").unwrap();
        let mut child = Command::new(&exe)
            .args(["--exact", "output::tests::child_writer", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if let Some(ms) = delay {
            std::thread::sleep(Duration::from_millis(ms));
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        if delay.is_none() {
            assert!(status.success(), "the writer left alone failed");
        }
        let now = fs::read(&path).unwrap();
        assert!(
            now == b"old" || now == new,
            "killed after {delay_ms} ms: the target has {} bytes, neither old nor new",
            now.len()
        );
        outcomes[usize::from(now == new)] += 1;
        cleaned += Output::check(&path, &[]).unwrap().removed().len();
        assert_eq!(names(&dir), ["out.bin"], "killed after {delay_ms} ms");
        write_atomically(&path, &[], |w| Ok(w.write_all(b"after")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"after");
    }
    // Killed before it started, the writer left the old file; left alone,
    // the new one.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
    // How many kills fell mid-write (depends on the machine's speed).
    eprintln!(
        "old file kept {} times, new file {} times; {cleaned} temporaries of killed writers \
         removed",
        outcomes[0], outcomes[1]
    );
    fs::remove_dir_all(&dir).unwrap();
}
