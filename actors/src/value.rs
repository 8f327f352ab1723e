//! Slot values: MessagePack values with the protocol's rules (string map keys,
//! no extension types, reserved `$` shapes), and the `$ref` / `parent*` helpers.

use crate::roots::Roots;

/// An object identifier: allocated persistently, never reused.
pub type Oid = u64;

/// A slot value, argument or result: a MessagePack value.
pub type Value = rmpv::Value;

/// The slot that holds an object's delegation chain.
pub const PARENT_SLOT: &str = "parent*";

const REF_KEY: &str = "$ref";
const METHOD_KEY: &str = "$method";

/// A map value with string keys, in the order given.
pub fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

/// The value under `key` in a string-keyed map value (`None` when `value`
/// is not a map or has no such key).
pub fn map_field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// The value of slot `name` in a list of data slots (as
/// [`crate::ObjectSpace::read_committed`] returns them).
pub fn find_slot<'a>(slots: &'a [(String, Value)], name: &str) -> Option<&'a Value> {
    slots.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The oids an array of `{"$ref": oid}` values names (others skipped);
/// empty when `value` is absent or not an array.
pub fn ref_oids(value: Option<&Value>) -> Vec<Oid> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(as_ref).collect(),
        _ => Vec::new(),
    }
}

/// An array of `{"$ref": oid}` values.
pub fn ref_array(oids: &[Oid]) -> Value {
    Value::Array(oids.iter().map(|o| make_ref(*o)).collect())
}

/// A `{"$ref": oid}` value.
pub fn make_ref(oid: Oid) -> Value {
    Value::Map(vec![(Value::from(REF_KEY), Value::from(oid))])
}

/// The oid of a `{"$ref": oid}` value (already normalised to an integer).
pub fn as_ref(value: &Value) -> Option<Oid> {
    match value {
        Value::Map(entries) if entries.len() == 1 => match &entries[0] {
            (Value::String(k), v) if k.as_str() == Some(REF_KEY) => v.as_u64(),
            _ => None,
        },
        _ => None,
    }
}

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
    for (k, v) in entries {
        let key = match k {
            Value::String(s) => s
                .into_str()
                .ok_or_else(|| "map key is not valid UTF-8".to_string())?,
            other => return Err(format!("map keys must be strings, got {}", kind(&other))),
        };
        if out
            .iter()
            .any(|(existing, _): &(Value, Value)| existing.as_str() == Some(&key))
        {
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

/// The parents named by a `parent*` value: one `$ref` or an array of them.
pub fn parse_parents(value: &Value) -> Result<Vec<Oid>, String> {
    if let Some(oid) = as_ref(value) {
        return Ok(vec![oid]);
    }
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| as_ref(v).ok_or_else(|| "`parent*` must hold only `$ref`s".to_string()))
            .collect(),
        other => Err(format!(
            "`parent*` must be a `$ref` or an array of `$ref`s, got {}",
            kind(other)
        )),
    }
}

/// A short name for a value's type, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "int",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bin",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn parents_parse_single_and_array() {
        assert_eq!(parse_parents(&make_ref(4)).unwrap(), vec![4]);
        let arr = Value::Array(vec![make_ref(2), make_ref(1)]);
        assert_eq!(parse_parents(&arr).unwrap(), vec![2, 1]);
        assert_eq!(
            parse_parents(&Value::Array(vec![])).unwrap(),
            Vec::<Oid>::new()
        );
        assert!(parse_parents(&Value::from(5)).is_err());
        assert!(parse_parents(&Value::Array(vec![Value::from(5)])).is_err());
    }
}
