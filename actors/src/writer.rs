//! What doesNotUnderstand's last tier is asked and answers: a request for a
//! method nobody has, and a checked candidate. The runtime asks a
//! [`crate::MethodWriter`] (defined with the runtime's state, which holds
//! it) when lookup and synthesis find nothing; the cognitive core answers
//! with a language model (`batos-cognition`).

use batos_object::slot::{MethodSource, Provenance};
use batos_object::value::{Oid, Value};

/// A method written for a message that passed the audit and compiles; the
/// message's own transaction installs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The module.
    pub wasm: Vec<u8>,
    /// Who wrote it and how (model, expert, prompt hash, attempts).
    pub provenance: Provenance,
    /// The text it was compiled from, kept with the version.
    pub source: Option<MethodSource>,
}

/// What a writer is asked for: a method for `selector` on `receiver`.
#[derive(Debug, Clone)]
pub struct MethodRequest {
    /// The object that did not understand.
    pub receiver: Oid,
    /// The selector it did not understand.
    pub selector: String,
    /// The message's arguments.
    pub args: Vec<Value>,
}
