//! lode's runtime: what every front end (the `lode` command, the C ABI, an
//! app) needs to run a model, written once.
//!
//! - [`ModelFile::open`] reads a GGUF or a lode image once: its shape, its
//!   tokenizer, its chat template;
//! - [`Session::load`] loads it under [`SessionOptions`]: whole in DRAM, or
//!   streamed from a flash device under a DRAM budget;
//! - [`Session::new_context`] makes a conversation; many share one model
//!   and one arena, each with its own KV cache;
//! - [`generate`] runs the decode loop in a context, handing each token to
//!   a callback; [`RunStats`] says what it measured;
//! - [`Service`] serves many contexts of one session to many threads
//!   (LLMS's new context / call / delete), what `lode serve` is built on.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use lode_runtime::{generate, GenerateOptions, ModelFile, Quiet, Session, SessionOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = ModelFile::open("smol.lode".as_ref())?;
//! let prompt = file.tokenizer().encode("The capital of France is", true);
//! let mut session = Session::load(file, &SessionOptions::new(256), prompt.len(), &mut Quiet)?;
//! let mut ctx = session.new_context();
//! generate(&mut session, &mut ctx, &prompt, &GenerateOptions::greedy(8), |t| {
//!     print!("{}", String::from_utf8_lossy(t.piece));
//!     ControlFlow::Continue(())
//! })?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod budget;
mod columns;
mod context;
pub mod device;
mod error;
pub mod faults;
mod generate;
pub mod image_file;
pub mod image_tokenizer;
pub mod kv_life;
pub mod kv_quality;
mod load;
mod model_file;
mod options;
pub mod prune;
pub mod service;
mod session;
mod stats;
pub mod swap_store;

pub use budget::{BadBudget, Budget};
pub use columns::OwnedScratch;
pub use context::Context;
pub use device::{AnyDevice, DeviceSpec};
pub use error::{ErrorKind, GenerateError, LoadError, OpenError};
pub use faults::{parse_faults, BadFaults};
pub use generate::{generate, GenerateOptions, Generation, Stop, Token};
pub use image_file::{is_image, ImageFile, ImageFileError};
pub use load::{Outside, StreamInfo, Streamed};
pub use model_file::{ModelFile, PrunedFrom};
pub use options::{LoadEvents, Quiet, SessionOptions};
pub use service::{
    CallError, CallOptions, CallSummary, ContextId, ContextInfo, CreateError, DeleteError, Finish,
    Input, LifeStats, Message, Service, ServiceErrorKind, ServiceOptions, ShutdownReport,
};
pub use session::{IoCounters, Session};
pub use stats::{ColumnPrice, RunStats, StreamStats};

pub use lode_hal::compute::sample::SamplerConfig;
