//! Writing output files, through the one helper every command that writes
//! uses, so no output can destroy what it should not.
//!
//! A command checks each output before its expensive work
//! ([`Output::check`]), so a bad path costs nothing:
//!
//! - a target that exists must be a regular file: the file is replaced by
//!   a rename, and renaming over a device node, a FIFO or a socket would
//!   replace the node itself (as root, `-o /dev/null` put a regular file
//!   where the device was);
//! - a target must not be one of the command's inputs (the same device and
//!   inode, so a hard link or a symbolic link to an input counts): writing
//!   it would destroy what the command reads;
//! - a symbolic link is followed: the file it names is replaced and the
//!   link kept, as a shell redirection would; a link to nothing is refused;
//! - the directory must exist.
//!
//! Writing ([`Output::write`]) goes to a temporary sibling
//! `.<name>.<pid>.partial`, which is flushed and fsynced, renamed over the
//! target (atomic within a file system), and then the directory is fsynced,
//! so the rename itself survives a power cut. On any error the temporary is
//! removed and the target is untouched. A process killed while writing
//! leaves its temporary behind; the next check of the same target removes
//! every such temporary whose process `/proc` says is gone.

use std::error::Error;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lode_formats::input::FileKind;

#[cfg(test)]
mod tests;

/// Why an output was refused or could not be written.
#[derive(Debug)]
#[non_exhaustive]
pub enum OutputError {
    /// The target exists and is not a regular file.
    NotRegular {
        /// The output as named.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// The target is one of the command's inputs.
    IsInput {
        /// The output as named.
        path: PathBuf,
        /// The input it is, as named.
        input: PathBuf,
    },
    /// The target is a symbolic link that names no file (or a loop).
    BrokenLink {
        /// The output as named.
        path: PathBuf,
        /// Why it does not resolve.
        source: io::Error,
    },
    /// The directory the target would go in does not exist (or is not a
    /// directory).
    NoDirectory {
        /// The output as named.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// A step of writing failed.
    Io {
        /// The output as named.
        path: PathBuf,
        /// Which step.
        step: &'static str,
        /// The file the step was on (the temporary or the directory).
        on: PathBuf,
        /// The system's error.
        source: io::Error,
    },
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::NotRegular { path, kind } => write!(
                f,
                "cannot write {}: it is {kind}; an output must be a regular file or a new path",
                path.display()
            ),
            OutputError::IsInput { path, input } if path == input => write!(
                f,
                "cannot write {}: it is also an input of this command, which writing it would \
                 destroy; name another output",
                path.display()
            ),
            OutputError::IsInput { path, input } => write!(
                f,
                "cannot write {}: it is the same file as the input {}, which writing it would \
                 destroy; name another output",
                path.display(),
                input.display()
            ),
            OutputError::BrokenLink { path, source } => write!(
                f,
                "cannot write {}: it is a symbolic link that names no file ({source})",
                path.display()
            ),
            OutputError::NoDirectory { path, dir } => write!(
                f,
                "cannot write {}: its directory {} does not exist",
                path.display(),
                dir.display()
            ),
            OutputError::Io {
                path,
                step,
                on,
                source,
            } => write!(
                f,
                "cannot write {}: {step} ({}): {source}",
                path.display(),
                on.display()
            ),
        }
    }
}

impl Error for OutputError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OutputError::BrokenLink { source, .. } | OutputError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A file's identity: its device and inode.
type FileId = (u64, u64);

/// The identity of the file `path` names (following links), if it exists.
fn file_id(path: &Path) -> Option<FileId> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// An output path, checked: where it will be written, and the inputs it
/// must not become.
#[derive(Debug, Clone)]
pub struct Output {
    /// The path as named (for messages).
    path: PathBuf,
    /// The file actually replaced: `path`, or what its link names.
    target: PathBuf,
    /// The inputs that existed when checked, with their identities.
    inputs: Vec<(PathBuf, FileId)>,
    /// Stale temporaries the check removed.
    removed: Vec<PathBuf>,
}

impl Output {
    /// Checks `path` as an output of a command that reads `inputs` (see
    /// the module docs for what is refused), and removes stale temporaries
    /// of earlier writes of it. Inputs that do not exist are skipped: they
    /// cannot be the target, and reading them fails on its own.
    pub fn check(path: &Path, inputs: &[&Path]) -> Result<Output, OutputError> {
        let target = resolve(path)?;
        let inputs: Vec<(PathBuf, FileId)> = inputs
            .iter()
            .filter_map(|p| file_id(p).map(|id| (p.to_path_buf(), id)))
            .collect();
        let out = Output {
            path: path.to_path_buf(),
            target,
            inputs,
            removed: Vec::new(),
        };
        out.check_target()?;
        let removed = remove_stale(&out.target);
        Ok(Output { removed, ..out })
    }

    /// The output as named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stale temporaries of killed writers that the check removed.
    pub fn removed(&self) -> &[PathBuf] {
        &self.removed
    }

