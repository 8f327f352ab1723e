//! Test support (feature `testing`): an in-memory [`Image`] and the
//! conformance suite every `Image` must pass.
//!
//! The in-memory image lets the runtime be tested without a storage
//! engine; the suite is the contract between the object model and a store
//! (the RocksDB image runs it too, and so must any other).
//!
//! [`Image`]: crate::image::Image

pub mod conformance;
mod memory_image;

pub use memory_image::MemoryImage;
