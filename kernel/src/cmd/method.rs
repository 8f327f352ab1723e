//! `create_method`: install a method (WAT, a WebAssembly binary, or Python
//! the kernel compiles) after the audit.

use batos_actors::space::MethodCode as Code;
use batos_actors::ObjectSpace;
use rmpv::Value;

use super::{resolve, wire_error, Context};
use crate::protocol::{map, MethodCode, ObjRef, WireError};

pub(super) async fn create(
    ctx: &Context,
    space: &ObjectSpace,
    oid: ObjRef,
    selector: String,
    code: MethodCode,
) -> Result<Value, WireError> {
    let oid = resolve(ctx, oid)?;
    let code = match code {
        MethodCode::Wat(text) => Code::Wat(text),
        MethodCode::Wasm(bytes) => Code::Wasm(bytes),
        MethodCode::Python(source) => Code::Python(source),
    };
    let record = space
        .create_method(oid, selector.clone(), code)
        .await
        .map_err(wire_error)?;
    Ok(map([
        ("selector", Value::from(selector)),
        ("version", Value::from(record.version)),
        ("hash", Value::from(record.hash)),
    ]))
}
