//! Turns the token pieces of a generation into text a front end can send:
//! whole UTF-8 characters only (a token may end inside one), and nothing
//! that could be the start of a stop sequence until it is known not to be.
//! A stop sequence ends the text before it, as OpenAI's `stop` does.

/// The text generated so far and how much of it has been handed out.
#[derive(Debug)]
pub(crate) struct Emitter<'a> {
    stops: Vec<&'a str>,
    /// Bytes a stop sequence could still claim at the end of `text`.
    hold: usize,
    /// Decoded text (invalid bytes as U+FFFD).
    text: String,
    /// Bytes of an unfinished UTF-8 character.
    tail: Vec<u8>,
    /// Bytes of `text` handed out.
    emitted: usize,
    /// Whether a stop sequence was found.
    stopped: bool,
}

impl<'a> Emitter<'a> {
    /// An emitter that ends the text at the first of `stops` (empty
    /// strings are ignored).
    pub(crate) fn new(stops: &'a [String]) -> Emitter<'a> {
        let stops: Vec<&str> = stops
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        let hold = stops.iter().map(|s| s.len() - 1).max().unwrap_or(0);
        Emitter {
            stops,
            hold,
            text: String::new(),
            tail: Vec::new(),
            emitted: 0,
            stopped: false,
        }
    }

    /// Adds a token's bytes; returns the text that may be handed out now
    /// (possibly empty). After a stop sequence, [`Emitter::stopped`] is
    /// true and further pieces are ignored.
    pub(crate) fn push(&mut self, piece: &[u8]) -> &str {
        if self.stopped {
            return "";
        }
        self.tail.extend_from_slice(piece);
        self.decode_tail(false);
        let start = self.emitted;
        if let Some(at) = self.find_stop() {
            self.text.truncate(at);
            self.stopped = true;
            self.emitted = at;
            return &self.text[start..at];
        }
        let mut end = self.text.len().saturating_sub(self.hold).max(start);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        self.emitted = end;
        &self.text[start..end]
    }

    /// Ends the text: what is still held back (an unfinished character
    /// becomes U+FFFD).
    pub(crate) fn finish(&mut self) -> &str {
        if !self.stopped {
            self.decode_tail(true);
            if let Some(at) = self.find_stop() {
                self.text.truncate(at);
                self.stopped = true;
            }
        }
        let start = self.emitted.min(self.text.len());
        self.emitted = self.text.len();
        &self.text[start..]
    }

    /// Whether a stop sequence ended the text.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// The whole text (after [`Emitter::finish`]: all of it).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Moves the complete characters of `tail` into `text`; with `all`,
    /// an unfinished one too, as U+FFFD.
    fn decode_tail(&mut self, all: bool) {
        loop {
            match std::str::from_utf8(&self.tail) {
                Ok(s) => {
                    self.text.push_str(s);
                    self.tail.clear();
                    return;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // Valid by construction: `from_utf8` said so.
                    self.text
                        .push_str(std::str::from_utf8(&self.tail[..good]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            self.text.push('\u{FFFD}');
                            self.tail.drain(..good + bad);
                        }
                        None if all => {
                            self.text.push('\u{FFFD}');
                            self.tail.clear();
                            return;
                        }
                        None => {
                            self.tail.drain(..good);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Where the first stop sequence starts in the text not yet handed
    /// out (an occurrence cannot start earlier: `hold` bytes are kept).
    fn find_stop(&self) -> Option<usize> {
        let from = self.emitted;
        self.stops
            .iter()
            .filter_map(|s| self.text[from..].find(s).map(|i| from + i))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::Emitter;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (Vec<String>, String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut e = Emitter::new(&stops);
        let mut out: Vec<String> = pieces.iter().map(|p| e.push(p).to_string()).collect();
        out.push(e.finish().to_string());
        (out, e.text().to_string(), e.stopped())
    }

    #[test]
    fn split_characters_are_held_until_whole() {
        let (out, text, _) = run(&[], &[b"a\xc3", b"\xa9b"]);
        assert_eq!(out, ["a", "\u{e9}b", ""]);
        assert_eq!(text, "a\u{e9}b");
    }

    #[test]
    fn a_stop_sequence_across_pieces_ends_the_text_before_it() {
        let (out, text, stopped) = run(&["\n\n"], &[b"Paris.", b"\n", b"\nThe"]);
        assert_eq!(out.concat(), "Paris.");
        assert_eq!(text, "Paris.");
        assert!(stopped);
    }

    #[test]
    fn a_partial_stop_sequence_is_released_when_it_does_not_complete() {
        let (out, text, stopped) = run(&["END"], &[b"a E", b"N", b"d"]);
        assert_eq!(out.concat(), "a ENd");
        assert_eq!(text, "a ENd");
        assert!(!stopped);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _, _) = run(&[], &[b"\xff", b"ok\xe2\x82"]);
        assert_eq!(out.concat(), "\u{FFFD}ok\u{FFFD}");
    }
}
