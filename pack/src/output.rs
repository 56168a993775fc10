//! Writing output files so a failure never leaves a partial file behind:
//! write to a temporary sibling, flush and sync it, then rename over the
//! target (atomic on the same file system). On any error the temporary file
//! is removed and the target is untouched.

use std::error::Error;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Create `path` with the bytes `write` produces, all or nothing. Returns
/// what `write` returns.
pub fn write_atomically<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T, Box<dyn Error>>,
) -> Result<T, Box<dyn Error>> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let file =
            File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        let value = write(&mut w)?;
        w.flush()?;
        w.get_ref().sync_all()?;
        fs::rename(&tmp, path)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), path.display()))?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_replaces_and_failure_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("lode-output-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.bin");
        write_atomically(&path, |w| Ok(w.write_all(b"first")?)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let err = write_atomically(&path, |w| {
            w.write_all(b"half of it")?;
            Err::<(), Box<dyn Error>>("failed midway".into())
        });
        assert!(err.is_err());
        assert_eq!(
            fs::read(&path).unwrap(),
            b"first",
            "the old file is untouched"
        );
        let fresh = dir.join("never.bin");
        assert!(write_atomically(&fresh, |_| Err::<(), Box<dyn Error>>("no".into())).is_err());
        assert!(!fresh.exists());
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file is left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
