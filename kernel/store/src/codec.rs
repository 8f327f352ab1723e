//! Encodings of the image's records: object headers and slot records.
//!
//! A slot record starts with a tag byte: `0` data (a MessagePack value
//! follows), `1` primitive (one code byte follows), `2` method (version u32
//! big-endian, then the module hash). New tags may be added;
//! an unknown tag is reported as corruption, never guessed at.

use batos_object::image::ImageError;
use batos_object::slot::{MethodRecord, MethodRef, Primitive, Provenance, Slot, SourceRef};
use batos_object::Value;

const TAG_DATA: u8 = 0;
const TAG_PRIMITIVE: u8 = 1;
const TAG_METHOD: u8 = 2;

/// Object header, version 1 (no fields yet; the presence of the key is what matters).
pub const OBJECT_HEADER: &[u8] = &[1];

/// Encodes a slot record.
pub fn encode_slot(slot: &Slot) -> Vec<u8> {
    match slot {
        Slot::Data(value) => {
            let mut out = vec![TAG_DATA];
            rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
            out
        }
        Slot::Primitive(p) => vec![TAG_PRIMITIVE, p.code()],
        Slot::Method(m) => {
            let mut out = vec![TAG_METHOD];
            out.extend_from_slice(&m.version.to_be_bytes());
            out.extend_from_slice(m.hash.as_bytes());
            out
        }
    }
}

/// Decodes a slot record.
pub fn decode_slot(bytes: &[u8]) -> Result<Slot, ImageError> {
    match bytes.split_first() {
        Some((&TAG_DATA, mut rest)) => {
            let value = rmpv::decode::read_value(&mut rest)
                .map_err(|e| ImageError::Corrupt(format!("slot value: {e}")))?;
            if !rest.is_empty() {
                return Err(ImageError::Corrupt(
                    "trailing bytes after slot value".into(),
                ));
            }
            Ok(Slot::Data(value))
        }
        Some((&TAG_PRIMITIVE, [code])) => Primitive::from_code(*code)
            .map(Slot::Primitive)
            .ok_or_else(|| ImageError::Corrupt(format!("unknown primitive code {code}"))),
        Some((&TAG_METHOD, rest)) if rest.len() >= 4 => {
            let (version, hash) = rest.split_at(4);
            Ok(Slot::Method(MethodRef {
                version: u32::from_be_bytes(version.try_into().expect("4 bytes")),
                hash: std::str::from_utf8(hash)
                    .map_err(|_| ImageError::Corrupt("method hash".into()))?
                    .to_string(),
            }))
        }
        Some((tag, _)) => Err(ImageError::Corrupt(format!(
            "unknown slot record tag {tag}"
        ))),
        None => Err(ImageError::Corrupt("empty slot record".into())),
    }
}

/// Encodes a method record (without its key's oid, selector, version).
pub fn encode_method(
    hash: &str,
    provenance: &Provenance,
    source: Option<&SourceRef>,
    tx: u64,
) -> Vec<u8> {
    let mut entries = vec![
        (Value::from("hash"), Value::from(hash)),
        (Value::from("provenance"), provenance.to_wire()),
        (Value::from("tx"), Value::from(tx)),
    ];
    if let Some(source) = source {
        entries.push((Value::from("source"), source.to_wire()));
    }
    let value = Value::Map(entries);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
    out
}

/// Decodes a method record.
pub fn decode_method(version: u32, mut bytes: &[u8]) -> Result<MethodRecord, ImageError> {
    let bad = || ImageError::Corrupt("method record".into());
    let value = rmpv::decode::read_value(&mut bytes).map_err(|_| bad())?;
    let get = |k: &str| {
        value
            .as_map()
            .and_then(|m| m.iter().find(|(key, _)| key.as_str() == Some(k)))
            .map(|(_, v)| v)
    };
    Ok(MethodRecord {
        version,
        hash: get("hash")
            .and_then(Value::as_str)
            .ok_or_else(bad)?
            .to_string(),
        provenance: get("provenance")
            .and_then(Provenance::from_wire)
            .ok_or_else(bad)?,
        tx: get("tx").and_then(Value::as_u64).ok_or_else(bad)?,
        // Absent in records written before sources were kept.
        source: match get("source") {
            None => None,
            Some(source) => Some(SourceRef::from_wire(source).ok_or_else(bad)?),
        },
    })
}

