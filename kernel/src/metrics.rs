//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use batos_metrics_http::{head_complete, http_response, MAX_HEAD};

use crate::error::KernelError;

/// Refuses a metrics address other machines can reach unless the
/// configuration says so: the endpoint has no authentication.
pub fn check_listen(listen: &str, allow_remote: bool) -> Result<(), KernelError> {
    batos_metrics_http::check_listen(
        listen,
        allow_remote,
        "metrics",
        "set [metrics] allow_remote = true",
    )
    .map_err(KernelError::Refused)
}

/// Binds the metrics listener.
pub async fn bind(listen: &str) -> Result<TcpListener, KernelError> {
    TcpListener::bind(listen).await.map_err(|e| {
        KernelError::Io(std::io::Error::new(
            e.kind(),
            format!("binding metrics on {listen}: {e}"),
        ))
    })
}

/// How many scrapes at once, and how long a connection may take to ask.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; the rest wait in the listen backlog.
    pub max_connections: usize,
    /// Time a connection has to send its whole request head.
    pub header_timeout: Duration,
}

/// Pause after a failed `accept` (e.g. no file descriptor left), so the
/// loop waits for the condition to clear instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves scrapes forever (the caller aborts the task at shutdown). At most
/// `limits.max_connections` are open at once: the next is accepted only
/// when one closes, and each is closed if its request head does not arrive
/// within `limits.header_timeout`.
pub async fn serve(listener: TcpListener, registry: Registry, limits: ServeLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let registry = registry.clone();
                actix::spawn(async move {
                    let _slot = slot;
                    if let Err(err) = answer(stream, &registry, limits.header_timeout).await {
                        tracing::debug!(%peer, error = %err, "metrics scrape failed");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "accepting a metrics connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    registry: &Registry,
    header_timeout: Duration,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read_head = async {
        let mut buf = [0u8; 1024];
        while !head_complete(&head) {
            let n = stream.read(&mut buf).await?;
            if n == 0 || head.len() + n > MAX_HEAD {
                return Ok(false);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(true)
    };
    match tokio::time::timeout(header_timeout, read_head).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return Ok(()),
        Ok(Err(err)) => return Err(err),
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request head in time",
            ))
        }
    }
    let response = http_response(&head, || render(registry))?;
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Prometheus text of a registry: content type and body.
pub fn render(registry: &Registry) -> std::io::Result<(String, Vec<u8>)> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&registry.gather(), &mut body)
        .map_err(std::io::Error::other)?;
    Ok((encoder.format_type().to_string(), body))
}

/// The address a listener is bound to, for the ready line.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

#[cfg(test)]
mod tests {
    use super::check_listen;

    #[test]
    fn a_remote_metrics_address_needs_allow_remote() {
        assert!(check_listen("127.0.0.1:9464", false).is_ok());
        let err = check_listen("0.0.0.0:9464", false).unwrap_err().to_string();
        assert!(err.contains("allow_remote"), "{err}");
        assert!(check_listen("0.0.0.0:9464", true).is_ok());
    }
}
