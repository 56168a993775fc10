//! The switching trace: histories, then which conversation each switch
//! goes to and what it appends. Seeded, so every system (and llama.cpp in
//! the script) replays the same one.

use lode_kernel::rng::SplitMix64;
use serde::Serialize;

use super::ContextsArgs;

/// How the next conversation is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    /// Uniformly among the others.
    Random,
    /// Like a phone's app switching: to the next app (60%), back to one of
    /// the three used last (30%), or any other (10%).
    Markov,
}

impl Pattern {
    /// `random` or `markov`.
    pub fn parse(s: &str) -> Result<Pattern, String> {
        match s {
            "random" => Ok(Pattern::Random),
            "markov" => Ok(Pattern::Markov),
            _ => Err(format!("--pattern {s}: random or markov")),
        }
    }
}

/// Tokens of each input a switch appends.
pub const INPUT_TOKENS: usize = 16;

/// The trace.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// How switches were chosen.
    pub pattern: Pattern,
    /// Each conversation's history (tokens).
    pub histories: Vec<Vec<u32>>,
    /// Each switch: the conversation and the tokens it appends.
    pub switches: Vec<(usize, Vec<u32>)>,
    /// Tokens generated per call.
    pub tokens: usize,
}

impl Trace {
    /// A trace over `corpus` as `a` asks; every conversation stays within
    /// `max_context` positions.
    pub fn new(
        corpus: &[u32],
        a: &ContextsArgs,
        pattern: Pattern,
        max_context: usize,
    ) -> Result<Trace, String> {
        let n = a.contexts;
        if n < 2 {
            return Err("--contexts: at least 2 (switching needs somewhere to go)".into());
        }
        if a.max_history < 256 {
            return Err("--max-history: at least 256".into());
        }
        if corpus.len() < a.max_history + INPUT_TOKENS {
            return Err(format!(
                "--text has {} tokens, fewer than --max-history + {INPUT_TOKENS}",
                corpus.len()
            ));
        }
        let mut r = SplitMix64::new(a.seed);
        let cut = |len: usize, r: &mut SplitMix64| {
            let at = r.below((corpus.len() - len) as u64 + 1) as usize;
            corpus[at..at + len].to_vec()
        };
        let histories: Vec<Vec<u32>> = (0..n)
            .map(|_| {
                let len = 256 + r.below((a.max_history - 256) as u64 + 1) as usize;
                cut(len, &mut r)
            })
            .collect();
        let mut lens: Vec<usize> = histories.iter().map(|h| h.len() + 1).collect();
        let mut recent: Vec<usize> = Vec::new();
        let mut at = n - 1;
        let mut switches = Vec::with_capacity(a.switches);
        while switches.len() < a.switches {
            let next = pick(pattern, at, n, &recent, &mut r);
            let grow = INPUT_TOKENS + a.tokens;
            if lens[next] + grow > max_context {
                // Full: this conversation takes no more switches.
                if lens.iter().all(|&l| l + grow > max_context) {
                    return Err("--max-history leaves no room for the switches".into());
                }
                continue;
            }
            lens[next] += grow;
            switches.push((next, cut(INPUT_TOKENS, &mut r)));
            // The apps used before this one, most recent first, never the
            // one now in front.
            recent.retain(|&c| c != at && c != next);
            recent.insert(0, at);
            recent.truncate(3);
            at = next;
        }
        Ok(Trace {
            pattern,
            histories,
            switches,
            tokens: a.tokens,
        })
    }
}

impl Trace {
    /// `trace`'s inputs all sent to one conversation (its first history),
    /// as far as its context allows: nothing is ever switched out.
    pub fn single(trace: &Trace) -> Trace {
        let first = trace.histories.first().cloned().unwrap_or_default();
        let room = trace.switches.len().min(8);
        Trace {
            pattern: trace.pattern,
            histories: vec![first],
            switches: trace
                .switches
                .iter()
                .take(room)
                .map(|(_, input)| (0, input.clone()))
                .collect(),
            tokens: trace.tokens,
        }
    }
}

/// The conversation after `at`.
fn pick(pattern: Pattern, at: usize, n: usize, recent: &[usize], r: &mut SplitMix64) -> usize {
    let other = |r: &mut SplitMix64| (at + 1 + r.below(n as u64 - 1) as usize) % n;
    match pattern {
        Pattern::Random => other(r),
        Pattern::Markov => {
            let p = r.below(100);
            if p < 60 {
                (at + 1) % n
            } else if p < 90 && !recent.is_empty() {
                recent[r.below(recent.len() as u64) as usize]
            } else {
                other(r)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pattern: &str, seed: u64) -> ContextsArgs {
        ContextsArgs {
            model: "unused".into(),
            text: "unused".into(),
            contexts: 4,
            max_history: 300,
            switches: 40,
            pattern: pattern.into(),
            tokens: 4,
            kv_contexts: 2,
            swap: "/tmp".into(),
            seed,
            threads: None,
            systems: "lode".into(),
            trace_out: None,
            json: false,
        }
    }

    #[test]
    fn traces_are_seeded_bounded_and_never_stay_put() {
        let corpus: Vec<u32> = (0..5000).collect();
        let a = args("markov", 7);
        let t = Trace::new(&corpus, &a, Pattern::Markov, 600).unwrap();
        let again = Trace::new(&corpus, &a, Pattern::Markov, 600).unwrap();
        assert_eq!(t.switches, again.switches, "seeded");
        assert_eq!(t.switches.len(), 40);
        assert!(t.histories.iter().all(|h| (256..=300).contains(&h.len())));
        let mut lens: Vec<usize> = t.histories.iter().map(|h| h.len() + 1).collect();
        let mut at = a.contexts - 1;
        for (c, input) in &t.switches {
            assert_ne!(*c, at, "a switch goes somewhere else");
            assert_eq!(input.len(), INPUT_TOKENS);
            lens[*c] += INPUT_TOKENS + a.tokens;
            assert!(lens[*c] <= 600);
            at = *c;
        }
        let random = Trace::new(&corpus, &a, Pattern::Random, 600).unwrap();
        assert_ne!(random.switches, t.switches);
        let other_seed = Trace::new(&corpus, &args("markov", 8), Pattern::Markov, 600).unwrap();
        assert_ne!(other_seed.switches, t.switches);
    }

    #[test]
    fn impossible_traces_are_errors() {
        let corpus: Vec<u32> = (0..5000).collect();
        let mut a = args("markov", 1);
        a.contexts = 1;
        assert!(Trace::new(&corpus, &a, Pattern::Markov, 600).is_err());
        let a = args("markov", 1);
        assert!(Trace::new(&corpus[..100], &a, Pattern::Markov, 600).is_err());
        assert!(
            Trace::new(&corpus, &a, Pattern::Markov, 300).is_err(),
            "no room to grow"
        );
        assert!(Pattern::parse("sometimes").is_err());
    }
}
