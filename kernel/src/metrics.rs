//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1.

use std::net::SocketAddr;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::KernelError;

/// Binds the metrics listener.
pub async fn bind(listen: &str) -> Result<TcpListener, KernelError> {
    TcpListener::bind(listen).await.map_err(|e| {
        KernelError::Io(std::io::Error::new(
            e.kind(),
            format!("binding metrics on {listen}: {e}"),
        ))
    })
}

/// Serves scrapes forever (the caller aborts the task at shutdown).
pub async fn serve(listener: TcpListener, registry: Registry) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let registry = registry.clone();
                actix::spawn(async move {
                    if let Err(err) = answer(stream, &registry).await {
                        tracing::debug!(%peer, error = %err, "metrics scrape failed");
                    }
                });
            }
            Err(err) => tracing::warn!(error = %err, "accepting a metrics connection failed"),
        }
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head_complete(&head) {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let response = http_response(&head, || render(registry))?;
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// Largest request head a metrics endpoint reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// Whether `head` holds a whole HTTP request head.
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
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

/// The whole HTTP/1.1 response to a request head: the rendered metrics for
/// `GET /metrics`, 404 for anything else. Shared by the kernel's and the
/// steward's endpoints.
pub fn http_response(
    head: &[u8],
    render: impl FnOnce() -> std::io::Result<(String, Vec<u8>)>,
) -> std::io::Result<Vec<u8>> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) =
        if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
            let (content_type, body) = render()?;
            ("200 OK", content_type, body)
        } else {
            (
                "404 Not Found",
                "text/plain".to_string(),
                b"try GET /metrics\n".to_vec(),
            )
        };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    Ok(response)
}

/// The address a listener is bound to, for the ready line.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
