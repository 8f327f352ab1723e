//! The BAT OS runtime: prototype objects as actix actors over a durable
//! image.
//!
//! A live object is an [`object::ObjectActor`] on one of the object
//! arbiters; its slots are loaded on demand from the [`Image`] and it
//! passivates when idle. Every change goes through one transaction per
//! message, which the [`committer`] makes durable (group commit) before
//! anyone sees it. Methods run in the sandbox (`batos-sandbox`) inside the
//! message's transaction ([`exec`]); a method nobody has is asked of a
//! [`MethodWriter`] when one is enabled. `runtime` holds the shared state
//! and the core services the operations build on; `space` is the façade.
//!
//! The object model itself (values, slots, transactions, roots, the
//! `Image` trait) is `batos-object`; this crate is its runtime.

pub mod committer;
pub mod exec;
pub mod lookup;
pub mod method;
pub mod metrics;
pub mod object;
mod pool;
pub mod primitives;
pub mod runtime;
pub mod space;
pub mod stats;
pub mod table;
pub mod writer;

pub use batos_object::access::Role;
pub use batos_object::{ActorError, Changes, Image, ImageError, Oid, Value};
pub use runtime::MethodWriter;
pub use space::{ObjectSpace, SpaceConfig};
pub use writer::{Candidate, MethodRequest};
