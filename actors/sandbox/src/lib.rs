//! The method sandbox: the only crate that touches wasmtime.
//!
//! - [`abi`]: the method ABI v1 table (`uvm` host functions, signatures,
//!   status codes).
//! - [`audit`]: what a module must be to install (wasmparser; every rule
//!   named).
//! - [`synthesis`]: doesNotUnderstand's first tier, accessors as WAT.
//! - [`engine`]: one `Engine` and `Linker`, an `InstancePre` per module
//!   hash, the pooling allocator, fuel, epoch deadlines, `StoreLimits`, the
//!   compiled-module cache in the image.
//! - `host`: the `uvm` functions over the [`MethodHost`] trait, which the
//!   runtime implements with a message's transaction.
//! - [`py`] and `host_py`: the runtime of methods written in Python (values
//!   on the host, handles in the guest; `batos-python` compiles them).

pub mod abi;
pub mod audit;
pub mod engine;
mod host;
mod host_py;
pub mod py;
pub mod synthesis;

pub use batos_object::image::module_hash;
pub use engine::{CacheKey, Sandbox, SandboxLimits};
pub use host::{
    frame, Frame, Invoke, LogBudget, MethodFault, MethodHost, Resolved, MAX_LOG_LINES,
    MAX_LOG_LINE_BYTES,
};
