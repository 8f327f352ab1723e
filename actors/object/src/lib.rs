//! The BAT OS object model, with no runtime: values and the rules every slot
//! write follows, slots, transactions, the roots and the genesis
//! transaction, the narrow [`Image`] trait a store implements, and the one
//! error type, and who may change what (`access`). It names no storage engine, no sandbox and no actor system;
//! every other crate of the kernel builds on it.

pub mod access;
pub mod changes;
pub mod clock;
pub mod delegation;
pub mod error;
pub mod genesis;
pub mod image;
pub mod roots;
pub mod rules;
pub mod slot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod txn;
pub mod value;

pub use changes::Changes;
pub use error::ActorError;
pub use image::{Image, ImageError};
pub use value::{Oid, Value};
