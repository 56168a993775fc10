//! `--inject-faults SPEC`: the faults a run injects into its device.
//!
//! `SPEC` is comma-separated `key=value` pairs: `read-error=P`,
//! `bit-flip=P`, `latency-spike=P:MICROS`, `seed=N`, with `P` a
//! probability per read (0 to 1). The device the session streams from is
//! wrapped in the kernel's
//! [`FaultInjector`](lode_kernel::flash::FaultInjector), so the same
//! faults reach a file, a block device or the fake flash, and a run must
//! either print exactly the text of a clean run or stop with an error.

use std::fmt;

use lode_kernel::flash::Faults;

/// Why a fault spec was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFaults(pub String);

impl fmt::Display for BadFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; --inject-faults takes read-error=P, bit-flip=P, latency-spike=P:MICROS and \
             seed=N, comma-separated, with P a probability per read from 0 to 1",
            self.0
        )
    }
}

impl std::error::Error for BadFaults {}

/// A probability in parts per million.
fn ppm(key: &str, v: &str) -> Result<u32, BadFaults> {
    let p: f64 = v
        .parse()
        .map_err(|_| BadFaults(format!("{key}: `{v}` is not a number")))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(BadFaults(format!("{key}: {v} is not between 0 and 1")));
    }
    Ok((p * 1e6).round() as u32)
}

/// Parses `SPEC` into the injector's rates.
pub fn parse_faults(spec: &str) -> Result<Faults, BadFaults> {
    let mut f = Faults::none();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| BadFaults(format!("`{item}` is not key=value")))?;
        match key {
            "read-error" => f.read_error_ppm = ppm(key, value)?,
            "bit-flip" => f.bit_flip_ppm = ppm(key, value)?,
            "latency-spike" => {
                let (p, us) = value.split_once(':').ok_or_else(|| {
                    BadFaults(format!("latency-spike: `{value}` is not P:MICROS"))
                })?;
                f.spike_ppm = ppm(key, p)?;
                let us: u64 = us
                    .parse()
                    .map_err(|_| BadFaults(format!("latency-spike: `{us}` is not microseconds")))?;
                if us > 10_000_000 {
                    return Err(BadFaults(format!(
                        "latency-spike: {us} us is more than 10 s"
                    )));
                }
                f.spike_ns = us * 1000;
            }
            "seed" => {
                f.seed = value
                    .parse()
                    .map_err(|_| BadFaults(format!("seed: `{value}` is not a whole number")))?
            }
            _ => return Err(BadFaults(format!("unknown fault `{key}`"))),
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_and_bad_specs_say_why() {
        let f =
            parse_faults("read-error=0.01, bit-flip=1e-3,latency-spike=0.5:250,seed=7").unwrap();
        assert_eq!(f.read_error_ppm, 10_000);
        assert_eq!(f.bit_flip_ppm, 1_000);
        assert_eq!((f.spike_ppm, f.spike_ns), (500_000, 250_000));
        assert_eq!(f.seed, 7);
        assert!(parse_faults("").unwrap().is_none());
        for (bad, says) in [
            ("bit-flip=2", "between 0 and 1"),
            ("bit-flip=NaN", "between 0 and 1"),
            ("bit-flip=-0.1", "between 0 and 1"),
            ("read-error", "key=value"),
            ("latency-spike=0.1", "P:MICROS"),
            ("latency-spike=0.1:x", "microseconds"),
            ("seed=-1", "whole number"),
            ("cosmic-ray=1", "unknown fault"),
        ] {
            let e = parse_faults(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
