//! `create_object` and `clone`.

use batos_actors::ObjectSpace;
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, ObjRef, WireError};

pub(super) async fn create(
    space: &ObjectSpace,
    slots: Vec<(String, Value)>,
) -> Result<Value, WireError> {
    let oid = space.create_object(slots).await.map_err(wire_error)?;
    Ok(map([("oid", Value::from(oid))]))
}

pub(super) async fn clone(
    ctx: &Context,
    space: &ObjectSpace,
    oid: ObjRef,
) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    let new = space.clone_object(oid).await.map_err(wire_error)?;
    Ok(map([("oid", Value::from(new))]))
}
