//! The Synaptic Bridge: the kernel's only module that touches ZeroMQ. A ROUTER
//! socket takes requests (REQ or DEALER clients, pipelined by `id`), a PUB
//! socket publishes events. Every request gets exactly one reply.

pub mod endpoint;
pub mod events;
pub mod zap;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures::future::LocalBoxFuture;
use futures::{FutureExt, StreamExt};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use rmpv::Value;
use tmq::{FromZmqSocket, Multipart};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::cmd::{self, Context};
use crate::config::BridgeConfig;
use crate::error::KernelError;
use crate::protocol::{
    decode_request, encode_reply, Command, DecodeError, ErrorCode, Request, WireError,
};
use batos_actors::Role;

/// Metrics label for bodies that named no known command.
const INVALID: &str = "invalid";
/// Frames before the body a request may carry (routing ids, delimiter):
/// they are kept until the reply, so they are bounded like the body.
const MAX_ENVELOPE_FRAMES: usize = 16;
/// Bytes of those frames in all.
const MAX_ENVELOPE_BYTES: usize = 4096;
/// Bodies larger than this are decoded off the bridge's task (which serves
/// every client); smaller ones cost less than the hand-off.
const DECODE_INLINE_MAX: usize = 64 * 1024;
/// Large bodies decoded at once, off the bridge's task.
const DECODERS: usize = 2;

/// Request metrics of the bridge.
#[derive(Clone)]
pub struct BridgeMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    inflight: IntGauge,
    refused_connections: IntCounter,
    replies_dropped: IntCounterVec,
}

