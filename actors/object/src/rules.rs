//! The value rules every slot write follows, from a client or from a
//! method, written once: string map keys, no extension types, reserved `$`
//! shapes, `$ref` normalisation (root names resolved), and `parent*`'s shape.

use std::collections::HashSet;

use crate::roots::Roots;
use crate::value::{kind, make_ref, parse_parents, Oid, Value, METHOD_KEY, PARENT_SLOT, REF_KEY};

/// Validates a value that came from a client and normalises every `$ref` to
/// an integer oid (root names are resolved). The decoder already bounds depth.
pub fn prepare_input(value: Value, roots: &Roots) -> Result<Value, String> {
    match value {
        Value::Ext(..) => Err("extension types are not allowed in values".into()),
        Value::String(s) => match s.into_str() {
            Some(s) => Ok(Value::from(s)),
            None => Err("string is not valid UTF-8".into()),
        },
        Value::Array(items) => items
            .into_iter()
            .map(|v| prepare_input(v, roots))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Map(entries) => prepare_map(entries, roots),
        scalar => Ok(scalar),
    }
}

fn prepare_map(entries: Vec<(Value, Value)>, roots: &Roots) -> Result<Value, String> {
    if entries.len() == 1 {
        if let (Value::String(k), v) = &entries[0] {
            match k.as_str() {
                Some(REF_KEY) => return resolve_ref(v, roots).map(make_ref),
                Some(METHOD_KEY) => return Err(
                    "`$method` values are shown in state only; install methods with create_method"
                        .into(),
                ),
                Some(key) if key.starts_with('$') => {
                    return Err(format!(
                        "maps whose only key starts with `$` are reserved (got {key:?})"
                    ))
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::with_capacity(entries.len());
    // Linear, not a scan of `out` per key: one map with many keys must not
    // cost its writer (or a method's wall clock) quadratic time.
    let mut seen = HashSet::with_capacity(entries.len());
    for (k, v) in entries {
        let key = match k {
            Value::String(s) => s
                .into_str()
                .ok_or_else(|| "map key is not valid UTF-8".to_string())?,
            other => return Err(format!("map keys must be strings, got {}", kind(&other))),
        };
        if !seen.insert(key.clone()) {
            return Err(format!("duplicate map key {key:?}"));
        }
        out.push((Value::from(key), prepare_input(v, roots)?));
    }
    Ok(Value::Map(out))
}

fn resolve_ref(target: &Value, roots: &Roots) -> Result<Oid, String> {
    match target {
        Value::Integer(i) => i
            .as_u64()
            .ok_or_else(|| format!("`$ref` must be an unsigned oid, got {i}")),
        Value::String(s) => {
            let name = s.as_str().unwrap_or("");
            roots
                .oid(name)
                .ok_or_else(|| format!("`$ref` names no root object: {name:?}"))
        }
        other => Err(format!(
            "`$ref` must be an oid or a root name, got {}",
            kind(other)
        )),
    }
}

/// Validates a value for slot `name` (the rules every slot write follows,
/// from a client or from a method): [`prepare_input`], and for `parent*` its
/// shape. Returns the value and the parents the caller must check exist.
pub fn prepare_slot_value(
    name: &str,
    value: Value,
    roots: &Roots,
) -> Result<(Value, Vec<Oid>), String> {
    let value = prepare_input(value, roots)?;
    let parents = if name == PARENT_SLOT {
        parse_parents(&value)?
    } else {
        Vec::new()
    };
    Ok((value, parents))
}

/// Checks a write of `value` to slot `name`, from a client or from a
/// method: a non-empty name and [`prepare_slot_value`]. Returns the value
/// and the parents the caller must check exist (refusing a missing one
/// with [`missing_parent`]).
pub fn check_slot_write(
    name: &str,
    value: Value,
    roots: &Roots,
) -> Result<(Value, Vec<Oid>), String> {
    if name.is_empty() {
        return Err("slot names must not be empty".into());
    }
    prepare_slot_value(name, value, roots)
}

/// Why a write naming `parent` in `parent*` is refused: no such object.
pub fn missing_parent(parent: Oid) -> String {
    format!("{parent} (named in `parent*`)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::as_ref;

    fn roots() -> Roots {
        Roots::fixed_for_tests()
    }

    #[test]
    fn root_names_in_refs_become_oids() {
        let v = Value::Map(vec![(Value::from("$ref"), Value::from("genesis_obj"))]);
        let out = prepare_input(v, &roots()).unwrap();
        assert_eq!(as_ref(&out), roots().oid("genesis_obj"));
    }

    #[test]
    fn reserved_shapes_are_refused() {
        for key in ["$method", "$other"] {
            let v = Value::Map(vec![(Value::from(key), Value::Nil)]);
            assert!(prepare_input(v, &roots()).is_err(), "{key}");
        }
        let v = Value::Map(vec![(Value::from(1), Value::Nil)]);
        assert!(prepare_input(v, &roots()).is_err());
        let v = Value::Map(vec![
            (Value::from("a"), Value::Nil),
            (Value::from("a"), Value::Nil),
        ]);
        assert!(prepare_input(v, &roots()).is_err());
        assert!(prepare_input(Value::Ext(1, vec![]), &roots()).is_err());
    }

    #[test]
    fn two_key_maps_with_dollar_keys_are_plain_data() {
        let v = Value::Map(vec![
            (Value::from("$ref"), Value::from(1)),
            (Value::from("b"), Value::Nil),
        ]);
        assert_eq!(prepare_input(v.clone(), &roots()).unwrap(), v);
    }
}
