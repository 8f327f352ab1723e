//! The bench's own bridge client: requests encoded once, replies decoded.

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

pub(crate) fn encode_request(id: u64, req: Req) -> Result<Vec<u8>> {
    let mut entries = Vec::with_capacity(3 + req.fields.len());
    entries.push((Value::from("v"), Value::from(1)));
    entries.push((Value::from("id"), Value::from(id)));
    entries.push((Value::from("command"), Value::from(req.command)));
    for (k, v) in req.fields {
        entries.push((Value::from(k), v));
    }
    let mut buf = Vec::with_capacity(64);
    rmpv::encode::write_value(&mut buf, &Value::Map(entries))
        .map_err(|e| anyhow!("encoding a request: {e}"))?;
    Ok(buf)
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
        let mut rd = body;
        let value = rmpv::decode::read_value(&mut rd).context("a reply that is not MessagePack")?;
        let entries = match value {
            Value::Map(entries) => entries,
            other => bail!("a reply that is not a map: {other}"),
        };
        let (mut id, mut v, mut status, mut result, mut error) =
            (None, None, None, Value::Nil, Value::Nil);
        for (k, val) in entries {
            match k.as_str() {
                Some("id") => id = val.as_u64(),
                Some("v") => v = val.as_i64(),
                Some("status") => status = val.as_str().map(str::to_string),
                Some("result") => result = val,
                Some("error") => error = val,
                _ => {}
            }
        }
        let result = match (v, status.as_deref()) {
            (Some(1), Some("ok")) => Ok(result),
            (Some(1), Some("error")) => Err(format!(
                "{}: {}",
                error["code"].as_str().unwrap_or("(no code)"),
                error["message"].as_str().unwrap_or("(no message)")
            )),
            (v, status) => Err(format!(
                "malformed reply envelope (v={v:?}, status={status:?})"
            )),
        };
        Ok(Reply { id, result })
    }
}

/// A DEALER connection to the kernel's command socket; requests carry
/// increasing integer ids so several can be in flight.
pub(crate) struct Client {
    pub(crate) sock: zmq::Socket,
    pub(crate) next_id: u64,
    pub(crate) timeout: Duration,
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
        let sock = ctx
            .socket(zmq::DEALER)
            .context("creating a DEALER socket")?;
        if let Some(curve) = curve {
            curve.apply(&sock).context("CURVE client options")?;
        }
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        sock.set_linger(0)?;
        sock.set_rcvtimeo(ms)?;
        sock.set_sndtimeo(ms)?;
        sock.connect(endpoint)
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Client {
            sock,
            next_id: 1,
            timeout,
            server_pid: None,
        })
    }

    pub(crate) fn send(&mut self, req: Req) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let command = req.command;
        let body = encode_request(id, req)?;
        self.sock
            .send(body, 0)
            .with_context(|| format!("sending `{command}`"))?;
        Ok(id)
    }

    /// The next reply, or `None` when none came within the timeout.
    pub(crate) fn recv(&mut self) -> Result<Option<Reply>> {
        match self.sock.recv_multipart(0) {
            Ok(frames) => {
                let body = frames.last().context("an empty reply message")?;
                Ok(Some(Reply::decode(body)?))
            }
            Err(zmq::Error::EAGAIN) => Ok(None),
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
                None => bail!("no reply to `{command}` within {:?}", self.timeout),
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