impl BridgeMetrics {
    /// Creates and registers the collectors.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "batos_bridge_requests_total",
                "Requests answered, by command and status (ok or error code)",
            ),
            &["command", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "batos_bridge_request_duration_seconds",
                "Time from receiving a request to its reply",
            )
            .buckets(prometheus::exponential_buckets(0.000_01, 2.0, 20)?),
            &["command"],
        )?;
        let inflight = IntGauge::new("batos_bridge_inflight_requests", "Requests being worked on")?;
        let refused_connections = IntCounter::new(
            "batos_bridge_refused_connections_total",
            "CURVE handshakes refused (unknown client key, or not CURVE)",
        )?;
        let replies_dropped = IntCounterVec::new(
            Opts::new(
                "batos_bridge_replies_dropped_total",
                "Replies not sent: the connection had `max_queued_replies` unread \
                 (not_reading) or was gone (gone)",
            ),
            &["reason"],
        )?;
        // Known label values start at zero, so a dashboard's rate() has a
        // series before the first drop.
        for reason in ["not_reading", "gone"] {
            replies_dropped.with_label_values(&[reason]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(refused_connections.clone()))?;
        registry.register(Box::new(replies_dropped.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        Ok(BridgeMetrics {
            requests,
            duration,
            inflight,
            refused_connections,
            replies_dropped,
        })
    }

    fn record(&self, command: &str, outcome: &Result<Value, WireError>, started: Instant) {
        let status = match outcome {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        self.requests.with_label_values(&[command, status]).inc();
        self.duration
            .with_label_values(&[command])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// The bound sockets, before serving.
pub struct Sockets {
    router: tmq::router::Router,
    publish: tmq::publish::Publish,
    /// The ZAP handler admitting CURVE clients (`None`: no CURVE).
    zap: Option<zap::Zap>,
    /// The commands endpoint actually bound (the port resolved if `*`).
    pub endpoint: String,
    /// The events endpoint actually bound.
    pub events: String,
}

impl Sockets {
    /// Whether clients authenticate with CURVE (each request then runs
    /// with its client's role).
    pub fn curve(&self) -> bool {
        self.zap.is_some()
    }
}

/// Binds the ROUTER and PUB sockets. Without CURVE keys only loopback (or
/// local) endpoints are allowed; with them both sockets are CURVE servers
/// and admit the allow-listed clients alone.
pub fn bind(config: &BridgeConfig, metrics: &BridgeMetrics) -> Result<Sockets, KernelError> {
    let ctx = zmq::Context::new();
    let (curve, zap) = if config.curve_key.is_empty() {
        endpoint::check_local(&config.endpoint)?;
        endpoint::check_local(&config.events)?;
        (None, None)
    } else {
        let (secret, allow) = curve_settings(config)?;
        tracing::info!(clients = allow.len(), "bridge: CURVE on");
        let zap = zap::Zap::start(&ctx, allow, metrics.refused_connections.clone())?;
        (Some(secret), Some(zap))
    };
    let zmq_err = |what: String, e: zmq::Error| KernelError::Bridge(format!("{what}: {e}"));
    let socket = |kind: zmq::SocketType, endpoint: &str, linger: i32| {
        let s = ctx
            .socket(kind)
            .map_err(|e| zmq_err(format!("socket for {endpoint}"), e))?;
        s.set_linger(linger)
            .map_err(|e| zmq_err("linger".into(), e))?;
        if let Some(secret) = &curve {
            s.set_curve_server(true)
                .and_then(|()| s.set_curve_secretkey(secret))
                .and_then(|()| s.set_zap_domain(zap::DOMAIN))
                .map_err(|e| zmq_err(format!("CURVE on {endpoint}"), e))?;
        }
        Ok::<_, KernelError>(s)
    };
    // Bodies far over the limit are cut by ZeroMQ before they reach memory;
    // those between the limit and this cap get a `too_large` reply.
    let hard_cap = (config.max_request_bytes as i64)
        .saturating_mul(4)
        .max(1 << 20);
    let router = socket(zmq::ROUTER, &config.endpoint, 1000)?;
    router
        .set_maxmsgsize(hard_cap)
        .and_then(|()| router.set_rcvhwm(100_000))
        // A connection that stops reading gets this many replies queued,
        // then its replies are dropped and counted (mandatory routing makes
        // ZeroMQ say so instead of dropping silently).
        .and_then(|()| router.set_sndhwm(hwm(config.max_queued_replies)))
        .and_then(|()| router.set_router_mandatory(true))
        .and_then(|()| router.bind(&config.endpoint))
        .map_err(|e| zmq_err(format!("binding {}", config.endpoint), e))?;
    let publish = socket(zmq::PUB, &config.events, 0)?;
    // A subscriber that stops reading gets this many events queued; past
    // that ZeroMQ drops its events (only its own), and says nothing.
    publish
        .set_sndhwm(hwm(config.max_queued_events))
        .and_then(|()| publish.bind(&config.events))
        .map_err(|e| zmq_err(format!("binding {}", config.events), e))?;
    let last = |s: &zmq::Socket| -> Result<String, KernelError> {
        s.get_last_endpoint()
            .map_err(|e| KernelError::Bridge(e.to_string()))?
            .map_err(|_| KernelError::Bridge("endpoint is not UTF-8".into()))
    };
    let endpoint = last(&router)?;
    let events = last(&publish)?;
    let wrap = |e: tmq::TmqError| KernelError::Bridge(e.to_string());
    Ok(Sockets {
        router: tmq::router::Router::from_zmq_socket(router).map_err(wrap)?,
        publish: tmq::publish::Publish::from_zmq_socket(publish).map_err(wrap)?,
        zap,
        endpoint,
        events,
    })
}

/// A queue bound as ZeroMQ takes it (0 would mean none: at least 1).
fn hwm(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX).max(1)
}

/// The kernel's CURVE secret key and the clients allowed in, as configured.
fn curve_settings(config: &BridgeConfig) -> Result<([u8; 32], zap::AllowList), KernelError> {
    if !batos_client::keys::curve_available() {
        return Err(KernelError::Config(
            "bridge.curve_key is set but this build's libzmq has no CURVE (it needs libsodium)"
                .into(),
        ));
    }
    if config.curve_clients.is_empty() {
        return Err(KernelError::Config(
            "bridge.curve_key is set but bridge.curve_clients (the allowed clients' directory) is not"
                .into(),
        ));
    }
    let pair = batos_client::KeyPair::read(std::path::Path::new(&config.curve_key))
        .map_err(|e| KernelError::Config(format!("bridge.curve_key: {}", e.0)))?;
    let secret = batos_client::keys::decode(&pair.secret)
        .map_err(|e| KernelError::Config(format!("bridge.curve_key: {}", e.0)))?;
    let allow = zap::AllowList::load(std::path::Path::new(&config.curve_clients))?;
    Ok((secret, allow))
}

/// Limits the bridge enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Larger bodies get `too_large`.
    pub max_request_bytes: usize,
    /// More concurrent requests get `overloaded`.
    pub max_inflight: usize,
    /// A connection's share of `max_inflight`: past it, a connection gets
    /// `overloaded` unless a share's worth of slots stays free for others.
    pub max_inflight_per_peer: usize,
    /// The role of every client when the bridge has no CURVE keys
    /// (loopback only); with keys, each client's role is in the allow-list.
    pub anonymous_role: Role,
}

/// Serves requests until `shutdown` turns true, then stops reading, lets
/// every in-flight request finish and reply, and returns. Events are
/// published until `events` closes.
pub async fn serve(
    sockets: Sockets,
    ctx: Arc<Context>,
    limits: Limits,
    metrics: BridgeMetrics,
    events: mpsc::Receiver<events::Outgoing>,
    mut shutdown: watch::Receiver<bool>,
) {
    let curve = sockets.curve();
    // Kept until the sockets it admits clients to are closed.
    let zap = sockets.zap;
    let publisher = actix::spawn(events::publish(sockets.publish, events));
    // One task owns the ROUTER socket and both reads and writes it: ZeroMQ
    // signals read and write readiness through one edge-triggered fd, so a
    // socket split across two tasks can lose a wake-up and stall.
    let mut router = sockets.router;
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel::<Multipart>();
    let state = Rc::new(Served {
        inflight: Cell::new(0),
        per_peer: RefCell::new(HashMap::new()),
        reply_tx,
        metrics,
        limits,
        ctx,
        curve,
        lanes: RefCell::new(HashMap::new()),
        decoders: Rc::new(tokio::sync::Semaphore::new(DECODERS)),
    });
    loop {
        tokio::select! {
            biased;
            Some(frames) = reply_rx.recv() => send_replies(&router, frames, &mut reply_rx, &state.metrics.replies_dropped),
            _ = shutdown.wait_for(|stop| *stop) => break,
            next = router.next() => match next {
                Some(Ok(frames)) => handle(&state, frames).await,
                Some(Err(err)) => tracing::warn!(error = %err, "receiving a request failed"),
                None => break,
            },
        }
    }
    tracing::info!(
        inflight = state.inflight.get(),
        "bridge stopped taking requests; finishing in-flight ones"
    );
    // A connection's lane is open until every message it holds has been
    // answered, so it counts as in flight.
    while state.inflight.get() > 0 || !state.lanes.borrow().is_empty() || !reply_rx.is_empty() {
        if let Some(frames) = reply_rx.recv().await {
            send_replies(
                &router,
                frames,
                &mut reply_rx,
                &state.metrics.replies_dropped,
            );
        }
    }
    // The socket's linger gives the last replies time to leave.
    drop(router);
    publisher.abort();
    drop(zap);
}

/// Sends one reply and any others already queued, never waiting: a reply
/// to a connection whose queue is full (it is not reading) or that is gone
/// is dropped and counted, so one client cannot stall the others.
fn send_replies(
    router: &tmq::router::Router,
    first: Multipart,
    queue: &mut mpsc::UnboundedReceiver<Multipart>,
    dropped: &IntCounterVec,
) {
    use tmq::AsZmqSocket;
    let socket = router.get_socket();
    let mut next = Some(first);
    while let Some(frames) = next {
        let last = frames.len().saturating_sub(1);
        let mut sent = Ok(());
        for (i, frame) in frames.iter().enumerate() {
            let flags = if i < last {
                zmq::DONTWAIT | zmq::SNDMORE
            } else {
                zmq::DONTWAIT
            };
            sent = socket.send(&**frame, flags);
            if sent.is_err() {
                break;
            }
        }
        match sent {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => dropped.with_label_values(&["not_reading"]).inc(),
            Err(zmq::Error::EHOSTUNREACH) => dropped.with_label_values(&["gone"]).inc(),
            Err(err) => tracing::warn!(error = %err, "sending a reply failed"),
        }
        next = queue.try_recv().ok();
    }
}

struct Served {
    inflight: Cell<usize>,
    /// Requests in flight per connection (by [`peer_key`]).
    per_peer: RefCell<HashMap<u64, usize>>,
    reply_tx: mpsc::UnboundedSender<Multipart>,
    metrics: BridgeMetrics,
    limits: Limits,
    ctx: Arc<Context>,
    /// Clients authenticate with CURVE: a request's role is its client's.
    curve: bool,
    /// Connections with a large body being decoded off the task, and the
    /// messages they sent since, held so that they run after it, in order.
    lanes: RefCell<HashMap<u64, Lane>>,
    /// Bounds the large bodies decoded at once.
    decoders: Rc<tokio::sync::Semaphore>,
}

impl Served {
    fn reply(
        &self,
        mut envelope: Multipart,
        id: Option<&Value>,
        outcome: &Result<Value, WireError>,
    ) {
        envelope.push_back(tmq::Message::from(encode_reply(id, outcome)));
        // The writer lives until every sender is gone.
        let _ = self.reply_tx.send(envelope);
    }

    /// Takes an in-flight slot for `peer`, or says why none is free. A
    /// connection holding its share (`max_inflight_per_peer`) takes more
    /// only while a share's worth of slots stays free for the others.
    fn admit(&self, peer: u64) -> Result<(), String> {
        if self.inflight.get() >= self.limits.max_inflight {
            return Err(format!(
                "{} requests in flight (the limit); retry later",
                self.inflight.get()
            ));
        }
        let mut per_peer = self.per_peer.borrow_mut();
        let mine = per_peer.entry(peer).or_insert(0);
        let share = self.limits.max_inflight_per_peer;
        if *mine >= share && self.inflight.get() + share >= self.limits.max_inflight {
            return Err(format!(
                "this connection has {mine} requests in flight (its share); retry later"
            ));
        }
        *mine += 1;
        self.inflight.set(self.inflight.get() + 1);
        self.metrics.inflight.set(self.inflight.get() as i64);
        Ok(())
    }

    /// Gives back `peer`'s in-flight slot.
    fn finish(&self, peer: u64) {
        let n = self.inflight.get() - 1;
        self.inflight.set(n);
        self.metrics.inflight.set(n as i64);
        let mut per_peer = self.per_peer.borrow_mut();
        if let Some(mine) = per_peer.get_mut(&peer) {
            *mine -= 1;
            if *mine == 0 {
                per_peer.remove(&peer);
            }
        }
    }
}

async fn handle(state: &Rc<Served>, frames: Multipart) {
    let peer = peer_key(frames.0.front().map_or(&[][..], |id| &id[..]));
    match hold(state, peer, frames) {
        Held::Queued => {}
        Held::NoLane(frames) => {
            handle_now(state, frames, peer).await;
        }
        Held::Full(frames) => refuse_held(state, frames),
    }
}

/// What became of a message from a connection that may have a lane.
enum Held {
    /// It waits in the lane.
    Queued,
    /// The connection has no lane: handle it now.
    NoLane(Multipart),
    /// The lane is full.
    Full(Multipart),
}

/// Puts the message behind its connection's large request, if there is
/// one, as long as what waits stays within a share of requests and bytes.
fn hold(state: &Served, peer: u64, frames: Multipart) -> Held {
    let mut lanes = state.lanes.borrow_mut();
    let Some(lane) = lanes.get_mut(&peer) else {
        return Held::NoLane(frames);
    };
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    if lane.messages.len() < state.limits.max_inflight_per_peer
        && lane.bytes + bytes <= lane_max_bytes(&state.limits)
    {
        lane.bytes += bytes;
        lane.messages.push_back(frames);
        Held::Queued
    } else {
        Held::Full(frames)
    }
}

/// Bytes a connection's lane may hold: a few of the largest requests.
fn lane_max_bytes(limits: &Limits) -> usize {
    limits.max_request_bytes.saturating_mul(4)
}

/// A connection's messages held behind its large request being decoded.
#[derive(Default)]
struct Lane {
    messages: VecDeque<Multipart>,
    bytes: usize,
}

/// Answers a message a connection sent past its share while its earlier
/// messages wait behind a large one.
fn refuse_held(state: &Served, mut frames: Multipart) {
    let started = Instant::now();
    let Some(body) = frames.pop_back() else {
        return;
    };
    // The id is echoed when it is cheap to find.
    let id = (body.len() <= DECODE_INLINE_MAX)
        .then(|| decode_request(&body).ok().and_then(|r| r.id))
        .flatten();
    let outcome = Err(WireError::new(
        ErrorCode::Overloaded,
        "this connection has its share of requests waiting behind a large one; retry later",
    ));
    state.metrics.record(INVALID, &outcome, started);
    // Not checked yet: an oversized envelope goes back as its routing id.
    let mut envelope = frames;
    let envelope_bytes: usize = envelope.iter().map(|f| f.len()).sum();
    if envelope.len() > MAX_ENVELOPE_FRAMES || envelope_bytes > MAX_ENVELOPE_BYTES {
        envelope.0.truncate(1);
    }
    state.reply(envelope, id.as_ref(), &outcome);
}

/// Handles one message now; `true` when its body went to be decoded off
/// the task (its connection's later messages then wait in its lane).
async fn handle_now(state: &Rc<Served>, mut frames: Multipart, peer: u64) -> bool {
    let started = Instant::now();
    let Some(mut body) = frames.pop_back() else {
        return false;
    };
    // With CURVE, ZAP named the client's role (`ROLE:NAME`) for its connection.
    let role = if state.curve {
        zap::role_of(body.gets("User-Id"))
    } else {
        state.limits.anonymous_role
    };
    let envelope = frames;
    let envelope_bytes: usize = envelope.iter().map(|f| f.len()).sum();
    if envelope.len() > MAX_ENVELOPE_FRAMES || envelope_bytes > MAX_ENVELOPE_BYTES {
        let outcome = Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "{} frames ({envelope_bytes} bytes) before the body; the limit is \
                 {MAX_ENVELOPE_FRAMES} frames, {MAX_ENVELOPE_BYTES} bytes",
                envelope.len()
            ),
        ));
        state.metrics.record(INVALID, &outcome, started);
        // Only the routing id goes back: it is all the reply needs to arrive.
        let mut route = envelope;
        route.0.truncate(1);
        state.reply(route, None, &outcome);
        return false;
    }
    if body.len() > state.limits.max_request_bytes {
        let outcome = Err(WireError::new(
            ErrorCode::TooLarge,
            format!(
                "request body is {} bytes; the limit is {}",
                body.len(),
                state.limits.max_request_bytes
            ),
        ));
        state.metrics.record(INVALID, &outcome, started);
        state.reply(envelope, None, &outcome);
        return false;
    }
    if body.len() > DECODE_INLINE_MAX {
        state.lanes.borrow_mut().entry(peer).or_default();
        let state = state.clone();
        actix::spawn(async move {
            let decoded = decode_off_task(&state, body).await;
            dispatch(&state, envelope, role, peer, started, decoded).await;
            drain(state, peer).await;
        });
        return true;
    }
    dispatch(state, envelope, role, peer, started, decode_request(&body)).await;
    false
}

