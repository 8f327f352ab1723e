//! The BAT OS object model: prototype objects as actix actors over a durable image.
//!
//! Every object is a prototype with slots and `parent*` delegation. A live
//! object is an [`object::ObjectActor`] on one of the object arbiters; its
//! slots are loaded on demand from the [`image::Image`] and it passivates when
//! idle. Every change goes through one [`txn::Transaction`] per message, which
//! the [`committer`] makes durable (group commit) before anyone sees it.

pub mod abi;
pub mod audit;
pub mod changes;
pub mod clock;
pub mod committer;
pub mod error;
pub mod exec;
pub mod generation;
pub mod image;
pub mod inference;
pub mod lookup;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod object;
pub mod orchestration;
mod pool;
pub mod primitives;
pub mod roots;
pub mod sandbox;
pub mod slot;
pub mod space;
pub mod stats;
pub mod synthesis;
pub mod table;
pub mod txn;
pub mod value;

pub use changes::Changes;
pub use error::ActorError;
pub use image::{Image, ImageError};
pub use space::{ObjectSpace, SpaceConfig};
pub use value::{Oid, Value};
