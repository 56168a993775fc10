//! Everything that can stop the firmware's run, as one enum with a message
//! for the semihosting console.

use core::fmt;

use lode_kernel::arena;
use lode_kernel::cache::CacheError;
use lode_kernel::fetch::FetchError;
use lode_kernel::flash;
use lode_kernel::formats::image::ImageError;
use lode_kernel::formats::trace::TraceError;

/// Everything that can stop the run.
#[derive(Debug)]
pub(crate) enum Error {
    Image(ImageError),
    Trace(TraceError),
    Arena(arena::ErrorKind),
    Cache(CacheError),
    Read {
        offset: u64,
        kind: flash::ErrorKind,
    },
    Fetch {
        token: u32,
        layer: usize,
        err: FetchError<flash::ErrorKind>,
    },
    Bundle {
        token: u32,
        layer: usize,
        err: ImageError,
    },
    Config(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image(e) => write!(f, "image: {e}"),
            Error::Trace(e) => write!(f, "trace: {e}"),
            Error::Arena(k) => write!(f, "arena: {k}"),
            Error::Cache(e) => write!(f, "{e}"),
            Error::Read { offset, kind } => write!(f, "read at byte {offset}: {kind}"),
            Error::Fetch { token, layer, err } => {
                write!(f, "token {token}, layer {layer}: {err}")
            }
            Error::Bundle { token, layer, err } => {
                write!(f, "token {token}, layer {layer}: fetched bundle: {err}")
            }
            Error::Config(why) => f.write_str(why),
        }
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Self {
        Error::Image(e)
    }
}

impl From<TraceError> for Error {
    fn from(e: TraceError) -> Self {
        Error::Trace(e)
    }
}

impl From<arena::ErrorKind> for Error {
    fn from(k: arena::ErrorKind) -> Self {
        Error::Arena(k)
    }
}

impl From<CacheError> for Error {
    fn from(e: CacheError) -> Self {
        Error::Cache(e)
    }
}
