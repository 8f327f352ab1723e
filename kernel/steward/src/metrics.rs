//! The steward's own Prometheus endpoint (`--steward-metrics`): kernel restarts, upgrades by outcome, and the current kernel's uptime, served by a small blocking HTTP handler on one thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{Encoder, Gauge, IntCounter, IntCounterVec, Opts, Registry, TextEncoder};

use super::channel::Outcome;
use super::error::StewardError;

/// Largest request head read.
/// A scraper that stalls longer than this is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause after a failed `accept` (no descriptor left, say), so the loop
/// waits instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The steward's metrics (cheap to clone: the handles are shared).
#[derive(Clone)]
pub(crate) struct StewardMetrics {
    registry: Registry,
    restarts: IntCounter,
    applied: IntCounter,
    rejected: IntCounter,
    rolled_back: IntCounter,
    uptime: Gauge,
    kernel_since: Arc<Mutex<Option<Instant>>>,
}

impl StewardMetrics {
    /// Registers the metrics (every outcome label exists from the start, at 0).
    pub(crate) fn new() -> Result<StewardMetrics, StewardError> {
        let err = |e: prometheus::Error| StewardError::Metrics(e.to_string());
        let registry = Registry::new();
        let restarts = IntCounter::new(
            "batos_steward_restarts_total",
            "Kernel restarts after an unexpected exit",
        )
        .map_err(err)?;
        let upgrades = IntCounterVec::new(
            Opts::new(
                "batos_steward_upgrades_total",
                "Upgrade instructions handled, by outcome",
            ),
            &["outcome"],
        )
        .map_err(err)?;
        let uptime = Gauge::new(
            "batos_steward_kernel_uptime_seconds",
            "Seconds since the current kernel answered ping after its start (0 while none is up)",
        )
        .map_err(err)?;
        registry.register(Box::new(restarts.clone())).map_err(err)?;
        registry.register(Box::new(upgrades.clone())).map_err(err)?;
        registry.register(Box::new(uptime.clone())).map_err(err)?;
        let label = |outcome: Outcome| {
            upgrades
                .get_metric_with_label_values(&[outcome.as_str()])
                .map_err(err)
        };
        Ok(StewardMetrics {
            applied: label(Outcome::Applied)?,
            rejected: label(Outcome::Rejected)?,
            rolled_back: label(Outcome::RolledBack)?,
            registry,
            restarts,
            uptime,
            kernel_since: Arc::new(Mutex::new(None)),
        })
    }

    /// One restart after an unexpected exit.
    pub(crate) fn restarted(&self) {
        self.restarts.inc();
    }

    /// One handled instruction.
    pub(crate) fn upgrade(&self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied.inc(),
            Outcome::Rejected => self.rejected.inc(),
            Outcome::RolledBack => self.rolled_back.inc(),
        }
    }

    /// A kernel is up (ready and answering) from now.
    pub(crate) fn kernel_up(&self) {
        *self.kernel_since.lock() = Some(Instant::now());
    }

    /// No kernel is up.
    pub(crate) fn kernel_down(&self) {
        *self.kernel_since.lock() = None;
    }

    /// The text exposition, with the uptime gauge brought up to date.
    pub(crate) fn render(&self) -> Result<(String, Vec<u8>), prometheus::Error> {
        let uptime = self
            .kernel_since
            .lock()
            .map(|since| since.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        self.uptime.set(uptime);
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        encoder.encode(&self.registry.gather(), &mut body)?;
        Ok((encoder.format_type().to_string(), body))
    }

    /// Serves `GET /metrics` on `listen` from a thread, for the life of the
    /// process. An empty `listen` disables the endpoint (`None`).
    pub(crate) fn serve(&self, listen: &str) -> Result<Option<SocketAddr>, StewardError> {
        if listen.is_empty() {
            return Ok(None);
        }
        let listener = TcpListener::bind(listen).map_err(|e| {
            StewardError::io(format!("binding the steward metrics endpoint {listen}"), e)
        })?;
        let addr = listener.local_addr().map_err(|e| {
            StewardError::io(
                format!("resolving the steward metrics endpoint {listen}"),
                e,
            )
        })?;
        let metrics = self.clone();
        std::thread::Builder::new()
            .name("steward-metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => {
                            if let Err(err) = metrics.answer(stream) {
                                tracing::debug!(error = %err, "steward metrics scrape failed");
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "accepting a steward metrics connection failed");
                            std::thread::sleep(ACCEPT_BACKOFF);
                        }
                    }
                }
            })
            .map_err(|e| StewardError::io("starting the steward metrics thread", e))?;
        Ok(Some(addr))
    }

    fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        // One deadline for the whole head: a client trickling a byte at a
        // time must not hold the (sequential) endpoint longer than that.
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while !batos_metrics_http::head_complete(&head) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no request head in time",
                ));
            }
            stream.set_read_timeout(Some(left))?;
            let n = stream.read(&mut buf)?;
            if n == 0 || head.len() + n > batos_metrics_http::MAX_HEAD {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let response = batos_metrics_http::http_response(&head, || {
            self.render().map_err(std::io::Error::other)
        })?;
        stream.write_all(&response)?;
        stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_exposed_from_the_start() {
        let metrics = StewardMetrics::new().unwrap();
        metrics.restarted();
        metrics.upgrade(Outcome::RolledBack);
        metrics.kernel_up();
        let (content_type, body) = metrics.render().unwrap();
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        let text = String::from_utf8(body).unwrap();
        for line in [
            "batos_steward_restarts_total 1",
            "batos_steward_upgrades_total{outcome=\"applied\"} 0",
            "batos_steward_upgrades_total{outcome=\"rejected\"} 0",
            "batos_steward_upgrades_total{outcome=\"rolled_back\"} 1",
            "# TYPE batos_steward_kernel_uptime_seconds gauge",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        metrics.kernel_down();
        let text = String::from_utf8(metrics.render().unwrap().1).unwrap();
        assert!(
            text.contains("batos_steward_kernel_uptime_seconds 0"),
            "{text}"
        );
    }

    #[test]
    fn the_endpoint_answers_scrapes() {
        let metrics = StewardMetrics::new().unwrap();
        let addr = metrics.serve("127.0.0.1:0").unwrap().unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("batos_steward_restarts_total 0"),
            "{response}"
        );
        assert_eq!(metrics.serve("").unwrap(), None);
    }
}
