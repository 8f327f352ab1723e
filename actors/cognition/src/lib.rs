//! The BAT OS cognitive core: the only crate that touches mistral.rs.
//!
//! - [`inference`]: language-model inference behind a narrow trait
//!   ([`inference::Engine`]), the service that queues and meters it, and
//!   the persona experts' tiers.
//! - [`generation`]: doesNotUnderstand's model tier, a
//!   [`batos_actors::MethodWriter`] the kernel enables on the object space.
//! - [`orchestration`]: persistent cognitive cycles whose state is their
//!   `parent*`, and the first conversation, display_yourself.
//! - `tiny_model` (feature `testing`): a tiny random-weight Llama and LoRA
//!   adapters for offline tests and benchmarks of the mistral.rs backend.

pub mod generation;
pub mod inference;
pub mod orchestration;
#[cfg(feature = "testing")]
pub mod tiny_model;
