//! `get_full_state`: one object's slots, or the image's roots and size.

use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, ObjRef, WireError};

pub(super) async fn execute(ctx: &Context, oid: Option<ObjRef>) -> Result<Value, WireError> {
    match oid {
        None => {
            let roots = ctx
                .space
                .roots()
                .entries()
                .iter()
                .map(|(n, o)| (Value::from(n.as_str()), Value::from(*o)));
            Ok(map([
                ("roots", Value::Map(roots.collect())),
                ("objects", Value::from(ctx.space.object_count())),
            ]))
        }
        Some(oid) => {
            let oid = resolve(ctx, oid)?;
            let state = ctx.space.full_state(oid).await.map_err(wire_error)?;
            let slots = state
                .slots
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect();
            // Method history (versions and provenance), grouped by selector.
            let mut methods: Vec<(Value, Value)> = Vec::new();
            for (selector, record) in state.methods {
                match methods
                    .iter_mut()
                    .find(|(k, _)| k.as_str() == Some(selector.as_str()))
                {
                    Some((_, Value::Array(versions))) => versions.push(record.to_wire()),
                    _ => {
                        methods.push((Value::from(selector), Value::Array(vec![record.to_wire()])))
                    }
                }
            }
            Ok(map([
                ("oid", Value::from(oid)),
                ("slots", Value::Map(slots)),
                ("methods", Value::Map(methods)),
            ]))
        }
    }
}
