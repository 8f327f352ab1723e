//! The object actor: one per live object. Its mailbox orders the messages
//! sent to the object (each runs to completion, commit included, before the
//! next starts), and it passivates the object when idle.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::table::{InUse, LiveObject, ObjectTable};
use batos_object::error::ActorError;

/// A future returned by an object operation.
pub type OpFuture<T> = Pin<Box<dyn Future<Output = Result<T, ActorError>> + Send + 'static>>;

/// A request to one object, run by its actor with exclusive access to it.
pub trait ObjectOp: Send + 'static {
    /// What the operation answers.
    type Output: Send + 'static;
    /// Runs the operation on `receiver`.
    fn run(self, receiver: InUse) -> OpFuture<Self::Output>;
}

/// The actix message carrying an [`ObjectOp`] to the receiver's actor.
pub struct Op<T: ObjectOp> {
    pub(crate) op: T,
    pub(crate) receiver: InUse,
    /// The sender's span (the request's), which the operation runs in.
    pub(crate) span: tracing::Span,
}

impl<T: ObjectOp> Message for Op<T> {
    type Result = Result<T::Output, ActorError>;
}

/// What an actor needs to passivate its object when idle.
pub(crate) struct Passivation {
    /// An object idle this long is passivated.
    pub(crate) after_ms: u64,
    /// How often the actor checks.
    pub(crate) check_ms: u64,
    pub(crate) table: Arc<ObjectTable>,
    pub(crate) metrics: Metrics,
}

/// The mailbox of a live object's actor, once it has one.
pub(crate) fn mailbox(live: &LiveObject) -> Option<&Addr<ObjectActor>> {
    live.mailbox()
}

/// The actor of one live object.
pub struct ObjectActor {
    live: Arc<LiveObject>,
    passivation: Arc<Passivation>,
}

impl ObjectActor {
    pub(crate) fn new(live: Arc<LiveObject>, passivation: Arc<Passivation>) -> Self {
        ObjectActor { live, passivation }
    }

    fn maybe_passivate(&mut self, ctx: &mut Context<Self>) {
        let p = &self.passivation;
        if self.live.idle_ms() >= p.after_ms && p.table.remove_if_idle(&self.live) {
            tracing::trace!(oid = self.live.oid, "passivating idle object");
            p.metrics.passivations.inc();
            ctx.stop();
        }
    }
}

impl Actor for ObjectActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.passivation.metrics.actors_live.inc();
        let every = Duration::from_millis(self.passivation.check_ms.max(1));
        ctx.run_interval(every, |act, ctx| act.maybe_passivate(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.passivation.metrics.actors_live.dec();
    }
}

impl<T: ObjectOp> Handler<Op<T>> for ObjectActor {
    type Result = AtomicResponse<Self, Result<T::Output, ActorError>>;

    fn handle(&mut self, msg: Op<T>, _ctx: &mut Context<Self>) -> Self::Result {
        let fut = msg.op.run(msg.receiver).instrument(msg.span);
        AtomicResponse::new(Box::pin(fut.into_actor(self)))
    }
}

/// Tells an actor whose object turned out not to exist to stop.
pub(crate) struct Retire;

impl Message for Retire {
    type Result = ();
}

impl Handler<Retire> for ObjectActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
