//! `counter`: increments the int slot `count` on `self` (0 when absent) and
//! returns the new value.
//!
//! The Rust twin of the WAT counter in `docs/method-abi.md`.
//!
//! Install: `create_method` with `selector: "increment"` and
//! `wasm: <counter.wasm>` on an object; then `send` `increment` (no
//! arguments) to it, or to a clone (the clone delegates the method along
//! `parent*` and gets its own `count`, since writes go to `self`). Replies:
//! 1, 2, 3, …

#![no_std]

use batos_guest::{method, return_i64, set_slot_i64, slot_i64, Error, OrTrap};

fn increment() -> Result<(), Error> {
    let count = match slot_i64("count") {
        Ok(n) => n,
        Err(Error::NoSuchSlot) => 0,
        Err(e) => return Err(e),
    };
    let next = count.checked_add(1).or_trap();
    set_slot_i64("count", next)?;
    return_i64(next);
    Ok(())
}

method!(increment);
