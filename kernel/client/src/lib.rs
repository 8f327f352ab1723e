//! The blocking client of the Synaptic Bridge (a DEALER socket for
//! commands, a SUB socket for events) and the way a `batos run` child is
//! started and awaited, used by the `batos` subcommands for people, the
//! inspector, the steward, the benchmarks and the end-to-end tests.

mod connection;
pub mod keys;
pub mod launch;
mod ready;

use std::time::Duration;

use rmpv::Value;

use batos_protocol::{ErrorCode, WireError};

pub use connection::{encode_request, Connect, Connection, Pattern, Subscriber};
pub use keys::{KeyError, KeyPair};
pub use ready::ReadyLine;

/// A client's CURVE credentials: its key pair and the kernel's public key.
#[derive(Clone, Debug)]
pub struct Curve {
    /// The kernel's public key (Z85).
    pub server: String,
    /// This client's key pair.
    pub pair: KeyPair,
}

impl Curve {
    /// Reads the kernel's public key file and this client's key pair file.
    pub fn load(server_key: &std::path::Path, key: &std::path::Path) -> Result<Curve, KeyError> {
        Ok(Curve {
            server: keys::read_public(server_key)?,
            pair: KeyPair::read(key)?,
        })
    }

    /// Makes `socket` a CURVE client with these keys (before it connects).
    pub fn apply(&self, socket: &zmq::Socket) -> Result<(), ClientError> {
        let key = |k: &str| keys::decode(k).map_err(|e| ClientError::Malformed(e.0));
        socket.set_curve_serverkey(&key(&self.server)?)?;
        socket.set_curve_publickey(&key(&self.pair.public)?)?;
        socket.set_curve_secretkey(&key(&self.pair.secret)?)?;
        Ok(())
    }
}

/// Why a call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// ZeroMQ failed (bad endpoint, socket error).
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    /// No reply within the timeout: the kernel is not reachable.
    #[error("no reply from {endpoint} within {timeout_ms} ms (is the kernel running?)")]
    Timeout {
        /// Where we sent.
        endpoint: String,
        /// How long we waited.
        timeout_ms: i32,
    },
    /// The reply was not a protocol v1 reply.
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// A connection to the kernel, one call at a time.
pub struct Client {
    connection: Connection,
    next_id: u64,
}

impl Client {
    /// Connects a DEALER socket (connecting is lazy in ZeroMQ: errors show up
    /// as a timeout on the first call).
    pub fn connect(endpoint: &str, timeout_ms: i32) -> Result<Client, ClientError> {
        Self::connect_with(endpoint, timeout_ms, None)
    }

    /// [`Client::connect`], authenticating with CURVE when `curve` is given
    /// (a kernel with keys answers no one else).
    pub fn connect_with(
        endpoint: &str,
        timeout_ms: i32,
        curve: Option<&Curve>,
    ) -> Result<Client, ClientError> {
        let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        let connection = Connect::new(endpoint)
            .timeout(timeout)
            .curve(curve)
            .open()?;
        Ok(Client {
            connection,
            next_id: 1,
        })
    }

    /// Sends one command and waits for its reply: `Ok(Ok(result))`, or the
    /// kernel's error as `Ok(Err(..))`.
    pub fn call(
        &mut self,
        command: &str,
        fields: Vec<(&str, Value)>,
    ) -> Result<Result<Value, WireError>, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.connection
            .send(encode_request(Some(&Value::from(id)), command, fields))?;
        loop {
            let frames = self.connection.recv()?;
            let body = frames
                .last()
                .ok_or_else(|| ClientError::Malformed("an empty message".into()))?;
            let (reply_id, outcome) = parse_reply(body)?;
            // Replies to earlier calls that timed out are skipped.
            if reply_id.as_ref().and_then(Value::as_u64) == Some(id) {
                return Ok(outcome);
            }
        }
    }
}

/// Splits a reply body into its `id` and outcome.
pub fn parse_reply(
    mut body: &[u8],
) -> Result<(Option<Value>, Result<Value, WireError>), ClientError> {
    let value =
        rmpv::decode::read_value(&mut body).map_err(|e| ClientError::Malformed(e.to_string()))?;
    let Value::Map(entries) = value else {
        return Err(ClientError::Malformed("reply is not a map".into()));
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
    };
    let id = get("id");
    match get("status").as_ref().and_then(Value::as_str) {
        Some("ok") => Ok((id, Ok(get("result").unwrap_or(Value::Nil)))),
        Some("error") => {
            let error = get("error")
                .ok_or_else(|| ClientError::Malformed("error reply without `error`".into()))?;
            let field = |k: &str| {
                error
                    .as_map()
                    .and_then(|m| m.iter().find(|(key, _)| key.as_str() == Some(k)))
                    .and_then(|(_, v)| v.as_str().map(str::to_string))
            };
            let code = field("code")
                .and_then(|c| ErrorCode::parse(&c))
                .unwrap_or(ErrorCode::Internal);
            Ok((
                id,
                Err(WireError::new(code, field("message").unwrap_or_default())),
            ))
        }
        _ => Err(ClientError::Malformed("reply has no valid `status`".into())),
    }
}
