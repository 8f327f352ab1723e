//! The blocking client of the Synaptic Bridge (a DEALER socket for
//! commands, a SUB socket for events), used by the `batos` subcommands for
//! people, the inspector, the steward and the benchmarks.

pub mod keys;
mod ready;

use rmpv::Value;

use batos_protocol::{ErrorCode, WireError, PROTOCOL_VERSION};

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

/// A connection to the kernel.
pub struct Client {
    socket: zmq::Socket,
    endpoint: String,
    timeout_ms: i32,
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
        let socket = zmq::Context::new().socket(zmq::DEALER)?;
        if let Some(curve) = curve {
            curve.apply(&socket)?;
        }
        socket.set_linger(0)?;
        socket.set_rcvtimeo(timeout_ms)?;
        socket.set_sndtimeo(timeout_ms)?;
        socket.connect(endpoint)?;
        Ok(Client {
            socket,
            endpoint: endpoint.to_string(),
            timeout_ms,
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
        let mut entries = vec![
            (Value::from("v"), Value::from(PROTOCOL_VERSION)),
            (Value::from("id"), Value::from(id)),
            (Value::from("command"), Value::from(command)),
        ];
        entries.extend(fields.into_iter().map(|(k, v)| (Value::from(k), v)));
        let mut body = Vec::new();
        rmpv::encode::write_value(&mut body, &Value::Map(entries))
            .expect("writing to a Vec cannot fail");
        self.socket.send(body, 0).map_err(|e| self.timeout_or(e))?;
        loop {
            let reply = self.socket.recv_bytes(0).map_err(|e| self.timeout_or(e))?;
            let (reply_id, outcome) = parse_reply(&reply)?;
            // Replies to earlier calls that timed out are skipped.
            if reply_id.as_ref().and_then(Value::as_u64) == Some(id) {
                return Ok(outcome);
            }
        }
    }

    fn timeout_or(&self, e: zmq::Error) -> ClientError {
        if e == zmq::Error::EAGAIN {
            ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout_ms: self.timeout_ms,
            }
        } else {
            ClientError::Zmq(e)
        }
    }
}

/// A SUB socket on the kernel's events endpoint, subscribed to every topic
/// (`uvm_state_update`, `cycle_update`).
pub struct Subscriber {
    socket: zmq::Socket,
}

impl Subscriber {
    /// Connects and subscribes (lazily, as ZeroMQ connects: events
    /// published before the connection completes are not seen).
    pub fn connect(endpoint: &str) -> Result<Subscriber, ClientError> {
        Self::connect_with(endpoint, None)
    }

    /// [`Subscriber::connect`], authenticating with CURVE when `curve` is given.
    pub fn connect_with(endpoint: &str, curve: Option<&Curve>) -> Result<Subscriber, ClientError> {
        let socket = zmq::Context::new().socket(zmq::SUB)?;
        if let Some(curve) = curve {
            curve.apply(&socket)?;
        }
        socket.set_linger(0)?;
        socket.set_subscribe(b"")?;
        socket.connect(endpoint)?;
        Ok(Subscriber { socket })
    }

    /// The next event's frames (topic, then body), waiting at most
    /// `timeout_ms`; `Ok(None)` when none came in that time.
    pub fn recv(&self, timeout_ms: i64) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        match self.socket.poll(zmq::POLLIN, timeout_ms) {
            Ok(0) | Err(zmq::Error::EINTR) => Ok(None),
            Ok(_) => match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => Ok(Some(frames)),
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
                Err(err) => Err(err.into()),
            },
            Err(err) => Err(err.into()),
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