/// Decodes a large body on a blocking thread (at most `DECODERS` at once).
async fn decode_off_task(state: &Served, body: tmq::Message) -> Result<Request, DecodeError> {
    let decoders = state.decoders.clone();
    let _permit = decoders.acquire().await;
    tokio::task::spawn_blocking(move || decode_request(&body))
        .await
        .unwrap_or_else(|panic| {
            tracing::error!(error = %panic, "decoding a request panicked");
            Err(DecodeError {
                id: None,
                error: WireError::new(ErrorCode::Internal, "decoding the request failed"),
                command: None,
            })
        })
}

/// Runs what a connection's lane holds, in order, until it is empty (the
/// lane closes) or a large body goes off to be decoded (its task drains on).
fn drain(state: Rc<Served>, peer: u64) -> LocalBoxFuture<'static, ()> {
    Box::pin(async move {
        loop {
            let next = {
                let mut lanes = state.lanes.borrow_mut();
                let lane = lanes.get_mut(&peer);
                match lane.and_then(|lane| {
                    let frames = lane.messages.pop_front()?;
                    lane.bytes -= frames.iter().map(|f| f.len()).sum::<usize>();
                    Some(frames)
                }) {
                    Some(frames) => frames,
                    None => {
                        lanes.remove(&peer);
                        return;
                    }
                }
            };
            if handle_now(&state, next, peer).await {
                return;
            }
        }
    })
}

