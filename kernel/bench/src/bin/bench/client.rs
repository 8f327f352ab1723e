//! The bench's calls on `batos_client`'s connection: requests encoded
//! once, many in flight, replies matched by id.

use super::*;

/// One request: the command and its own fields (`v` and `id` are added).
pub(crate) struct Req {
    pub(crate) command: &'static str,
    pub(crate) fields: Vec<(&'static str, Value)>,
}

impl Req {
    pub(crate) fn new(command: &'static str, fields: Vec<(&'static str, Value)>) -> Req {
        Req { command, fields }
    }
}

pub(crate) fn encode_request(id: u64, req: Req) -> Vec<u8> {
    batos_client::encode_request(Some(&Value::from(id)), req.command, req.fields)
}

pub(crate) fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

pub(crate) fn oid_ref(oid: u64) -> Value {
    map(vec![("$ref", Value::from(oid))])
}

/// A decoded reply: its `id` and `result` or error text.
pub(crate) struct Reply {
    pub(crate) id: Option<u64>,
    pub(crate) result: Result<Value, String>,
}

impl Reply {
    pub(crate) fn decode(body: &[u8]) -> Result<Reply> {
        let (id, outcome) = batos_client::parse_reply(body)?;
        Ok(Reply {
            id: id.as_ref().and_then(Value::as_u64),
            result: outcome.map_err(|e| e.to_string()),
        })
    }
}

/// A DEALER connection to the kernel's command socket; requests carry
/// increasing integer ids so several can be in flight.
pub(crate) struct Client {
    pub(crate) connection: Connection,
    pub(crate) next_id: u64,
    /// The server's process, when it is one (its CPU time is measured).
    pub(crate) server_pid: Option<u32>,
}

impl Client {
    pub(crate) fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        timeout: Duration,
        curve: Option<&Curve>,
    ) -> Result<Client> {
        let connection = Connect::new(endpoint)
            .context(ctx)
            .timeout(timeout)
            .curve(curve)
            .open()
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Client {
            connection,
            next_id: 1,
            server_pid: None,
        })
    }

    /// How long a blocking receive waits.
    pub(crate) fn timeout(&self) -> Duration {
        self.connection.timeout().unwrap_or_default()
    }

    pub(crate) fn send(&mut self, req: Req) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let command = req.command;
        self.connection
            .send(encode_request(id, req))
            .with_context(|| format!("sending `{command}`"))?;
        Ok(id)
    }

    /// The next reply, or `None` when none came within the timeout.
    pub(crate) fn recv(&mut self) -> Result<Option<Reply>> {
        match self.connection.recv() {
            Ok(frames) => {
                let body = frames.last().context("an empty reply message")?;
                Ok(Some(Reply::decode(body)?))
            }
            Err(batos_client::ClientError::Timeout { .. }) => Ok(None),
            Err(e) => Err(anyhow!(e).context("receiving a reply")),
        }
    }

    /// One request, waiting for its reply; an error reply is an `Err`.
    pub(crate) fn call(
        &mut self,
        command: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<Value> {
        let id = self.send(Req::new(command, fields))?;
        loop {
            match self.recv()? {
                None => bail!("no reply to `{command}` within {:?}", self.timeout()),
                Some(r) if r.id == Some(id) => {
                    return r.result.map_err(|e| anyhow!("`{command}` failed: {e}"))
                }
                Some(_) => {} // a late reply to an abandoned request
            }
        }
    }
}

pub(crate) fn oid_of(v: &Value) -> Result<u64> {
    v["oid"]
        .as_u64()
        .with_context(|| format!("a result without an integer `oid`: {v}"))
}
