//! Who may connect: the allow-list of clients' CURVE public keys, each with
//! its role, and the ZAP handler (ZeroMQ's authentication protocol, RFC 27)
//! that libzmq asks about every CURVE handshake on the bridge's sockets.
//!
//! The allow-list is a directory with one subdirectory per role (`read/`,
//! `write/`, `admin/`) holding clients' public key files (`NAME.pub`, as
//! `batos keys new` writes them). An admitted connection's ZAP user id is
//! `ROLE:NAME`: libzmq attaches it to every message as `User-Id`, and the
//! bridge runs the message with that role.

use std::collections::HashMap;
use std::path::Path;
use std::thread::JoinHandle;

use batos_actors::Role;
use batos_client::keys;
use prometheus::IntCounter;

use crate::error::KernelError;

/// Where libzmq sends ZAP requests (fixed by RFC 27).
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// Where the handler listens for its stop signal.
const STOP_ENDPOINT: &str = "inproc://batos.zap.stop";
/// The ZAP domain of the bridge's sockets.
pub const DOMAIN: &str = "batos";
/// Allow-listed clients at most (each is a file read at start).
const MAX_CLIENTS: usize = 100_000;

/// The clients allowed in: public key → (name, role).
#[derive(Debug, Default)]
pub struct AllowList {
    clients: HashMap<[u8; 32], (String, Role)>,
}

impl AllowList {
    /// Reads `dir/ROLE/NAME.pub` for every client role; refuses a key listed
    /// twice, a file that is not a public key, and other entries.
    pub fn load(dir: &Path) -> Result<AllowList, KernelError> {
        let refuse = |what: String| KernelError::Config(format!("bridge.curve_clients: {what}"));
        let mut clients = HashMap::new();
        let top = std::fs::read_dir(dir).map_err(|e| refuse(format!("{}: {e}", dir.display())))?;
        for entry in top {
            let entry = entry.map_err(|e| refuse(e.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if Role::parse(&name).is_none() {
                return Err(refuse(format!(
                    "{} is not a role directory (read, write or admin)",
                    entry.path().display()
                )));
            }
        }
        for role in Role::CLIENT {
            let role_dir = dir.join(role.as_str());
            let Ok(files) = std::fs::read_dir(&role_dir) else {
                continue;
            };
            for file in files {
                let path = file.map_err(|e| refuse(e.to_string()))?.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".pub"))
                else {
                    return Err(refuse(format!(
                        "{} is not a public key file (NAME.pub)",
                        path.display()
                    )));
                };
                let key = keys::read_public(&path).map_err(|e| refuse(e.0))?;
                let key = keys::decode(&key).map_err(|e| refuse(e.0))?;
                if let Some((other, _)) = clients.insert(key, (name.to_string(), role)) {
                    return Err(refuse(format!(
                        "{} repeats the key of client {other:?}",
                        path.display()
                    )));
                }
                if clients.len() > MAX_CLIENTS {
                    return Err(refuse(format!("more than {MAX_CLIENTS} clients")));
                }
            }
        }
        if clients.is_empty() {
            return Err(refuse(format!(
                "{} allows no client: put clients' NAME.pub files under read/, write/ or admin/",
                dir.display()
            )));
        }
        Ok(AllowList { clients })
    }

    /// Clients allowed in.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is allowed in.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// The ZAP user id for a CURVE client key, if it is allowed in.
    fn user_id(&self, key: &[u8]) -> Option<String> {
        let key: [u8; 32] = key.try_into().ok()?;
        let (name, role) = self.clients.get(&key)?;
        Some(format!("{}:{name}", role.as_str()))
    }
}

/// The role a message's ZAP user id (`ROLE:NAME`) names; `read`, the least,
/// if it names none.
pub fn role_of(user_id: Option<&str>) -> Role {
    user_id
        .and_then(|id| id.split_once(':'))
        .and_then(|(role, _)| Role::parse(role))
        .unwrap_or(Role::Read)
}

/// The running ZAP handler; dropping it stops the handler thread.
pub struct Zap {
    stop: zmq::Socket,
    thread: Option<JoinHandle<()>>,
}

