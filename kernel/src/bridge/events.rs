//! The events socket: committed state changes and cycle transitions
//! published on PUB.

use std::sync::Mutex;

use batos_actors::committer::{CycleEvent, EventSink, StateEvent};
use futures::SinkExt;
use prometheus::IntCounter;
use rmpv::Value;
use tokio::sync::mpsc;

use crate::protocol::map;

pub use crate::protocol::{TOPIC_CYCLE, TOPIC_STATE};

/// One event waiting to be published, with its topic's sequence number.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A committed change to one object.
    State(StateEvent, u64),
    /// A cycle entered a state.
    Cycle(CycleEvent, u64),
}

/// Hands events from the committer thread to the PUB task without blocking;
/// when the queue is full the event is dropped and counted. Each topic's
/// events are numbered (`seq`, from 1) as they are offered, dropped ones
/// included, so a subscriber sees every loss as a gap: the kernel's queue
/// full, or its own queue in ZeroMQ, which drops silently.
pub struct QueueSink {
    tx: mpsc::Sender<Outgoing>,
    dropped: IntCounter,
    /// The last number of each topic (state, cycle); held while offering,
    /// so numbers reach the queue in order.
    seq: [Mutex<u64>; 2],
}

impl QueueSink {
    /// A sink and the receiving end for [`publish`].
    pub fn new(capacity: usize, dropped: IntCounter) -> (QueueSink, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let seq = [Mutex::new(0), Mutex::new(0)];
        (QueueSink { tx, dropped, seq }, rx)
    }

    fn offer(&self, topic: usize, event: impl FnOnce(u64) -> Outgoing) {
        let mut seq = self.seq[topic]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seq += 1;
        if self.tx.try_send(event(*seq)).is_err() {
            self.dropped.inc();
        }
    }
}

impl EventSink for QueueSink {
    fn publish(&self, event: StateEvent) {
        self.offer(0, |seq| Outgoing::State(event, seq));
    }

    fn publish_cycle(&self, event: CycleEvent) {
        self.offer(1, |seq| Outgoing::Cycle(event, seq));
    }
}

/// The wire body of a state event, `seq` its number on its topic.
pub fn encode_state_event(event: &StateEvent, seq: u64) -> Vec<u8> {
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
        ("seq", Value::from(seq)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &body).expect("writing to a Vec cannot fail");
    out
}

/// The wire body of a cycle event, `seq` its number on its topic.
pub fn encode_cycle_event(event: &CycleEvent, seq: u64) -> Vec<u8> {
    let body = map([
        ("event", Value::from(TOPIC_CYCLE)),
        ("cycle", Value::from(event.cycle)),
        ("state", Value::from(event.state.as_str())),
        ("seq", Value::from(seq)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &body).expect("writing to a Vec cannot fail");
    out
}

/// Publishes events until the queue closes.
pub async fn publish(mut socket: tmq::publish::Publish, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(event) = rx.recv().await {
        let frames = match &event {
            Outgoing::State(e, seq) => {
                vec![TOPIC_STATE.as_bytes().to_vec(), encode_state_event(e, *seq)]
            }
            Outgoing::Cycle(e, seq) => {
                vec![TOPIC_CYCLE.as_bytes().to_vec(), encode_cycle_event(e, *seq)]
            }
        };
        if let Err(err) = socket.send(tmq::Multipart::from(frames)).await {
            tracing::warn!(error = %err, "publishing an event failed");
        }
    }
}
