//! One connection to the kernel's command socket, at the level of
//! messages: how a DEALER or REQ socket is opened (CURVE, timeouts,
//! queues), requests encoded and frames sent and received. [`Client`]
//! builds calls on it; the benchmarks pipeline on it; the end-to-end tests
//! send malformed frames through it.
//!
//! [`Client`]: crate::Client

use std::time::Duration;

use rmpv::Value;

use batos_protocol::PROTOCOL_VERSION;

use crate::{ClientError, Curve};

/// The ZeroMQ pattern of the client's socket (the kernel's is a ROUTER,
/// which answers both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Many requests in flight; replies matched by `id`.
    Dealer,
    /// One request, then its reply (ZeroMQ adds the empty delimiter frame).
    Req,
}

/// How to open a [`Connection`]: `Connect::new(endpoint)...open()`.
#[derive(Clone, Copy)]
pub struct Connect<'a> {
    endpoint: &'a str,
    pattern: Pattern,
    timeout: Option<Duration>,
    curve: Option<&'a Curve>,
    context: Option<&'a zmq::Context>,
    queues: Option<i32>,
    reconnect: Option<Duration>,
}

impl<'a> Connect<'a> {
    /// A DEALER connection to `endpoint`, waiting for ever, anonymous.
    pub fn new(endpoint: &'a str) -> Connect<'a> {
        Connect {
            endpoint,
            pattern: Pattern::Dealer,
            timeout: None,
            curve: None,
            context: None,
            queues: None,
            reconnect: None,
        }
    }

    /// The socket's pattern.
    pub fn pattern(mut self, pattern: Pattern) -> Self {
        self.pattern = pattern;
        self
    }

    /// Blocking sends and receives give up after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Authenticates with CURVE when `curve` is given (a kernel with keys
    /// answers no one else).
    pub fn curve(mut self, curve: Option<&'a Curve>) -> Self {
        self.curve = curve;
        self
    }

    /// Opens the socket in `context` (one I/O thread shared by many
    /// connections) instead of a context of its own.
    pub fn context(mut self, context: &'a zmq::Context) -> Self {
        self.context = Some(context);
        self
    }

    /// Bounds this side's send and receive queues to `messages` each
    /// (ZeroMQ's default is 1000); 0 means no bound, so this client's own
    /// queues never drop or stall pipelined traffic.
    pub fn queues(mut self, messages: i32) -> Self {
        self.queues = Some(messages);
        self
    }

    /// Retries a refused connection every `interval` (ZeroMQ's default is
    /// 100 ms), for a client racing a kernel that is still starting.
    pub fn reconnect_every(mut self, interval: Duration) -> Self {
        self.reconnect = Some(interval);
        self
    }

    /// Opens the socket and connects (lazily, as ZeroMQ does: an
    /// unreachable kernel shows up as a timeout on the first receive).
    pub fn open(self) -> Result<Connection, ClientError> {
        let socket = self.socket(match self.pattern {
            Pattern::Dealer => zmq::DEALER,
            Pattern::Req => zmq::REQ,
        })?;
        socket.connect(self.endpoint)?;
        Ok(Connection {
            socket,
            endpoint: self.endpoint.to_string(),
            timeout: self.timeout,
        })
    }

    /// Subscribes to the kernel's events whose topic starts with `topic`
    /// (all for `b""`; the endpoint is then the events endpoint). Events
    /// published before ZeroMQ completes the connection are not seen.
    pub fn subscribe(self, topic: &[u8]) -> Result<Subscriber, ClientError> {
        let socket = self.socket(zmq::SUB)?;
        socket.set_subscribe(topic)?;
        socket.connect(self.endpoint)?;
        Ok(Subscriber { socket })
    }

    fn socket(&self, kind: zmq::SocketType) -> Result<zmq::Socket, ClientError> {
        let socket = match self.context {
            Some(context) => context.socket(kind)?,
            None => zmq::Context::new().socket(kind)?,
        };
        if let Some(curve) = self.curve {
            curve.apply(&socket)?;
        }
        socket.set_linger(0)?;
        if let Some(timeout) = self.timeout {
            let ms = millis(timeout);
            socket.set_rcvtimeo(ms)?;
            socket.set_sndtimeo(ms)?;
        }
        if let Some(messages) = self.queues {
            socket.set_sndhwm(messages)?;
            socket.set_rcvhwm(messages)?;
        }
        if let Some(interval) = self.reconnect {
            socket.set_reconnect_ivl(millis(interval).max(1))?;
            socket.set_reconnect_ivl_max(0)?;
        }
        Ok(socket)
    }
}

/// A SUB socket on the kernel's events endpoint (`uvm_state_update`,
/// `cycle_update`), made with [`Connect::subscribe`].
pub struct Subscriber {
    socket: zmq::Socket,
}

impl Subscriber {
    /// Subscribes to every topic.
    pub fn connect(endpoint: &str) -> Result<Subscriber, ClientError> {
        Connect::new(endpoint).subscribe(b"")
    }

