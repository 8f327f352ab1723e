//! The one error type of the object model; the bridge maps each variant to a wire code.

use crate::value::Oid;

/// Why an object-model operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    /// The request itself is malformed (wrong value shape, wrong arity).
    #[error("{0}")]
    BadRequest(String),
    /// No object has this oid (or root name).
    #[error("no such object: {0}")]
    NoSuchObject(String),
    /// The object exists but has no such slot of its own.
    #[error("object {oid} has no slot {slot:?}")]
    NoSuchSlot {
        /// The object looked at.
        oid: Oid,
        /// The missing slot.
        slot: String,
    },
    /// Lookup was exhausted and nothing could generate the method.
    #[error("{0}")]
    DoesNotUnderstand(String),
    /// A method was refused by the audit (the message names the rule).
    #[error("{0}")]
    CovenantViolation(String),
    /// A method trapped or ran out of fuel, memory or time; nothing it wrote was kept.
    #[error("{0}")]
    MethodTrap(String),
    /// The client's role does not allow the change, or the object or slot
    /// is the kernel's own (the message says which).
    #[error("{0}")]
    Forbidden(String),
    /// The request (or the transaction a message built) is over a size cap.
    #[error("{0}")]
    TooLarge(String),
    /// Too much work queued: the client should retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The subsystem needed is not available.
    #[error("{0}")]
    Unavailable(String),
    /// The image could not read or write.
    #[error("image: {0}")]
    Image(#[from] crate::image::ImageError),
    /// The kernel is shutting down or a component went away.
    #[error("{0}")]
    Internal(String),
}

impl ActorError {
    /// An internal failure, described.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        ActorError::Internal(what.to_string())
    }
}

/// What a caught panic said (its `&str` or `String` payload), for the log
/// or an error: the kernel contains panics in pool jobs and commands.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic".to_string())
}
