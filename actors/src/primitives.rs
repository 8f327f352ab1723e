//! `setSlot_value_` on the actor's fast path, and the slot write the
//! `set_slot` command shares with it.

use std::sync::Arc;

use crate::runtime::SpaceInner;
use crate::table::InUse;
use batos_object::access::{Change, Role};
use batos_object::error::ActorError;
use batos_object::slot::{Primitive, Slot};
use batos_object::txn::Transaction;
use batos_object::value::{kind, Value};

/// Runs `setSlot_value_` with `self` = `receiver` on the actor's fast path
/// (the other primitives run in a transaction, see `exec`).
pub(crate) async fn set_slot_value(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    role: Role,
    args: Vec<Value>,
) -> Result<Value, ActorError> {
    if let Some(err) = Primitive::SetSlotValue.check_arity(args.len()) {
        return Err(ActorError::BadRequest(err));
    }
    let mut args = args.into_iter();
    let name = match args.next() {
        Some(Value::String(s)) => s
            .into_str()
            .ok_or_else(|| ActorError::BadRequest("slot name is not valid UTF-8".into()))?,
        Some(other) => {
            return Err(ActorError::BadRequest(format!(
                "setSlot_value_: the slot name must be a str, got {}",
                kind(&other)
            )))
        }
        None => unreachable!("arity checked"),
    };
    let value = args.next().unwrap_or(Value::Nil);
    set_slot(space, receiver, role, name, value).await?;
    Ok(Value::Nil)
}

/// Validates and durably writes one data slot of `receiver`, if `role` may.
pub(crate) async fn set_slot(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    role: Role,
    name: String,
    value: Value,
) -> Result<(), ActorError> {
    space.authorize_live(role, receiver, Change::Write(&name))?;
    let value = space.check_slot_write(&name, value).await?;
    let mut tx = Transaction::new();
    tx.set(receiver.oid, name, Slot::Data(value));
    space.commit(tx).await.map(drop)
}
