//! Puts `memory.x` where cortex-m-rt's `link.x` finds it, and copies the lode
//! image and activation trace the firmware embeds into `OUT_DIR`.
//!
//! The image and trace are generated, not committed: `firmware/run` makes
//! them with `lode image synth` and `lode trace synth` and passes their paths
//! in `LODE_FIRMWARE_IMAGE` and `LODE_FIRMWARE_TRACE`.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

fn copy_input(var: &str, to: &PathBuf) -> Result<(), String> {
    println!("cargo:rerun-if-env-changed={var}");
    let from = env::var_os(var).ok_or_else(|| {
        format!(
            "{var} is not set: it names the file to embed. \
             Run firmware/run, which makes the image and trace and sets it."
        )
    })?;
    let from = PathBuf::from(from);
    println!("cargo:rerun-if-changed={}", from.display());
    fs::copy(&from, to).map_err(|e| format!("{var}: cannot copy {}: {e}", from.display()))?;
    Ok(())
}

fn main() -> ExitCode {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let steps = [
        fs::copy("memory.x", out.join("memory.x"))
            .map(|_| ())
            .map_err(|e| format!("memory.x: {e}")),
        copy_input("LODE_FIRMWARE_IMAGE", &out.join("image.lode")),
        copy_input("LODE_FIRMWARE_TRACE", &out.join("trace.bin")),
    ];
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
    let mut ok = true;
    for step in steps {
        if let Err(e) = step {
            eprintln!("error: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