/// Answers a decoding failure, or admits the request and runs its command.
async fn dispatch(
    state: &Rc<Served>,
    envelope: Multipart,
    role: Role,
    peer: u64,
    started: Instant,
    decoded: Result<Request, DecodeError>,
) {
    let request = match decoded {
        Ok(request) => request,
        Err(err) => {
            let outcome = Err(err.error);
            state
                .metrics
                .record(err.command.unwrap_or(INVALID), &outcome, started);
            state.reply(envelope, err.id.as_ref(), &outcome);
            return;
        }
    };
    let name = request.command.name();
    if let Err(why) = state.admit(peer) {
        let outcome = Err(WireError::new(ErrorCode::Overloaded, why));
        state.metrics.record(name, &outcome, started);
        state.reply(envelope, request.id.as_ref(), &outcome);
        return;
    }
    let ctx = state.ctx.clone();
    let command = request.command;
    let span = request_span(&command, &envelope);
    // A panic in a command (a kernel bug) is contained here: the request
    // gets an `internal` error, its in-flight slot is released, and the
    // bridge's task, which serves every client, goes on.
    let mut work = Box::pin(
        AssertUnwindSafe(
            async move { cmd::execute(&ctx, role, peer.max(1), command).await }.instrument(span),
        )
        .catch_unwind()
        .map(|outcome| outcome.unwrap_or_else(|panic| Err(panicked(name, panic)))),
    );
    // Poll once here, so each request reaches its object's mailbox in the
    // order it arrived; finish in the background only if it has to wait.
    match futures::poll!(work.as_mut()) {
        Poll::Ready(outcome) => {
            state.metrics.record(name, &outcome, started);
            state.reply(envelope, request.id.as_ref(), &outcome);
            state.finish(peer);
        }
        Poll::Pending => {
            let state = state.clone();
            actix::spawn(async move {
                let outcome = work.await;
                state.metrics.record(name, &outcome, started);
                state.reply(envelope, request.id.as_ref(), &outcome);
                state.finish(peer);
            });
        }
    }
}

