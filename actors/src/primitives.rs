//! The kernel's built-in methods (`clone`, `setSlot_value_`) and the slot
//! writes the bridge commands share with them.

use std::sync::Arc;

use crate::runtime::{require_write, SpaceInner};
use crate::table::InUse;
use batos_object::access::{Change, Role};
use batos_object::error::ActorError;
use batos_object::slot::{Primitive, Slot};
use batos_object::txn::Transaction;
use batos_object::value::{kind, make_ref, Oid, Value};

/// Runs primitive `p` with `self` = `receiver`.
pub(crate) async fn run(
    space: &Arc<SpaceInner>,
    receiver: &InUse,
    role: Role,
    p: Primitive,
    args: Vec<Value>,
) -> Result<Value, ActorError> {
    match p {
        Primitive::Clone => {
            expect_args(p, &args, 0)?;
            require_write(role, "clone")?;
            clone(space, receiver).await.map(make_ref)
        }
        Primitive::RollbackMethod | Primitive::RequestUpgrade => Err(ActorError::internal(
            "this primitive runs in a transaction, not here",
        )),
        Primitive::SetSlotValue => {
            expect_args(p, &args, 2)?;
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
    }
}

fn expect_args(p: Primitive, args: &[Value], n: usize) -> Result<(), ActorError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(ActorError::BadRequest(format!(
            "{} takes {n} argument(s), got {}",
            p.selector(),
            args.len()
        )))
    }
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

/// Creates a shallow copy of `receiver` (same slots, so the same parents).
pub(crate) async fn clone(space: &Arc<SpaceInner>, receiver: &InUse) -> Result<Oid, ActorError> {
    let new = space.allocate_oid();
    space
        .commit_with_retry(|| async {
            let (slots, version) = receiver.read(|s| {
                (
                    s.slots
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>(),
                    s.version,
                )
            })?;
            let mut tx = Transaction::new();
            tx.read(receiver.oid, version);
            tx.create(new, slots);
            Ok(tx)
        })
        .await?;
    Ok(new)
}
