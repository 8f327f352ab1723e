//! doesNotUnderstand's last tier as the runtime sees it: something that
//! writes a method nobody has. The runtime defines this trait and asks it
//! when lookup and synthesis find nothing; the cognitive core implements it
//! with a language model (`batos-cognition`), through the public
//! [`ObjectSpace`] façade only.

use std::sync::Arc;

use batos_object::error::ActorError;
use batos_object::slot::Provenance;
use batos_object::value::{Oid, Value};
use futures::future::BoxFuture;

use crate::space::ObjectSpace;

/// A method written for a message that passed the audit and compiles; the
/// message's own transaction installs it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The module.
    pub wasm: Vec<u8>,
    /// Who wrote it and how (model, expert, prompt hash, attempts).
    pub provenance: Provenance,
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

/// Writes missing methods (doesNotUnderstand's last tier).
pub trait MethodWriter: Send + Sync + 'static {
    /// A checked candidate for `request`, or why none could be written
    /// (`DoesNotUnderstand`, or `Overloaded` for the client to retry).
    fn write(
        self: Arc<Self>,
        space: ObjectSpace,
        request: MethodRequest,
    ) -> BoxFuture<'static, Result<Arc<Candidate>, ActorError>>;
}
