//! `SliceArena`: a `DramArena` over a caller-provided buffer.