    /// Refuses a target that is not a regular file or is an input, and a
    /// directory that does not exist (again at write time: the command may
    /// have run for a while).
    fn check_target(&self) -> Result<(), OutputError> {
        let dir = directory_of(&self.target);
        if !fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
            return Err(OutputError::NoDirectory {
                path: self.path.clone(),
                dir,
            });
        }
        let Ok(meta) = fs::metadata(&self.target) else {
            return Ok(());
        };
        let kind = FileKind::of(meta.file_type());
        if kind != FileKind::Regular {
            return Err(OutputError::NotRegular {
                path: self.path.clone(),
                kind,
            });
        }
        let id = (meta.dev(), meta.ino());
        if let Some((input, _)) = self.inputs.iter().find(|(_, i)| *i == id) {
            return Err(OutputError::IsInput {
                path: self.path.clone(),
                input: input.clone(),
            });
        }
        Ok(())
    }

    /// Writes the file with the bytes `write` produces, all or nothing:
    /// through a temporary sibling that is fsynced, renamed over the target,
    /// and made durable by fsyncing the directory. Returns what `write`
    /// returns; on any error the target is as it was.
    pub fn write<T>(
        &self,
        write: impl FnOnce(&mut BufWriter<File>) -> Result<T, Box<dyn Error>>,
    ) -> Result<T, Box<dyn Error>> {
        self.check_target()?;
        let tmp = temp_path(&self.target, std::process::id());
        let io_err = |step, on: &Path| {
            let path = self.path.clone();
            let on = on.to_path_buf();
            move |source| OutputError::Io {
                path,
                step,
                on,
                source,
            }
        };
        let file = self
            .create_temp(&tmp)
            .map_err(io_err("creating the temporary", &tmp))?;
        let written = (|| {
            let mut w = BufWriter::new(file);
            // A failed write keeps its cause ("No space left on device")
            // and gains the file it was writing.
            let value = write(&mut w).map_err(|e| match e.downcast::<io::Error>() {
                Ok(e) => io_err("writing the temporary", &tmp)(*e).into(),
                Err(e) => e,
            })?;
            let file = w
                .into_inner()
                .map_err(|e| io_err("writing the temporary", &tmp)(e.into_error()))?;
            file.sync_all()
                .map_err(io_err("syncing the temporary", &tmp))?;
            // The command may have run for a while: what is at the target
            // now is what the rename replaces.
            self.check_target()?;
            fs::rename(&tmp, &self.target)
                .map_err(io_err("renaming the temporary over it", &tmp))?;
            Ok(value)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            return written;
        }
        let dir = directory_of(&self.target);
        sync_dir(&dir).map_err(io_err(
            "syncing its directory (the file is in place, but may not survive a power cut)",
            &dir,
        ))?;
        written
    }

    /// The temporary, new (a leftover of a process that had this pid is
    /// removed first, never written through), with the permissions of the
    /// file it will replace.
    fn create_temp(&self, tmp: &Path) -> io::Result<File> {
        match fs::remove_file(tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        if let Ok(meta) = fs::metadata(&self.target) {
            file.set_permissions(meta.permissions())?;
        }
        Ok(file)
    }
}

/// Checks `path` as an output of a command reading `inputs` and writes it
/// all or nothing ([`Output::check`], then [`Output::write`]); for
/// commands whose writing is their only expensive step.
pub fn write_atomically<T>(
    path: &Path,
    inputs: &[&Path],
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, Box<dyn Error>>,
) -> Result<T, Box<dyn Error>> {
    Output::check(path, inputs)?.write(write)
}

/// The file `path` replaces: itself, or the file its symbolic link names
/// (a link to nothing is refused).
fn resolve(path: &Path) -> Result<PathBuf, OutputError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|source| OutputError::BrokenLink {
                path: path.to_path_buf(),
                source,
            })
        }
        _ => Ok(path.to_path_buf()),
    }
}

/// The directory `path` is in (`.` for a bare name).
fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.<name>.<pid>.partial` beside `target`.
fn temp_path(target: &Path, pid: u32) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(target.file_name().unwrap_or(OsStr::new("output")));
    name.push(format!(".{pid}.partial"));
    target.with_file_name(name)
}

/// The pid in `file`, when it is a temporary of `target`'s name.
fn temp_pid(file: &OsStr, target: &Path) -> Option<u32> {
    let name = target.file_name()?.as_bytes();
    let rest = file.as_bytes().strip_prefix(b".")?.strip_prefix(name)?;
    let digits = rest.strip_prefix(b".")?.strip_suffix(b".partial")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a process `pid` exists, when that can be told: `None` without
/// a `/proc` to ask.
fn process_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new("/proc").join(pid.to_string()).exists())
}

/// Removes the temporaries beside `target` that writers killed before
/// they finished left behind: regular files named as [`temp_path`] names
/// them, of a pid that is not this process and no longer runs. Nothing is
/// removed when that cannot be told, and failures are ignored (the next
/// run tries again). Returns what was removed.
fn remove_stale(target: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(directory_of(target)) else {
        return removed;
    };
    for entry in entries.flatten() {
        let Some(pid) = temp_pid(&entry.file_name(), target) else {
            continue;
        };
        let dead = pid != std::process::id() && process_alive(pid) == Some(false);
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if dead && is_file && fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// fsyncs the directory `dir`, so a rename in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
