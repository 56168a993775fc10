//! The lode image: a self-describing, checksummed container of a model laid out for flash.
