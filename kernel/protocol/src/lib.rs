//! The Synaptic Bridge wire contract, version 1 (`docs/protocol.md`):
//! the request decoder, the commands, the reply encoder and the error codes.
//! Wire types live here and nowhere else. This crate has no heavy
//! dependencies so the request decoder can be fuzzed on its own (`fuzz/`).

mod command;
mod elements;
mod request;

pub use command::{Command, MethodCode, ObjRef};
pub use request::{decode_request, DecodeError, Request};

use rmpv::Value;

/// The protocol version this kernel speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// Deepest nesting a request body may have (envelope included).
pub const MAX_DEPTH: usize = 128;

/// Most values a request body may hold (array elements, map keys and
/// values, counted before decoding): more is `too_large`.
pub const MAX_ELEMENTS: u64 = 1 << 20;

/// Topic (first frame) of state change events on the events socket.
pub const TOPIC_STATE: &str = "uvm_state_update";
/// Topic (first frame) of cognitive cycle events on the events socket.
pub const TOPIC_CYCLE: &str = "cycle_update";

/// Every error code of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Not MessagePack, not a map, or a missing or mistyped field.
    BadRequest,
    /// The body is larger than the configured limit.
    TooLarge,
    /// `v` is not 1.
    UnsupportedVersion,
    /// `command` names no command.
    UnknownCommand,
    /// No object has that oid.
    NoSuchObject,
    /// The object has no such slot.
    NoSuchSlot,
    /// No method, and none could be generated.
    DoesNotUnderstand,
    /// A method was refused by the audit.
    CovenantViolation,
    /// A method trapped or ran out of fuel, memory or time.
    MethodTrap,
    /// The client's role does not allow it, or the object or slot is the
    /// kernel's own.
    Forbidden,
    /// Back-pressure: try later.
    Overloaded,
    /// The subsystem is not built or not configured.
    Unavailable,
    /// A kernel fault.
    Internal,
}

impl ErrorCode {
    /// Every code, for metrics and docs.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::BadRequest,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownCommand,
        ErrorCode::NoSuchObject,
        ErrorCode::NoSuchSlot,
        ErrorCode::DoesNotUnderstand,
        ErrorCode::CovenantViolation,
        ErrorCode::MethodTrap,
        ErrorCode::Forbidden,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::NoSuchObject => "no_such_object",
            ErrorCode::NoSuchSlot => "no_such_slot",
            ErrorCode::DoesNotUnderstand => "does_not_understand",
            ErrorCode::CovenantViolation => "covenant_violation",
            ErrorCode::MethodTrap => "method_trap",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code with this wire name.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An error reply: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// The protocol error code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl WireError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// Encodes a reply body: `{"v": 1, "id"?, "status", "result" | "error"}`.
pub fn encode_reply(id: Option<&Value>, outcome: &Result<Value, WireError>) -> Vec<u8> {
    // Written field by field, the result by reference: building a map
    // value first would copy the whole result.
    let mut out = Vec::with_capacity(128);
    let fields = 3 + u32::from(id.is_some());
    let ok = "writing to a Vec cannot fail";
    rmp::encode::write_map_len(&mut out, fields).expect(ok);
    rmp::encode::write_str(&mut out, "v").expect(ok);
    rmp::encode::write_uint(&mut out, PROTOCOL_VERSION).expect(ok);
    if let Some(id) = id {
        rmp::encode::write_str(&mut out, "id").expect(ok);
        rmpv::encode::write_value(&mut out, id).expect(ok);
    }
    rmp::encode::write_str(&mut out, "status").expect(ok);
    match outcome {
        Ok(result) => {
            rmp::encode::write_str(&mut out, "ok").expect(ok);
            rmp::encode::write_str(&mut out, "result").expect(ok);
            rmpv::encode::write_value(&mut out, result).expect(ok);
        }
        Err(err) => {
            rmp::encode::write_str(&mut out, "error").expect(ok);
            rmp::encode::write_str(&mut out, "error").expect(ok);
            rmp::encode::write_map_len(&mut out, 2).expect(ok);
            rmp::encode::write_str(&mut out, "code").expect(ok);
            rmp::encode::write_str(&mut out, err.code.as_str()).expect(ok);
            rmp::encode::write_str(&mut out, "message").expect(ok);
            rmp::encode::write_str(&mut out, &err.message).expect(ok);
        }
    }
    out
}

/// A map value from `(key, value)` pairs.
pub fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// A short name for a value's type, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bin",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

#[cfg(test)]
mod reply_tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Value {
        let mut rd = bytes;
        let v = rmpv::decode::read_value(&mut rd).unwrap();
        assert!(rd.is_empty());
        v
    }

    #[test]
    fn replies_encode_the_envelope_field_by_field() {
        let result = map([("n", Value::from(-3)), ("s", Value::from("é"))]);
        let ok = decoded(&encode_reply(
            Some(&Value::from("id-1")),
            &Ok(result.clone()),
        ));
        assert_eq!(
            ok,
            map([
                ("v", Value::from(1)),
                ("id", Value::from("id-1")),
                ("status", Value::from("ok")),
                ("result", result),
            ])
        );
        let err = WireError::new(ErrorCode::Forbidden, "no");
        let refused = decoded(&encode_reply(None, &Err(err)));
        assert_eq!(
            refused,
            map([
                ("v", Value::from(1)),
                ("status", Value::from("error")),
                (
                    "error",
                    map([
                        ("code", Value::from("forbidden")),
                        ("message", Value::from("no"))
                    ])
                ),
            ])
        );
    }
}
