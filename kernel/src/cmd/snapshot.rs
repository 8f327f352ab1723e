//! `snapshot`: a consistent RocksDB checkpoint of the whole image.

use rmpv::Value;

use super::{wire_error, Context};
use crate::protocol::{map, WireError};

pub(super) async fn execute(ctx: &Context) -> Result<Value, WireError> {
    let id = ctx.space.snapshot().await.map_err(wire_error)?;
    Ok(map([("id", Value::from(id))]))
}