impl Zap {
    /// Binds the handler in `ctx` (before any CURVE socket binds, or libzmq
    /// would let every client in) and serves it on a thread of its own.
    pub fn start(
        ctx: &zmq::Context,
        allow: AllowList,
        refused: IntCounter,
    ) -> Result<Zap, KernelError> {
        let zmq_err = |what: &str, e: zmq::Error| KernelError::Bridge(format!("ZAP {what}: {e}"));
        let handler = ctx.socket(zmq::REP).map_err(|e| zmq_err("socket", e))?;
        handler.set_linger(0).map_err(|e| zmq_err("linger", e))?;
        handler.bind(ZAP_ENDPOINT).map_err(|e| zmq_err("bind", e))?;
        let stop_rx = ctx.socket(zmq::PAIR).map_err(|e| zmq_err("socket", e))?;
        stop_rx
            .bind(STOP_ENDPOINT)
            .map_err(|e| zmq_err("bind", e))?;
        let stop = ctx.socket(zmq::PAIR).map_err(|e| zmq_err("socket", e))?;
        stop.set_linger(0).map_err(|e| zmq_err("linger", e))?;
        stop.connect(STOP_ENDPOINT)
            .map_err(|e| zmq_err("connect", e))?;
        let thread = std::thread::Builder::new()
            .name("zap".into())
            .spawn(move || serve(handler, stop_rx, allow, refused))
            .map_err(|e| KernelError::Bridge(format!("ZAP thread: {e}")))?;
        Ok(Zap {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Zap {
    fn drop(&mut self) {
        let _ = self.stop.send("stop", 0);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers ZAP requests until told to stop.
fn serve(handler: zmq::Socket, stop: zmq::Socket, allow: AllowList, refused: IntCounter) {
    loop {
        let mut items = [
            handler.as_poll_item(zmq::POLLIN),
            stop.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, -1) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => continue,
            Err(err) => {
                tracing::error!(error = %err, "the ZAP handler stopped; no client can connect");
                return;
            }
        }
        if items[1].is_readable() {
            return;
        }
        if !items[0].is_readable() {
            continue;
        }
        let request = match handler.recv_multipart(0) {
            Ok(frames) => frames,
            Err(zmq::Error::EINTR) => continue,
            Err(err) => {
                tracing::error!(error = %err, "the ZAP handler stopped; no client can connect");
                return;
            }
        };
        let reply = answer(&request, &allow);
        if reply[2] != b"200" {
            refused.inc();
            tracing::warn!(
                address = %String::from_utf8_lossy(request.get(3).map_or(&[][..], |v| v)),
                why = %String::from_utf8_lossy(&reply[3]),
                "refused a bridge connection"
            );
        }
        if let Err(err) = handler.send_multipart(reply, 0) {
            tracing::error!(error = %err, "answering a ZAP request failed");
        }
    }
}

/// The ZAP reply to one request: version, request id, status code and
/// text, user id, metadata.
fn answer(request: &[Vec<u8>], allow: &AllowList) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: String| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.into_bytes(),
            Vec::new(),
        ]
    };
    // version, request id, domain, address, routing id, mechanism, credentials
    if request.len() < 6 || request[0] != b"1.0" {
        return reply("400", "malformed ZAP request", String::new());
    }
    if request[2] != DOMAIN.as_bytes() {
        return reply("400", "unknown ZAP domain", String::new());
    }
    if request[5] != b"CURVE" || request.len() != 7 {
        return reply("400", "only CURVE clients are admitted", String::new());
    }
    match allow.user_id(&request[6]) {
        Some(user) => reply("200", "OK", user),
        None => reply("400", "unknown client key", String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mechanism: &str, key: &[u8]) -> Vec<Vec<u8>> {
        vec![
            b"1.0".to_vec(),
            b"7".to_vec(),
            DOMAIN.as_bytes().to_vec(),
            b"10.0.0.2".to_vec(),
            Vec::new(),
            mechanism.as_bytes().to_vec(),
            key.to_vec(),
        ]
    }

    #[test]
    fn known_keys_get_their_role_and_everyone_else_a_refusal() {
        let mut allow = AllowList::default();
        allow
            .clients
            .insert([1; 32], ("alice".to_string(), Role::Write));
        let ok = answer(&request("CURVE", &[1; 32]), &allow);
        assert_eq!(ok[1], b"7", "the request id is echoed");
        assert_eq!(ok[2], b"200");
        assert_eq!(role_of(std::str::from_utf8(&ok[4]).ok()), Role::Write);
        for bad in [
            request("CURVE", &[2; 32]),
            request("NULL", &[1; 32]),
            request("CURVE", &[1; 31]),
            vec![b"1.0".to_vec()],
        ] {
            assert_eq!(answer(&bad, &allow)[2], b"400", "{bad:?}");
        }
        assert_eq!(role_of(None), Role::Read);
        assert_eq!(role_of(Some("root:eve")), Role::Read);
    }
}
