//! `start_cycle` and `get_cycle`: cognitive cycles.

use batos_object::value::make_ref;
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, ObjRef, WireError};

pub(super) async fn start(
    ctx: &Context,
    kind: String,
    connection: u64,
) -> Result<Value, WireError> {
    let cycle = ctx
        .orchestrator
        .start(&kind, connection)
        .await
        .map_err(wire_error)?;
    Ok(map([("cycle", Value::from(cycle))]))
}

pub(super) async fn get(ctx: &Context, cycle: ObjRef) -> Result<Value, WireError> {
    let oid = resolve(ctx, cycle)?;
    let view = ctx.orchestrator.view(oid).await.map_err(wire_error)?;
    let mut fields = vec![
        ("cycle", Value::from(oid)),
        ("kind", Value::from(view.kind)),
        ("state", Value::from(view.state)),
        ("status", Value::from(view.status)),
        ("state_object", make_ref(view.state_object)),
        ("history", view.history),
    ];
    let results = view
        .results
        .into_iter()
        .map(|(k, v)| (Value::from(k), v))
        .collect();
    fields.push(("results", Value::Map(results)));
    Ok(Value::Map(
        fields
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    ))
}
