//! The DRAM budget a session is given: bytes, or a share of the model.

use std::fmt;

/// A DRAM budget before the model's size is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// Exactly this many bytes.
    Bytes(usize),
    /// This percentage of the model's weight bytes (33.0 is a third).
    Percent(f64),
}

/// A budget string that is neither bytes nor a percentage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBudget(pub String);

impl fmt::Display for BadBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "DRAM budget `{}`: give bytes such as 32MiB, 512K, 1G, or a percentage such as 33%",
            self.0
        )
    }
}

impl std::error::Error for BadBudget {}

impl Budget {
    /// Parses bytes with an optional `K`/`KiB`/`M`/`MiB`/`G`/`GiB` suffix
    /// (powers of 1024), or `N%` of the model (above 0, at most 1000).
    pub fn parse(s: &str) -> Result<Budget, BadBudget> {
        let t = s.trim();
        let bad = || BadBudget(s.to_string());
        if let Some(p) = t.strip_suffix('%') {
            let pct: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(pct > 0.0 && pct <= 1000.0) {
                return Err(bad());
            }
            return Ok(Budget::Percent(pct));
        }
        let lower = t.to_ascii_lowercase();
        let (num, mult) = [
            ("gib", 1u64 << 30),
            ("mib", 1 << 20),
            ("kib", 1 << 10),
            ("g", 1 << 30),
            ("m", 1 << 20),
            ("k", 1 << 10),
            ("b", 1),
        ]
        .iter()
        .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
        .unwrap_or((lower.clone(), 1));
        let v: f64 = num.parse().map_err(|_| bad())?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad());
        }
        let bytes = v * mult as f64;
        if bytes > usize::MAX as f64 / 2.0 {
            return Err(bad());
        }
        Ok(Budget::Bytes(bytes as usize))
    }

    /// Bytes of this budget for a model of `model_bytes` weight bytes.
    pub fn bytes(self, model_bytes: u64) -> usize {
        match self {
            Budget::Bytes(b) => b,
            Budget::Percent(p) => (model_bytes as f64 * p / 100.0) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, model: u64) -> Result<usize, BadBudget> {
        Budget::parse(s).map(|b| b.bytes(model))
    }

    #[test]
    fn budgets_parse_with_units_and_percentages() {
        assert_eq!(parse("32MiB", 0), Ok(32 << 20));
        assert_eq!(parse("32M", 0), Ok(32 << 20));
        assert_eq!(parse("1.5k", 0), Ok(1536));
        assert_eq!(parse("2G", 0), Ok(2 << 30));
        assert_eq!(parse("4096", 0), Ok(4096));
        assert_eq!(parse("50%", 1000), Ok(500));
        for bad in ["", "MiB", "-1M", "0", "abc", "0%", "nan", "5%%"] {
            let e = parse(bad, 1000).unwrap_err();
            assert!(e.to_string().contains("32MiB"), "{bad}: {e}");
        }
    }
}
