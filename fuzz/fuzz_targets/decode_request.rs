//! Fuzzes the request decoder: any bytes must decode or fail cleanly, and
//! every reply the kernel would send for them must be valid MessagePack.
#![no_main]

use batos_protocol::{decode_request, encode_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let reply = match decode_request(body) {
        Ok(request) => encode_reply(request.id.as_ref(), &Ok(rmpv::Value::Nil)),
        Err(err) => encode_reply(err.id.as_ref(), &Err(err.error)),
    };
    let mut slice = reply.as_slice();
    rmpv::decode::read_value(&mut slice).expect("replies are valid MessagePack");
    assert!(slice.is_empty());
});
