//! The method ABI, version 1: the `uvm` host functions a method may import,
//! their signatures and the status codes they return (`docs/method-abi.md`).
//! The audit checks imports against this table; the sandbox links exactly it.

/// The host module methods import from.
pub const HOST_MODULE: &str = "uvm";

/// A WebAssembly value type used by the ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbiType {
    /// i32
    I32,
    /// i64
    I64,
    /// f64
    F64,
}

use AbiType::{F64, I32, I64};

/// One host function: name, parameters, results.
pub struct HostFn {
    /// Import name.
    pub name: &'static str,
    /// Parameter types.
    pub params: &'static [AbiType],
    /// Result types.
    pub results: &'static [AbiType],
}

const fn f(name: &'static str, params: &'static [AbiType], results: &'static [AbiType]) -> HostFn {
    HostFn {
        name,
        params,
        results,
    }
}

/// Every host function of ABI v1.
pub const HOST_FUNCTIONS: &[HostFn] = &[
    f("arg_count", &[], &[I32]),
    f("arg_i64", &[I32, I32], &[I32]),
    f("arg_f64", &[I32, I32], &[I32]),
    f("slot_i64", &[I32, I32, I32], &[I32]),
    f("slot_f64", &[I32, I32, I32], &[I32]),
    f("slot_str", &[I32, I32, I32, I32], &[I32]),
    f("set_slot_i64", &[I32, I32, I64], &[I32]),
    f("set_slot_f64", &[I32, I32, F64], &[I32]),
    f("set_slot_str", &[I32, I32, I32, I32], &[I32]),
    f("return_i64", &[I64], &[]),
    f("return_f64", &[F64], &[]),
    f("return_str", &[I32, I32], &[I32]),
    f("log", &[I32, I32], &[]),
    f("arg_msgpack", &[I32, I32, I32], &[I32]),
    f("slot_msgpack", &[I32, I32, I32, I32], &[I32]),
    f("set_slot_msgpack", &[I32, I32, I32, I32], &[I32]),
    f("return_msgpack", &[I32, I32], &[I32]),
    f("self_oid", &[], &[I64]),
    f("send", &[I64, I32, I32, I32, I32, I32, I32], &[I32]),
    f("last_result", &[I32, I32], &[I32]),
    // ABI v2: the runtime of methods written in Python (values on the host,
    // `i32` handles in the guest; docs/method-abi.md, "Python").
    f("py_stmt", &[], &[]),
    f("py_load", &[I32, I32, I32], &[I32]),
    f("py_store", &[I32, I32], &[]),
    f("py_int", &[I64], &[I32]),
    f("py_float", &[F64], &[I32]),
    f("py_str", &[I32, I32], &[I32]),
    f("py_const", &[I32], &[I32]),
    f("py_arity", &[I32, I32, I32], &[]),
    f("py_arg", &[I32], &[I32]),
    f("py_self", &[], &[I32]),
    f("py_binop", &[I32, I32, I32], &[I32]), // a, b, operator
    f("py_compare", &[I32, I32, I32], &[I32]), // a, b, comparison
    f("py_unop", &[I32, I32], &[I32]),       // a, operator
    f("py_truthy", &[I32], &[I32]),
    f("py_getattr", &[I32, I32, I32], &[I32]),
    f("py_setattr", &[I32, I32, I32, I32], &[]),
    f("py_getitem", &[I32, I32], &[I32]),
    f("py_setitem", &[I32, I32, I32], &[]),
    f("py_slice", &[I32, I32, I32], &[I32]),
    f("py_args", &[], &[]),
    f("py_push", &[I32], &[]),
    f("py_call", &[I32, I32], &[I32]),
    f("py_call_method", &[I32, I32, I32], &[I32]),
    f("py_list", &[], &[I32]),
    f("py_dict", &[], &[I32]),
    f("py_iter", &[I32], &[I32]),
    f("py_next", &[I32, I32], &[I32]),
    f("py_unpack", &[I32, I32], &[I32]),
    f("py_flush", &[], &[]),
    f("py_return", &[I32], &[]),
    f("py_raise", &[I32], &[]),
];

/// The host function with this name.
pub fn host_fn(name: &str) -> Option<&'static HostFn> {
    HOST_FUNCTIONS.iter().find(|h| h.name == name)
}

/// Status codes host calls return to the guest (errors the guest handles).
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// No slot of that name (reads delegate along `parent*`).
    pub const NO_SUCH_SLOT: i32 = -1;
    /// The value is not of the type asked for.
    pub const WRONG_TYPE: i32 = -2;
    /// Argument index out of range.
    pub const NO_SUCH_ARG: i32 = -3;
    /// Not valid MessagePack, or a value the protocol refuses.
    pub const BAD_VALUE: i32 = -4;
    /// The target of a send does not exist.
    pub const NO_SUCH_OBJECT: i32 = -5;
    /// The sent message failed.
    pub const SEND_FAILED: i32 = -6;
}