    /// [`Subscriber::connect`], authenticating with CURVE when `curve` is given.
    pub fn connect_with(endpoint: &str, curve: Option<&Curve>) -> Result<Subscriber, ClientError> {
        Connect::new(endpoint).curve(curve).subscribe(b"")
    }

    /// The underlying socket.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The next event's frames (topic, then body), waiting at most
    /// `wait`; `Ok(None)` when none came in that time.
    pub fn recv_within(&self, wait: Duration) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        recv_within(&self.socket, wait)
    }
}

/// The next message on `socket`, or `None` when none came within `wait`.
pub(crate) fn recv_within(
    socket: &zmq::Socket,
    wait: Duration,
) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
    let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
    match socket.poll(zmq::POLLIN, ms) {
        Ok(0) | Err(zmq::Error::EINTR) => Ok(None),
        Ok(_) => match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => Ok(Some(frames)),
            Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => Ok(None),
            Err(err) => Err(err.into()),
        },
        Err(err) => Err(err.into()),
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// An open command-socket connection.
pub struct Connection {
    socket: zmq::Socket,
    endpoint: String,
    timeout: Option<Duration>,
}

impl Connection {
    /// The underlying socket, for what this type does not cover.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// The endpoint it connects to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The timeout it was opened with.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Sends one message of one frame, the request body (without copying
    /// it when it is a `Vec<u8>`).
    pub fn send(&self, body: impl Into<zmq::Message>) -> Result<(), ClientError> {
        self.socket.send(body, 0).map_err(|e| self.timeout_or(e))
    }

    /// Sends one message made of `frames` (for REQ, ZeroMQ adds the empty
    /// delimiter in front).
    pub fn send_frames(&self, frames: &[&[u8]]) -> Result<(), ClientError> {
        self.socket
            .send_multipart(frames.iter().copied(), 0)
            .map_err(|e| self.timeout_or(e))
    }

    /// The next message's frames, or `None` when none came within `wait`.
    pub fn recv_within(&self, wait: Duration) -> Result<Option<Vec<Vec<u8>>>, ClientError> {
        recv_within(&self.socket, wait)
    }

    /// The next message's frames, waiting at most the connection's timeout
    /// (an error once it passes).
    pub fn recv(&self) -> Result<Vec<Vec<u8>>, ClientError> {
        self.socket
            .recv_multipart(0)
            .map_err(|e| self.timeout_or(e))
    }

    fn timeout_or(&self, e: zmq::Error) -> ClientError {
        match (e, self.timeout) {
            (zmq::Error::EAGAIN, Some(timeout)) => ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout_ms: millis(timeout),
            },
            (e, _) => ClientError::Zmq(e),
        }
    }
}

/// Encodes a protocol v1 request: `{"v": 1, "id"?, "command", fields...}`.
pub fn encode_request<'k>(
    id: Option<&Value>,
    command: &str,
    fields: impl IntoIterator<Item = (&'k str, Value)>,
) -> Vec<u8> {
    let mut entries = vec![(Value::from("v"), Value::from(PROTOCOL_VERSION))];
    if let Some(id) = id {
        entries.push((Value::from("id"), id.clone()));
    }
    entries.push((Value::from("command"), Value::from(command)));
    entries.extend(fields.into_iter().map(|(k, v)| (Value::from(k), v)));
    let mut body = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut body, &Value::Map(entries))
        .expect("writing to a Vec cannot fail");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_version_id_command_and_fields_in_order() {
        let body = encode_request(
            Some(&Value::from(7)),
            "get_slot",
            [("oid", Value::from(3)), ("slot", Value::from("x"))],
        );
        let value = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        let keys: Vec<_> = value
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, ["v", "id", "command", "oid", "slot"]);
        assert_eq!(value["v"], Value::from(PROTOCOL_VERSION));
        assert_eq!(value["command"], Value::from("get_slot"));
    }

    #[test]
    fn a_request_without_id_has_no_id_key() {
        let body = encode_request(None, "ping", []);
        let value = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        assert!(value
            .as_map()
            .unwrap()
            .iter()
            .all(|(k, _)| k.as_str() != Some("id")));
    }

    #[test]
    fn a_silent_endpoint_is_a_timeout_naming_it() {
        // Nothing listens on a fresh ipc path: the send is queued, the
        // receive times out.
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}", dir.path().join("none").display());
        let connection = Connect::new(&endpoint)
            .timeout(Duration::from_millis(50))
            .open()
            .unwrap();
        connection.send(encode_request(None, "ping", [])).unwrap();
        assert!(connection
            .recv_within(Duration::from_millis(20))
            .unwrap()
            .is_none());
        match connection.recv() {
            Err(ClientError::Timeout {
                endpoint: e,
                timeout_ms: 50,
            }) => assert_eq!(e, endpoint),
            other => panic!("expected a timeout, got {:?}", other.map(|_| ())),
        }
    }
}
