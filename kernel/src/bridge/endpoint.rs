//! Which endpoints the bridge may bind without CURVE: loopback only.

use batos_metrics_http::is_loopback_host;

use crate::error::KernelError;

/// Refuses endpoints reachable from other machines. `ipc://` and `inproc://`
/// are local by nature; `tcp://` must name a loopback host.
pub fn check_local(endpoint: &str) -> Result<(), KernelError> {
    let refuse = |why: &str| {
        Err(KernelError::Refused(format!(
            "refusing to bind {endpoint:?}: {why}. Non-loopback endpoints need ZeroMQ CURVE \
             authentication: set bridge.curve_key and bridge.curve_clients (docs/protocol-notes.md), \
             or bind 127.0.0.1 (or ipc://)"
        )))
    };
    if endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://") {
        return Ok(());
    }
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return refuse("only tcp://, ipc:// and inproc:// endpoints are supported");
    };
    let host = match rest.rsplit_once(':') {
        Some((host, _port)) => host,
        None => return refuse("a tcp endpoint needs HOST:PORT"),
    };
    if is_loopback_host(host) {
        Ok(())
    } else {
        refuse("it is not a loopback address")
    }
}

#[cfg(test)]
mod tests {
    use super::check_local;

    #[test]
    fn loopback_and_local_transports_pass() {
        for ok in [
            "tcp://127.0.0.1:5555",
            "tcp://127.0.0.1:*",
            "tcp://localhost:1",
            "tcp://[::1]:5",
            "ipc:///tmp/x",
        ] {
            assert!(check_local(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        for bad in [
            "tcp://0.0.0.0:5555",
            "tcp://*:5555",
            "tcp://10.0.0.1:1",
            "tcp://eth0:5",
            "udp://127.0.0.1:1",
        ] {
            let err = check_local(bad).unwrap_err().to_string();
            assert!(err.contains("CURVE"), "{bad}: {err}");
        }
    }
}
