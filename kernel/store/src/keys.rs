//! The image's key layout. Column families:
//!
//! | family    | key                         | value                          |
//! |-----------|-----------------------------|--------------------------------|
//! | `meta`    | `format_version`            | u32 big-endian                 |
//! | `meta`    | `next_oid`, `objects`, `last_tx` | u64 big-endian            |
//! | `meta`    | `roots`                     | MessagePack array of [name, oid] |
//! | `objects` | oid (u64 big-endian)        | object header ([`super::codec`]) |
//! | `slots`   | oid (u64 BE) ++ slot name (UTF-8) | slot record ([`super::codec`]) |
//! | `methods` | oid (u64 BE) ++ selector length (u32 BE) ++ selector ++ version (u32 BE) | method record |
//! | `modules` | SHA-256 of the content (lowercase hex) | a WebAssembly binary, or a blob (expert adapter files) |
//! | `compiled`| engine fingerprint (8 bytes) ++ module SHA-256 | serialized wasmtime module (a cache) |
//!
//! Big-endian oids make an object's slots one contiguous, ordered key range.

use batos_object::Oid;

/// Column family of image metadata.
pub const CF_META: &str = "meta";
/// Column family of object headers.
pub const CF_OBJECTS: &str = "objects";
/// Column family of slots.
pub const CF_SLOTS: &str = "slots";
/// Column family of method history.
pub const CF_METHODS: &str = "methods";
/// Column family of module binaries.
pub const CF_MODULES: &str = "modules";
/// Column family of compiled modules (derived, may be dropped).
pub const CF_COMPILED: &str = "compiled";
/// All column families.
pub const FAMILIES: [&str; 6] = [
    CF_META,
    CF_OBJECTS,
    CF_SLOTS,
    CF_METHODS,
    CF_MODULES,
    CF_COMPILED,
];

/// Meta key of the format version.
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Meta key of the next oid to allocate.
pub const META_NEXT_OID: &[u8] = b"next_oid";
/// Meta key of the object count.
pub const META_OBJECTS: &[u8] = b"objects";
/// Meta key of the last transaction id.
pub const META_LAST_TX: &[u8] = b"last_tx";
/// Meta key of the root table.
pub const META_ROOTS: &[u8] = b"roots";

/// The key of an object header.
pub fn object_key(oid: Oid) -> [u8; 8] {
    oid.to_be_bytes()
}

/// The key of one slot.
pub fn slot_key(oid: Oid, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + name.len());
    key.extend_from_slice(&oid.to_be_bytes());
    key.extend_from_slice(name.as_bytes());
    key
}

/// Splits a slot key into oid and name.
pub fn parse_slot_key(key: &[u8]) -> Option<(Oid, &str)> {
    if key.len() < 8 {
        return None;
    }
    let (oid, name) = key.split_at(8);
    Some((
        Oid::from_be_bytes(oid.try_into().ok()?),
        std::str::from_utf8(name).ok()?,
    ))
}

/// The key of one method version record.
pub fn method_key(oid: Oid, selector: &str, version: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + selector.len());
    key.extend_from_slice(&oid.to_be_bytes());
    key.extend_from_slice(&(selector.len() as u32).to_be_bytes());
    key.extend_from_slice(selector.as_bytes());
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// Splits a method key into oid, selector and version.
pub fn parse_method_key(key: &[u8]) -> Option<(Oid, &str, u32)> {
    let oid = Oid::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let len = u32::from_be_bytes(key.get(8..12)?.try_into().ok()?) as usize;
    let selector = std::str::from_utf8(key.get(12..12 + len)?).ok()?;
    let version = u32::from_be_bytes(key.get(12 + len..)?.try_into().ok()?);
    Some((oid, selector, version))
}

/// The exclusive upper bound of an object's slot keys (None for the last oid).
pub fn slot_range_end(oid: Oid) -> Option<[u8; 8]> {
    oid.checked_add(1).map(Oid::to_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn slot_keys_round_trip(oid: u64, name in ".{0,40}") {
            let key = slot_key(oid, &name);
            prop_assert_eq!(parse_slot_key(&key), Some((oid, name.as_str())));
        }

        #[test]
        fn method_keys_round_trip_and_order_by_version(oid: u64, sel in ".{0,20}", a: u32, b: u32) {
            let key = method_key(oid, &sel, a);
            prop_assert_eq!(parse_method_key(&key), Some((oid, sel.as_str(), a)));
            prop_assert_eq!(a.cmp(&b), method_key(oid, &sel, a).cmp(&method_key(oid, &sel, b)));
        }

        #[test]
        fn an_objects_slots_sort_inside_its_range(a: u64, b: u64, name in ".{0,40}") {
            // Every slot key of `a` sorts at or after a's prefix and before a+1's.
            let key = slot_key(a, &name);
            prop_assert!(key.as_slice() >= &object_key(a)[..]);
            if let Some(end) = slot_range_end(a) {
                prop_assert!(key.as_slice() < &end[..]);
            }
            // Order of oids is order of keys.
            prop_assert_eq!(a.cmp(&b), object_key(a).cmp(&object_key(b)));
        }
    }
}
