//! The commands: one module per command family, each turning a decoded
//! [`Command`] into calls on the object space and a result value.

mod cycle;
mod inference;
mod memory;
mod method;
mod object;
mod ping;
mod send;
mod slot;
mod snapshot;
mod state;
mod subsystems;

use std::time::Instant;

use std::sync::Arc;

use batos_actors::{ActorError, ObjectSpace, Oid, Role};
use batos_cognition::inference::experts::ExpertManager;
use batos_cognition::inference::Cognition;
use batos_cognition::orchestration::Orchestrator;
use batos_memory::Catalog;
use rmpv::Value;

use crate::protocol::{Command, ErrorCode, ObjRef, WireError};

/// What every command can reach.
pub struct Context {
    /// The object space (the kernel's handle).
    pub space: ObjectSpace,
    /// Handles whose requests run with each client role, made once.
    pub client_spaces: [ObjectSpace; 3],
    /// When the kernel started (for `ping`'s uptime).
    pub started: Instant,
    /// The knowledge catalog.
    pub catalog: Catalog,
    /// Cognitive cycles.
    pub orchestrator: Orchestrator,
    /// Generation, when a model is loaded.
    pub cognition: Option<Cognition>,
    /// The persona experts.
    pub experts: Arc<ExpertManager>,
}

/// Runs one command for a client holding `role`, from `connection` (a
/// nonzero key: whose turn its methods take on the sandbox threads).
pub async fn execute(
    ctx: &Context,
    role: Role,
    connection: u64,
    command: Command,
) -> Result<Value, WireError> {
    role.require(required(&command), command.name())
        .map_err(|why| WireError::new(ErrorCode::Forbidden, why))?;
    // Object changes are checked by the object space, per object and slot.
    let space = ctx.space_for(role);
    match command {
        Command::Ping => Ok(ping::execute(ctx)),
        Command::GetFullState { oid } => state::execute(ctx, oid).await,
        Command::CreateObject { slots } => object::create(space, slots).await,
        Command::Clone { oid } => object::clone(ctx, &space.for_connection(connection), oid).await,
        Command::GetSlot { oid, slot } => slot::get(ctx, oid, slot).await,
        Command::SetSlot { oid, slot, value } => slot::set(ctx, space, oid, slot, value).await,
        Command::RemoveSlot { oid, slot } => slot::remove(ctx, space, oid, slot).await,
        Command::Send {
            oid,
            selector,
            args,
        } => send::execute(ctx, &space.for_connection(connection), oid, selector, args).await,
        Command::Snapshot => snapshot::execute(ctx).await,
        Command::CreateMethod {
            oid,
            selector,
            code,
        } => method::create(ctx, space, oid, selector, code).await,
        Command::Ingest { documents } => memory::ingest(ctx, documents).await,
        Command::SearchMemory {
            related: Some(oid),
            limit,
            ..
        } => memory::related(ctx, oid, limit).await,
        Command::SearchMemory {
            query,
            limit,
            source,
            kind,
            related: None,
        } => memory::search(ctx, query, limit, source, kind).await,
        Command::ListExperts => Ok(inference::list_experts(ctx).await),
        Command::Infer {
            prompt,
            expert,
            max_tokens,
        } => inference::infer(ctx, prompt, expert, max_tokens).await,
        Command::StartCycle { kind } => cycle::start(ctx, kind, connection).await,
        Command::GetCycle { cycle } => cycle::get(ctx, cycle).await,
    }
}

impl Context {
    /// The handle whose requests run with a client's `role`.
    fn space_for(&self, role: Role) -> &ObjectSpace {
        let i = Role::CLIENT.iter().position(|r| *r == role).unwrap_or(0);
        &self.client_spaces[i]
    }
}

/// The least role a command needs; changes to objects are further checked
/// per object and slot by the object space (`batos_object::access`).
fn required(command: &Command) -> Role {
    match command {
        Command::Snapshot => Role::Admin,
        Command::Ingest { .. } | Command::StartCycle { .. } | Command::Infer { .. } => Role::Write,
        _ => Role::Read,
    }
}

/// The oid an [`ObjRef`] names.
pub(crate) fn resolve(ctx: &Context, oid: ObjRef) -> Result<Oid, WireError> {
    match oid {
        ObjRef::Oid(oid) => Ok(oid),
        ObjRef::Root(name) => ctx.space.roots().oid(&name).ok_or_else(|| {
            WireError::new(
                ErrorCode::NoSuchObject,
                format!("no root object named {name:?}"),
            )
        }),
    }
}

/// Maps an object-model error to its wire code.
pub(crate) fn wire_error(err: ActorError) -> WireError {
    let code = match &err {
        ActorError::BadRequest(_) => ErrorCode::BadRequest,
        ActorError::NoSuchObject(_) => ErrorCode::NoSuchObject,
        ActorError::NoSuchSlot { .. } => ErrorCode::NoSuchSlot,
        ActorError::DoesNotUnderstand(_) => ErrorCode::DoesNotUnderstand,
        ActorError::CovenantViolation(_) => ErrorCode::CovenantViolation,
        ActorError::MethodTrap(_) => ErrorCode::MethodTrap,
        ActorError::Forbidden(_) => ErrorCode::Forbidden,
        ActorError::TooLarge(_) => ErrorCode::TooLarge,
        ActorError::Overloaded(_) => ErrorCode::Overloaded,
        ActorError::Unavailable(_) => ErrorCode::Unavailable,
        ActorError::Image(_) | ActorError::Internal(_) => ErrorCode::Internal,
    };
    if code == ErrorCode::Internal {
        tracing::error!(error = %err, "internal error answering a request");
    }
    WireError::new(code, err.to_string())
}
