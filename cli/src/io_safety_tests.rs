//! Every command's file inputs and outputs, end to end through the command
//! line: what is not a file is refused by name at once (never read, never
//! waited on), an input over its format's limit is refused unread, and an
//! output that is not a regular file or is one of the command's inputs is
//! refused before any work, leaving every file as it was.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::{dispatch, Cli};

/// Runs `lode args...` as `main` does; the error's message on failure.
fn lode(args: &[&str]) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("lode").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    dispatch(&cli.cmd, &mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The error of `lode args...`, which must come within a second.
fn refused(args: &[&str]) -> String {
    let t0 = Instant::now();
    let result = lode(args);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "{args:?} took {took:?}");
    match result {
        Ok(out) => panic!("{args:?} succeeded: {out}"),
        Err(e) => e,
    }
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lode-io-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A FIFO with no writer in `dir`, when `mkfifo` can make one.
fn fifo(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("pipe");
    std::process::Command::new("mkfifo")
        .arg(&p)
        .status()
        .is_ok_and(|s| s.success())
        .then_some(p)
}

/// A sparse file of `len` bytes (no disk used).
fn sparse(path: &Path, len: u64) -> String {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
    s(path)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn inputs_that_are_not_files_are_refused_at_once_by_name() {
    let dir = scratch("kinds");
    let out = s(&dir.join("out"));
    let absent = s(&dir.join("absent.gguf"));
    let mut kinds = vec![(s(&dir), "is a directory")];
    if let Some(p) = fifo(&dir) {
        kinds.push((s(&p), "is a FIFO (named pipe)"));
    }
    if Path::new("/dev/zero").exists() {
        kinds.push(("/dev/zero".into(), "is a character device"));
    }
    for (x, says) in &kinds {
        let x = x.as_str();
        let commands: Vec<Vec<&str>> = vec![
            vec!["run", "-m", x, "-p", "hi", "-n", "1"],
            vec!["chat", "-m", x],
            vec!["pack", "-m", x, "-o", &out],
            vec!["pack", "-m", &absent, "-o", &out, "--cost-model", x],
            vec!["pack", "-m", &absent, "-o", &out, "--trace", x],
            vec!["pack", "-m", &absent, "-o", &out, "--check-text", x],
            vec![
                "profile",
                "-m",
                &absent,
                "--text",
                x,
                "--sparsity",
                "0.5",
                "-o",
                &out,
            ],
            vec!["trace", "info", x],
            vec!["inspect", x],
            vec!["image", "synth", "-o", &out, "--trace", x],
            vec!["bench", "io", "--json", "--trace", x],
            vec!["calibrate", x, "--seconds", "0.1"],
        ];
        for args in commands {
            let e = refused(&args);
            assert!(e.contains(x) && e.contains(says), "{args:?}: {e}");
        }
    }
    assert!(!dir.join("out").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inputs_over_their_limit_are_refused_unread() {
    let dir = scratch("large");
    let out = s(&dir.join("out"));
    let absent = s(&dir.join("absent.gguf"));
    let trace = sparse(&dir.join("big.trace"), (1 << 30) + 1);
    let json = sparse(&dir.join("big.json"), (1 << 20) + 1);
    let text = sparse(&dir.join("big.txt"), (64 << 20) + 1);
    for (args, says) in [
        (
            vec!["trace", "info", &trace],
            "is 1073741825 bytes; a trace is at most 1073741824 bytes",
        ),
        (
            vec!["bench", "io", "--json", "--trace", &trace],
            "a trace is at most",
        ),
        (
            vec!["pack", "-m", &absent, "-o", &out, "--trace", &trace],
            "a trace is at most",
        ),
        (
            vec!["pack", "-m", &absent, "-o", &out, "--cost-model", &json],
            "is 1048577 bytes; a calibration JSON is at most 1048576 bytes",
        ),
        (
            vec!["pack", "-m", &absent, "-o", &out, "--check-text", &text],
            "a text is at most 67108864 bytes",
        ),
        (
            vec![
                "profile",
                "-m",
                &absent,
                "--text",
                &text,
                "--sparsity",
                "0.5",
                "-o",
                &out,
            ],
            "a text is at most 67108864 bytes",
        ),
    ] {
        let e = refused(&args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_that_are_inputs_or_not_files_are_refused_before_any_work() {
    let dir = scratch("outputs");
    let model = dir.join("m.gguf");
    std::fs::write(&model, b"a model, to be kept").unwrap();
    let m = s(&model);
    let trace = dir.join("t.trace");
    std::fs::write(&trace, b"a trace, to be kept").unwrap();
    let t = s(&trace);
    let text = dir.join("t.txt");
    std::fs::write(&text, b"a text, to be kept").unwrap();
    let link = dir.join("link");
    std::os::unix::fs::symlink(&model, &link).unwrap();
    let hard = dir.join("hard");
    std::fs::hard_link(&model, &hard).unwrap();
    let sub = s(&dir.join("sub"));
    std::fs::create_dir(&sub).unwrap();
    let is_input = "also an input of this command";
    let same_file = format!("same file as the input {m}");
    let mut cases: Vec<(Vec<String>, String)> = vec![
        (vec!["pack", "-m", &m, "-o", &m], is_input.into()),
        (vec!["pack", "-m", &m, "-o", &s(&link)], same_file.clone()),
        (vec!["pack", "-m", &m, "-o", &s(&hard)], same_file.clone()),
        (
            vec!["pack", "-m", &m, "-o", &t, "--trace", &t],
            is_input.into(),
        ),
        (
            vec![
                "profile",
                "-m",
                &m,
                "--text",
                &s(&text),
                "--sparsity",
                "0.5",
                "-o",
                &s(&text),
            ],
            is_input.into(),
        ),
        (
            vec!["image", "synth", "-o", &t, "--trace", &t],
            is_input.into(),
        ),
        (
            vec!["bench", "io", "--json", "--trace", &t, "--plot", &t],
            is_input.into(),
        ),
        (
            vec!["calibrate", &m, "--seconds", "0.1", "--json", &m],
            is_input.into(),
        ),
        (
            vec!["trace", "synth", "-o", &sub],
            "it is a directory".into(),
        ),
        (
            vec!["pack", "-m", &m, "-o", &sub],
            "it is a directory".into(),
        ),
        (
            vec!["pack", "-m", &m, "-o", &s(&dir.join("no/such/out.lode"))],
            "does not exist".into(),
        ),
    ]
    .into_iter()
    .map(|(a, w)| (a.into_iter().map(String::from).collect(), w))
    .collect();
    if let Some(p) = fifo(&dir) {
        let p = s(&p);
        // The model is a FIFO too: the output is checked first, so the
        // error names it, not the model.
        for args in [
            vec!["pack", "-m", &p, "-o", &p],
            vec!["trace", "synth", "-o", &p],
            vec!["image", "synth", "-o", &p],
            vec![
                "profile",
                "-m",
                &p,
                "--text",
                &p,
                "--sparsity",
                "0.5",
                "-o",
                &p,
            ],
            vec!["calibrate", &m, "--seconds", "0.1", "--json", &p],
            vec!["calibrate", &m, "--seconds", "0.1", "--plot", &p],
        ] {
            let want = format!("cannot write {p}: it is a FIFO (named pipe)");
            cases.push((args.into_iter().map(String::from).collect(), want));
        }
    }
    for (args, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let e = refused(&args);
        assert!(e.contains(&says), "{args:?}: {e}");
    }
    assert_eq!(std::fs::read(&model).unwrap(), b"a model, to be kept");
    assert_eq!(std::fs::read(&trace).unwrap(), b"a trace, to be kept");
    assert_eq!(std::fs::read(&text).unwrap(), b"a text, to be kept");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_writers_temporary_is_removed_by_the_next_run() {
    let dir = scratch("stale");
    let out = dir.join("t.trace");
    // What `kill -9` during `lode trace synth` leaves behind.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = dir.join(format!(".t.trace.{dead}.partial"));
    std::fs::write(&stale, b"half a trace").unwrap();
    let o = s(&out);
    lode(&[
        "trace",
        "synth",
        "-o",
        &o,
        "--tokens",
        "4",
        "--layers",
        "2",
        "--neurons",
        "64",
    ])
    .unwrap();
    assert!(!stale.exists());
    lode(&["trace", "info", &o]).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
    assert_eq!(names.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
