//! The Prometheus endpoint: `GET /metrics` over plain HTTP/1.1.

use std::net::SocketAddr;

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use batos_metrics_http::{head_complete, http_response, MAX_HEAD};

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
