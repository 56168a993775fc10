//! The static interleaved rANS encoder matching `lode_kernel::codec`'s
//! decoder: symbols are coded last to first so the decoder reads them
//! first to last, lane `i % LANES` for symbol `i`, every lane starting and
//! ending at `STATE_LOW`, 16-bit words into one shared stream.

use lode_kernel::codec::STATE_LOW;
use lode_kernel::limits::CODEC_LANES;

/// One coded stream: the lanes' final states and the words, in the order
/// the decoder reads them.
pub struct Coded {
    /// Each lane's state after coding (the decoder's start).
    pub states: [u32; CODEC_LANES],
    /// The word stream, little-endian u16s.
    pub words: Vec<u8>,
}

/// Codes `symbols` with table `freqs` (summing to `2^bits`, nonzero for
/// every symbol present; `bits` at most 16).
pub fn encode<S: Copy + Into<usize>>(symbols: &[S], freqs: &[u32], bits: u32) -> Coded {
    let mut start = vec![0u32; freqs.len()];
    let mut acc = 0u32;
    for (s, &f) in start.iter_mut().zip(freqs) {
        *s = acc;
        acc += f;
    }
    let mut x = [STATE_LOW; CODEC_LANES];
    let mut words: Vec<u16> = Vec::with_capacity(symbols.len() / 2 + 8);
    for (i, &s) in symbols.iter().enumerate().rev() {
        let s: usize = s.into();
        let f = freqs[s];
        assert!(f > 0, "symbol {s} has no frequency");
        let lane = &mut x[i % CODEC_LANES];
        // Renormalise so the coded state stays below 2^32 (one word is
        // always enough: states stay below 2^32).
        // (In u64: a frequency of the whole total makes the bound 2^32.)
        if u64::from(*lane) >= u64::from(f) << (32 - bits) {
            words.push(*lane as u16);
            *lane >>= 16;
        }
        *lane = ((*lane / f) << bits) + (*lane % f) + start[s];
    }
    words.reverse();
    Coded {
        states: x,
        words: words.iter().flat_map(|w| w.to_le_bytes()).collect(),
    }
}

impl Coded {
    /// Bytes of this stream in a section: states, word count, words.
    pub fn write(&self, out: &mut Vec<u8>) {
        for s in self.states {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&(self.words.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.words);
    }
}
