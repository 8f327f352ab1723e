//! Slot values: MessagePack values with the protocol's rules (string map keys,
//! no extension types, reserved `$` shapes), and the `$ref` / `parent*` helpers.

/// An object identifier: allocated persistently, never reused.
pub type Oid = u64;

/// A slot value, argument or result: a MessagePack value.
pub type Value = rmpv::Value;

/// The slot that holds an object's delegation chain.
pub const PARENT_SLOT: &str = "parent*";

/// The key of a reference value, `{"$ref": oid}`.
pub const REF_KEY: &str = "$ref";
/// The key of a method as state shows it, `{"$method": ...}`.
pub const METHOD_KEY: &str = "$method";

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
/// the object space's `read_committed` returns them).
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

/// About how many bytes `value` takes encoded (MessagePack): strings and
/// binaries by their length, every other value a few bytes. For caps, not
/// for allocation.
pub fn approx_size(value: &Value) -> usize {
    match value {
        Value::String(s) => 5 + s.as_bytes().len(),
        Value::Binary(b) | Value::Ext(_, b) => 6 + b.len(),
        Value::Array(items) => 5 + items.iter().map(approx_size).sum::<usize>(),
        Value::Map(pairs) => {
            5 + pairs
                .iter()
                .map(|(k, v)| approx_size(k) + approx_size(v))
                .sum::<usize>()
        }
        _ => 9,
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
