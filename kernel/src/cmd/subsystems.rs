//! Answers for commands whose subsystem is not configured: their fields are
//! validated by the decoder, then they answer `unavailable`.

use crate::protocol::{ErrorCode, WireError};

pub(super) const COGNITIVE_CORE: &str =
    "no model is configured ([inference] model or `batos run --model PATH`)";

pub(super) fn unavailable(what: &str, why: &str) -> WireError {
    WireError::new(ErrorCode::Unavailable, format!("{what}: {why}"))
}