/// Encodes the root table.
pub fn encode_roots(roots: &[(String, u64)]) -> Vec<u8> {
    let value = Value::Array(
        roots
            .iter()
            .map(|(n, o)| Value::Array(vec![Value::from(n.as_str()), Value::from(*o)]))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).expect("writing to a Vec cannot fail");
    out
}

/// Decodes the root table.
pub fn decode_roots(mut bytes: &[u8]) -> Result<Vec<(String, u64)>, ImageError> {
    let bad = || ImageError::Corrupt("root table".into());
    let value = rmpv::decode::read_value(&mut bytes).map_err(|_| bad())?;
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([name, oid]) => Ok((
                name.as_str().ok_or_else(bad)?.to_string(),
                oid.as_u64().ok_or_else(bad)?,
            )),
            _ => Err(bad()),
        })
        .collect()
}

/// Encodes a u64 counter.
pub fn encode_u64(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Decodes a u64 counter.
pub fn decode_u64(bytes: &[u8]) -> Result<u64, ImageError> {
    bytes
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| ImageError::Corrupt("counter is not 8 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::F64),
            ".{0,20}".prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Binary),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec(("[a-z]{1,8}", inner), 0..8).prop_map(|kv| Value::Map(
                    kv.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
                )),
            ]
        })
    }

    fn same(a: &Value, b: &Value) -> bool {
        // Bitwise float comparison so NaN and -0.0 count as round-tripped.
        let mut x = Vec::new();
        let mut y = Vec::new();
        rmpv::encode::write_value(&mut x, a).unwrap();
        rmpv::encode::write_value(&mut y, b).unwrap();
        x == y
    }

    proptest! {
        #[test]
        fn data_slots_round_trip(v in value()) {
            let slot = decode_slot(&encode_slot(&Slot::Data(v.clone()))).unwrap();
            match slot {
                Slot::Data(back) => prop_assert!(same(&v, &back)),
                other => prop_assert!(false, "decoded {:?}", other),
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_slot(&bytes);
            let _ = decode_roots(&bytes);
        }
    }

    #[test]
    fn primitives_and_roots_round_trip() {
        for p in Primitive::ALL {
            assert_eq!(
                decode_slot(&encode_slot(&Slot::Primitive(p))).unwrap(),
                Slot::Primitive(p)
            );
        }
        let m = Slot::Method(MethodRef {
            version: 3,
            hash: "ab".repeat(32),
        });
        assert_eq!(decode_slot(&encode_slot(&m)).unwrap(), m);
        let provenance = Provenance::Model {
            model: "smol".into(),
            expert: Some("BRICK".into()),
            prompt_hash: "00".into(),
            attempts: 2,
        };
        let record = decode_method(4, &encode_method("ff", &provenance, None, 9)).unwrap();
        assert_eq!(
            record,
            MethodRecord {
                version: 4,
                hash: "ff".into(),
                provenance: provenance.clone(),
                tx: 9,
                source: None,
            }
        );
        let source = SourceRef {
            language: "wat".into(),
            hash: "cd".repeat(32),
        };
        let record = decode_method(5, &encode_method("ff", &provenance, Some(&source), 9)).unwrap();
        assert_eq!(record.source, Some(source));
        let roots = vec![
            ("traits_obj".to_string(), 1),
            ("genesis_obj".to_string(), 3),
        ];
        assert_eq!(decode_roots(&encode_roots(&roots)).unwrap(), roots);
        assert!(decode_slot(&[9]).is_err());
    }
}
