//! The HTTP/1.1 responder behind both `/metrics` endpoints, the kernel's
//! and the steward's: how much of a request head is read, and the whole
//! response to it (the rendered metrics for `GET /metrics`, 404 otherwise).
//! Plain functions over bytes, so each endpoint keeps its own I/O.

/// Largest request head a metrics endpoint reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// Whether `head` holds a whole HTTP request head.
pub fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The whole HTTP/1.1 response to a request head: the rendered metrics for
/// `GET /metrics`, 404 for anything else.
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

/// Refuses to serve `what` on `listen` when other machines can reach it,
/// unless `allow_remote`: neither `/metrics` endpoint has authentication.
/// `how_to_allow` tells the user what to set.
pub fn check_listen(
    listen: &str,
    allow_remote: bool,
    what: &str,
    how_to_allow: &str,
) -> Result<(), String> {
    if allow_remote || listen.is_empty() || is_loopback_listen(listen) {
        return Ok(());
    }
    Err(format!(
        "refusing to serve {what} on {listen:?}: it is not a loopback address and the \
         endpoint has no authentication; {how_to_allow} to expose it anyway"
    ))
}

/// Whether a `HOST:PORT` listen address is this machine's loopback (a
/// name or an address, IPv6 in brackets or not). Neither `/metrics`
/// endpoint has authentication, so each refuses other addresses unless
/// told otherwise.
pub fn is_loopback_listen(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(host, _port)| host);
    is_loopback_host(host)
}

/// Whether `host` (a name or an address, IPv6 in brackets or not) is this
/// machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::is_loopback_listen;

    #[test]
    fn loopback_listen_addresses() {
        for ok in ["127.0.0.1:9464", "localhost:0", "[::1]:9464", "127.0.0.2:1"] {
            assert!(is_loopback_listen(ok), "{ok}");
        }
        for remote in [
            "0.0.0.0:9464",
            "[::]:9464",
            "10.0.0.5:9464",
            "example.org:80",
        ] {
            assert!(!is_loopback_listen(remote), "{remote}");
        }
    }
}