/// A connection's key for its in-flight share: its routing id, hashed
/// (FNV-1a; ids are libzmq's or a client's own, a few bytes).
fn peer_key(routing_id: &[u8]) -> u64 {
    routing_id.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The reply to a command that panicked, logged with what the panic said.
fn panicked(command: &str, panic: Box<dyn std::any::Any + Send>) -> WireError {
    let what = batos_object::error::panic_message(&*panic);
    tracing::error!(command, panic = %what, "a command panicked; the request fails, the bridge goes on");
    WireError::new(
        ErrorCode::Internal,
        format!("{command} failed inside the kernel (see its log)"),
    )
}

/// The span a request runs in, across the bridge, its object's actor, the
/// sandbox and I/O threads and the committer. At `debug` level under the
/// `batos::request` target (`RUST_LOG=info,batos::request=debug`), so the
/// request path pays for it only when someone looks; the fields are filled
/// in only then.
fn request_span(command: &Command, envelope: &Multipart) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::debug_span!(
        target: "batos::request",
        "request",
        command = command.name(),
        peer = Empty,
        oid = Empty,
        member = Empty,
    );
    if !span.is_disabled() {
        if let Some(identity) = envelope.iter().next() {
            span.record("peer", hex::encode(&identity[..]));
        }
        if let Some(target) = command.target() {
            span.record("oid", tracing::field::display(target));
        }
        if let Some(member) = command.member() {
            span.record("member", member);
        }
    }
    span
}
