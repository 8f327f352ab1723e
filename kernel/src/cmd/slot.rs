//! `get_slot`, `set_slot` and `remove_slot`.

use batos_actors::ObjectSpace;
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{ObjRef, WireError};

pub(super) async fn get(ctx: &Context, oid: ObjRef, slot: String) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    ctx.space.get_slot(oid, slot).await.map_err(wire_error)
}

pub(super) async fn set(
    ctx: &Context,
    space: &ObjectSpace,
    oid: ObjRef,
    slot: String,
    value: Value,
) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    space.set_slot(oid, slot, value).await.map_err(wire_error)?;
    Ok(Value::Map(Vec::new()))
}

pub(super) async fn remove(
    ctx: &Context,
    space: &ObjectSpace,
    oid: ObjRef,
    slot: String,
) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    space.remove_slot(oid, slot).await.map_err(wire_error)?;
    Ok(Value::Map(Vec::new()))
}
