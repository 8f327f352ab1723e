//! `ping`: liveness, versions and the image's size.

use crate::protocol::map;
use rmpv::Value;

use super::Context;

pub(super) fn execute(ctx: &Context) -> Value {
    map([
        ("version", Value::from(env!("CARGO_PKG_VERSION"))),
        ("protocol", Value::from(crate::protocol::PROTOCOL_VERSION)),
        ("uptime_s", Value::F64(ctx.started.elapsed().as_secs_f64())),
        ("objects", Value::from(ctx.space.object_count())),
        (
            "rebuilding",
            Value::Array(if ctx.catalog.is_rebuilding() {
                vec![Value::from("memory_index")]
            } else {
                Vec::new()
            }),
        ),
    ])
}
