//! Commands whose subsystems are not part of this kernel build yet: their
//! fields are validated by the decoder, then they answer `unavailable`.

use crate::protocol::{ErrorCode, WireError};

pub(super) const MEMORY: &str = "the knowledge catalog is not in this kernel build yet";
pub(super) const COGNITIVE_CORE: &str =
    "no cognitive core is configured (no model; inference is not in this build)";
pub(super) const CYCLES: &str = "the orchestrator is not in this kernel build yet";

pub(super) fn unavailable(what: &str, why: &str) -> WireError {
    WireError::new(ErrorCode::Unavailable, format!("{what}: {why}"))
}
