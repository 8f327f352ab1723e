//! `get_full_state`: one object's slots, or the image's roots and size.

use std::collections::HashMap;

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
            // Method history (versions, provenance and source), grouped by selector.
            let mut methods: Vec<(Value, Value)> = Vec::new();
            for (selector, record) in state.methods {
                let version = with_source_text(record.to_wire(), &state.sources);
                match methods
                    .iter_mut()
                    .find(|(k, _)| k.as_str() == Some(selector.as_str()))
                {
                    Some((_, Value::Array(versions))) => versions.push(version),
                    _ => methods.push((Value::from(selector), Value::Array(vec![version]))),
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

/// A version's wire form with its source's text added (`source.text`).
fn with_source_text(mut version: Value, texts: &HashMap<String, String>) -> Value {
    let Value::Map(entries) = &mut version else {
        return version;
    };
    let source = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("source"))
        .map(|(_, v)| v);
    if let Some(Value::Map(source)) = source {
        let text = source
            .iter()
            .find(|(k, _)| k.as_str() == Some("hash"))
            .and_then(|(_, v)| v.as_str())
            .and_then(|hash| texts.get(hash));
        if let Some(text) = text {
            source.push((Value::from("text"), Value::from(text.as_str())));
        }
    }
    version
}
