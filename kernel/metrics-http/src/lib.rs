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
