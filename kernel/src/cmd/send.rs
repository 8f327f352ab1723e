//! `send`: a message to an object, resolved by delegation.

use batos_actors::ObjectSpace;
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, ObjRef, WireError};

pub(super) async fn execute(
    ctx: &Context,
    space: &ObjectSpace,
    oid: ObjRef,
    selector: String,
    args: Vec<Value>,
) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    let outcome = space.send(oid, selector, args).await.map_err(wire_error)?;
    Ok(map([
        ("value", outcome.value),
        ("generated", Value::Boolean(outcome.generated)),
    ]))
}
