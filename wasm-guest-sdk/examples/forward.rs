//! `forward`: sends `increment` (no arguments) to the object whose oid is
//! argument 0 and returns that send's result unchanged (MessagePack
//! passthrough via `return_msgpack`, whatever its type).
//!
//! With `counter.wasm` installed as `increment` on the target, this returns
//! the target's new `count`, and the target's slot (not the forwarder's)
//! changes: writes go to the receiver of each send.
//!
//! Install: `create_method` with `selector: "forward"` and
//! `wasm: <forward.wasm>` on any object; install `counter.wasm` as
//! `increment` on the target. Then `send` `forward` with args `[target_oid]`.

#![no_std]

use batos_guest::{arg_i64, last_result, method, return_msgpack, send, Error};

/// An empty MessagePack array: no arguments.
const NO_ARGS: &[u8] = &[0x90];

fn forward() -> Result<(), Error> {
    let target = arg_i64(0)?;
    // Most results (ints, short strs) fit 64 bytes. A bigger one was still
    // sent: re-read it with `last_result` rather than sending twice (the ABI's
    // buffer convention). Over 8 KiB we give up, which traps.
    let mut small = [0u8; 64];
    let mut big = [0u8; 8192];
    let result = match send(target, "increment", NO_ARGS, &mut small) {
        Ok(result) => result,
        Err(Error::BufferTooSmall { .. }) => last_result(&mut big)?,
        Err(e) => return Err(e),
    };
    return_msgpack(result)
}

method!(forward);
