//! doesNotUnderstand, first tier: deterministic synthesis of accessors.
//!
//! Patterns (checked in this order; `Foo` is any name starting with an
//! ASCII capital, `foo` its first letter lower-cased):
//!
//! | selector | arguments | method |
//! |---|---|---|
//! | `setFoo_` or `setFoo:` | 1 | writes slot `foo` on `self`, returns nil |
//! | `foo_` or `foo:` | 1 | writes slot `foo` on `self`, returns nil; the caller applies it only when a data slot `foo` is found along `parent*` (`deposit_` is not a setter of a slot nobody has) |
//! | `getFoo` | 0 | returns slot `foo` (nil if it disappears later); the caller applies it only when a data slot `foo` is found along `parent*` |
//!
//! The result is real WAT, compiled and audited like any other method.

/// Longest slot name synthesis writes into a module.
const MAX_NAME: usize = 1024;

/// A synthesized method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synthesized {
    /// The pattern that matched (recorded as provenance).
    pub pattern: &'static str,
    /// The slot the accessor reads or writes.
    pub slot: String,
    /// The method's WAT.
    pub wat: String,
}

/// An accessor for `selector` sent with `argc` arguments, if a pattern applies.
pub fn synthesize(selector: &str, argc: usize) -> Option<Synthesized> {
    let keyword = selector
        .strip_suffix('_')
        .or_else(|| selector.strip_suffix(':'));
    if argc == 1 {
        if let Some(name) = keyword
            .and_then(|k| k.strip_prefix("set"))
            .and_then(decapitalize)
        {
            return setter("setFoo_", name);
        }
        if let Some(name) = keyword.filter(|k| !k.is_empty() && !k.contains(':')) {
            return setter("foo_", name.to_string());
        }
    }
    if argc == 0 {
        if let Some(name) = selector.strip_prefix("get").and_then(decapitalize) {
            return getter(name);
        }
    }
    None
}

fn decapitalize(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first = chars.next()?;
    first
        .is_ascii_uppercase()
        .then(|| first.to_ascii_lowercase().to_string() + chars.as_str())
}

fn escape(name: &str) -> String {
    name.bytes().map(|b| format!("\\{b:02x}")).collect()
}

fn setter(pattern: &'static str, slot: String) -> Option<Synthesized> {
    if slot.len() > MAX_NAME || slot.contains(':') {
        return None;
    }
    let buf = slot.len().next_multiple_of(8);
    let wat = format!(
        r#"(module
  (import "uvm" "arg_msgpack" (func $arg (param i32 i32 i32) (result i32)))
  (import "uvm" "set_slot_msgpack" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{name}")
  (func $reserve (param $need i32)
    (local $pages i32)
    (local.set $pages (i32.div_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 65536)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then unreachable)))))
  (func (export "invoke")
    (local $len i32)
    (local.set $len (call $arg (i32.const 0) (i32.const 0) (i32.const 0)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then unreachable))
    (call $reserve (i32.add (i32.const {buf}) (local.get $len)))
    (drop (call $arg (i32.const 0) (i32.const {buf}) (local.get $len)))
    (if (i32.lt_s (call $set (i32.const 0) (i32.const {len}) (i32.const {buf}) (local.get $len)) (i32.const 0))
      (then unreachable))))
"#,
        name = escape(&slot),
        len = slot.len(),
    );
    Some(Synthesized { pattern, slot, wat })
}

fn getter(slot: String) -> Option<Synthesized> {
    if slot.len() > MAX_NAME {
        return None;
    }
    let buf = slot.len().next_multiple_of(8);
    let wat = format!(
        r#"(module
  (import "uvm" "slot_msgpack" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "uvm" "return_msgpack" (func $ret (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{name}")
  (func $reserve (param $need i32)
    (local $pages i32)
    (local.set $pages (i32.div_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 65536)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
        (then unreachable)))))
  (func (export "invoke")
    (local $len i32)
    (local.set $len (call $get (i32.const 0) (i32.const {len}) (i32.const 0) (i32.const 0)))
    ;; a slot that has gone away reads as nil (no return call)
    (if (i32.ge_s (local.get $len) (i32.const 0))
      (then
        (call $reserve (i32.add (i32.const {buf}) (local.get $len)))
        (drop (call $get (i32.const 0) (i32.const {len}) (i32.const {buf}) (local.get $len)))
        (drop (call $ret (i32.const {buf}) (local.get $len)))))))
"#,
        name = escape(&slot),
        len = slot.len(),
    );
    Some(Synthesized {
        pattern: "getFoo",
        slot,
        wat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{audit, wat_to_wasm, AuditLimits};

    #[test]
    fn patterns_match_as_documented() {
        assert_eq!(synthesize("setColor_", 1).unwrap().slot, "color");
        assert_eq!(synthesize("setColor:", 1).unwrap().slot, "color");
        assert_eq!(synthesize("settle_", 1).unwrap().slot, "settle");
        assert_eq!(synthesize("color:", 1).unwrap().pattern, "foo_");
        assert_eq!(synthesize("getColor", 0).unwrap().slot, "color");
        assert!(synthesize("getcolor", 0).is_none());
        assert!(synthesize("color_", 2).is_none());
        assert!(synthesize("frobnicate", 0).is_none());
        assert!(synthesize("_", 1).is_none());
    }

    #[test]
    fn synthesized_modules_pass_the_audit() {
        for s in [synthesize("setNäme_", 1), synthesize("getX", 0)] {
            let s = s.unwrap();
            audit(&wat_to_wasm(&s.wat).unwrap(), &AuditLimits::default()).unwrap();
        }
    }
}
