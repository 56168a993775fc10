//! GGUF reading (versions 2 and 3).
