//! The events socket: committed state changes and cycle transitions
//! published on PUB.

use batos_actors::committer::{CycleEvent, EventSink, StateEvent};
use futures::SinkExt;
use prometheus::IntCounter;
use rmpv::Value;
use tokio::sync::mpsc;

use crate::protocol::map;

pub use crate::protocol::{TOPIC_CYCLE, TOPIC_STATE};

/// One event waiting to be published.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A committed change to one object.
    State(StateEvent),
    /// A cycle entered a state.
    Cycle(CycleEvent),
}

/// Hands events from the committer thread to the PUB task without blocking;
/// when the queue is full the event is dropped and counted.
pub struct QueueSink {
    tx: mpsc::Sender<Outgoing>,
    dropped: IntCounter,
}

impl QueueSink {
    /// A sink and the receiving end for [`publish`].
    pub fn new(capacity: usize, dropped: IntCounter) -> (QueueSink, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (QueueSink { tx, dropped }, rx)
    }
}

impl EventSink for QueueSink {
    fn publish(&self, event: StateEvent) {
        if self.tx.try_send(Outgoing::State(event)).is_err() {
            self.dropped.inc();
        }
    }

    fn publish_cycle(&self, event: CycleEvent) {
        if self.tx.try_send(Outgoing::Cycle(event)).is_err() {
            self.dropped.inc();
        }
    }
}

/// The wire body of a state event.
pub fn encode_state_event(event: &StateEvent) -> Vec<u8> {
    let changed = event
        .changed
        .iter()
        .map(|(k, v)| (Value::from(k.as_str()), v.clone()))
        .collect();
    let removed = event
        .removed
        .iter()
        .map(|k| Value::from(k.as_str()))
        .collect();
    let body = map([
        ("event", Value::from(TOPIC_STATE)),
        ("oid", Value::from(event.oid)),
        ("changed", Value::Map(changed)),
        ("removed", Value::Array(removed)),
        ("tx", Value::from(event.tx)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &body).expect("writing to a Vec cannot fail");
    out
}

/// The wire body of a cycle event.
pub fn encode_cycle_event(event: &CycleEvent) -> Vec<u8> {
    let body = map([
        ("event", Value::from(TOPIC_CYCLE)),
        ("cycle", Value::from(event.cycle)),
        ("state", Value::from(event.state.as_str())),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &body).expect("writing to a Vec cannot fail");
    out
}

/// Publishes events until the queue closes.
pub async fn publish(mut socket: tmq::publish::Publish, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(event) = rx.recv().await {
        let frames = match &event {
            Outgoing::State(e) => vec![TOPIC_STATE.as_bytes().to_vec(), encode_state_event(e)],
            Outgoing::Cycle(e) => vec![TOPIC_CYCLE.as_bytes().to_vec(), encode_cycle_event(e)],
        };
        if let Err(err) = socket.send(tmq::Multipart::from(frames)).await {
            tracing::warn!(error = %err, "publishing an event failed");
        }
    }
}
