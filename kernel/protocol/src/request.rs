//! Decoding a request body: MessagePack map → envelope checks → [`Command`].
//!
//! Order of checks (protocol.md): a body that is not a MessagePack map is
//! `bad_request` without `id`; then `id` (a scalar) is taken so every later
//! error echoes it; then `v` and `command`, then the command's fields.

use rmpv::Value;

use super::command::Fields;
use super::{Command, ErrorCode, WireError, MAX_DEPTH, MAX_ELEMENTS, PROTOCOL_VERSION};

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's `id`, echoed in the reply.
    pub id: Option<Value>,
    /// The command and its fields.
    pub command: Command,
}

/// A body that could not become a [`Request`]: the error, and the `id` to
/// echo if the body was a map with a usable `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The id to echo (None when the body was not a map or the id was not a scalar).
    pub id: Option<Value>,
    /// What was wrong.
    pub error: WireError,
    /// The command name, when it was a known one (for metrics).
    pub command: Option<&'static str>,
}

fn fail(id: Option<Value>, code: ErrorCode, message: impl Into<String>) -> DecodeError {
    DecodeError {
        id,
        error: WireError::new(code, message),
        command: None,
    }
}

/// Decodes one request body. Never panics, whatever the bytes.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    if let Err(n) = super::elements::count_values(body, MAX_ELEMENTS) {
        return Err(fail(
            None,
            ErrorCode::TooLarge,
            format!(
                "the body holds more than {} values (at least {n})",
                MAX_ELEMENTS
            ),
        ));
    }
    let mut reader = body;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH).map_err(|e| {
        fail(
            None,
            ErrorCode::BadRequest,
            format!("body is not MessagePack: {e}"),
        )
    })?;
    if !reader.is_empty() {
        return Err(fail(
            None,
            ErrorCode::BadRequest,
            "trailing bytes after the MessagePack body",
        ));
    }
    let Value::Map(entries) = value else {
        return Err(fail(
            None,
            ErrorCode::BadRequest,
            "body must be a MessagePack map",
        ));
    };
    if let Some((key, _)) = entries.iter().find(|(k, _)| k.as_str().is_none()) {
        return Err(fail(
            None,
            ErrorCode::BadRequest,
            format!("request keys must be UTF-8 strings, got {key}"),
        ));
    }
    let fields = Fields(&entries);
    let id = match entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("id"))
        .map(|(_, v)| v)
    {
        None => None,
        Some(Value::Array(_) | Value::Map(_) | Value::Ext(..)) => {
            return Err(fail(
                None,
                ErrorCode::BadRequest,
                "`id` must be a scalar (nil, bool, int, float, str or bin)",
            ))
        }
        Some(id) => Some(id.clone()),
    };
    match entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("v"))
        .map(|(_, v)| v)
    {
        None => {
            return Err(fail(
                id,
                ErrorCode::BadRequest,
                "missing field `v` (protocol version)",
            ))
        }
        Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
        Some(Value::Integer(_) | Value::F32(_) | Value::F64(_)) => {
            return Err(fail(
                id,
                ErrorCode::UnsupportedVersion,
                "this kernel speaks protocol version 1",
            ))
        }
        Some(_) => return Err(fail(id, ErrorCode::BadRequest, "`v` must be an int")),
    }
    let name = match entries
        .iter()
        .find(|(k, _)| k.as_str() == Some("command"))
        .map(|(_, v)| v)
    {
        None => return Err(fail(id, ErrorCode::BadRequest, "missing field `command`")),
        Some(Value::String(s)) => match s.as_str() {
            Some(s) => s,
            None => {
                return Err(fail(
                    id,
                    ErrorCode::BadRequest,
                    "`command` is not valid UTF-8",
                ))
            }
        },
        Some(_) => return Err(fail(id, ErrorCode::BadRequest, "`command` must be a str")),
    };
    let known = Command::NAMES.iter().copied().find(|n| *n == name);
    match Command::parse(name, &fields) {
        Ok(command) => Ok(Request { id, command }),
        Err(error) => Err(DecodeError {
            id,
            error,
            command: known,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(pairs: Vec<(&str, Value)>) -> Vec<u8> {
        let map = Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        );
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &map).unwrap();
        out
    }

    #[test]
    fn a_valid_request_decodes() {
        let body = encode(vec![
            ("v", Value::from(1)),
            ("id", Value::from("a")),
            ("command", Value::from("get_slot")),
            ("oid", Value::from("genesis_obj")),
            ("slot", Value::from("x")),
        ]);
        let req = decode_request(&body).unwrap();
        assert_eq!(req.id, Some(Value::from("a")));
        assert_eq!(req.command.name(), "get_slot");
    }

    #[test]
    fn envelope_errors_have_the_right_codes_and_ids() {
        let code = |body: Vec<u8>| decode_request(&body).unwrap_err();
        assert_eq!(code(vec![0xc1]).error.code, ErrorCode::BadRequest);
        assert_eq!(
            code(encode(vec![("v", Value::from(1))])).error.code,
            ErrorCode::BadRequest
        );
        let e = code(encode(vec![
            ("v", Value::from(2)),
            ("id", Value::from(5)),
            ("command", Value::from("ping")),
        ]));
        assert_eq!(
            (e.error.code, e.id),
            (ErrorCode::UnsupportedVersion, Some(Value::from(5)))
        );
        let e = code(encode(vec![
            ("v", Value::from(1)),
            ("id", Value::F64(1.0)),
            ("command", Value::from("nope")),
        ]));
        assert_eq!(
            (e.error.code, e.id),
            (ErrorCode::UnknownCommand, Some(Value::F64(1.0)))
        );
        let e = code(encode(vec![
            ("v", Value::from(1)),
            ("id", Value::Array(vec![])),
            ("command", Value::from("ping")),
        ]));
        assert_eq!((e.error.code, e.id), (ErrorCode::BadRequest, None));
        let e = code(encode(vec![
            ("v", Value::from(1)),
            ("command", Value::from("infer")),
        ]));
        assert_eq!(e.error.code, ErrorCode::BadRequest);
        assert_eq!(e.command, Some("infer"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut body = vec![0x91; 100_000];
        body.push(0xc0);
        assert_eq!(
            decode_request(&body).unwrap_err().error.code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn huge_length_headers_do_not_allocate() {
        // array32 claiming 2^32-1 items, str32 claiming 4 GiB: no data follows.
        for body in [
            vec![0xdd, 0xff, 0xff, 0xff, 0xff],
            vec![0xdb, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(
                decode_request(&body).unwrap_err().error.code,
                ErrorCode::BadRequest
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_request(&bytes);
        }
    }
}
