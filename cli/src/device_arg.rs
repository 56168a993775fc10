//! The `--device` argument shared by the commands that read through a flash
//! device: `fake:<profile>` (the deterministic fake flash) or `file:<path>`.

use std::error::Error;
use std::path::PathBuf;

use lode_hal::fake::Profile;

/// A parsed `--device`.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceArg {
    /// The fake flash with this profile's geometry and cost model.
    Fake(&'static Profile),
    /// A file or block device.
    File(PathBuf),
}

impl DeviceArg {
    /// Parses `fake:<profile>` or `file:<path>`; errors name the known
    /// profiles or the accepted forms.
    pub fn parse(s: &str) -> Result<DeviceArg, Box<dyn Error>> {
        if let Some(name) = s.strip_prefix("fake:") {
            let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name).collect();
            Profile::by_name(name).map(DeviceArg::Fake).ok_or_else(|| {
                format!("unknown fake profile `{name}`; known: {}", names.join(", ")).into()
            })
        } else if let Some(path) = s.strip_prefix("file:") {
            Ok(DeviceArg::File(PathBuf::from(path)))
        } else {
            Err(format!("device `{s}` must be file:<path> or fake:<profile>").into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_errors() {
        assert_eq!(
            DeviceArg::parse("file:/x").unwrap(),
            DeviceArg::File(PathBuf::from("/x"))
        );
        assert!(
            matches!(DeviceArg::parse("fake:ufs40"), Ok(DeviceArg::Fake(p)) if p.name == "ufs40")
        );
        let e = DeviceArg::parse("fake:floppy").unwrap_err().to_string();
        assert!(e.contains("ufs40"), "{e}");
        let e = DeviceArg::parse("tape:0").unwrap_err().to_string();
        assert!(e.contains("file:<path> or fake:<profile>"), "{e}");
    }
}
