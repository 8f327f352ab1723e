//! The `py_*` host functions (ABI v2): the Python runtime (`crate::py`)
//! as the guest calls it. Every value is a handle into the call's
//! temporaries; a runtime error traps with Python's words for it.

use wasmtime::{Caller, Linker};

use crate::abi::{status, HOST_MODULE};
use crate::host::{fault, host, read_str, send, Guest, Result};
use crate::py::{self, PyError, PyState, PyVal};

fn raise(e: PyError) -> wasmtime::Error {
    fault(e.0)
}

/// Charges the host work the last operation did as fuel.
fn charge(caller: &mut Caller<'_, Guest>) -> Result<()> {
    let work = std::mem::take(&mut caller.data_mut().py.work);
    if work == 0 {
        return Ok(());
    }
    let fuel = caller.get_fuel()?;
    if work > fuel {
        return Err(fault("ran out of fuel (in the Python runtime)"));
    }
    caller.set_fuel(fuel - work)?;
    Ok(())
}

fn st<'a>(caller: &'a mut Caller<'_, Guest>) -> &'a mut PyState {
    &mut caller.data_mut().py
}

fn val(caller: &mut Caller<'_, Guest>, h: i32) -> Result<PyVal> {
    st(caller).get(h).map_err(raise)
}

fn temp(caller: &mut Caller<'_, Guest>, v: PyVal) -> Result<i32> {
    let h = st(caller).temp(v).map_err(raise)?;
    charge(caller)?;
    Ok(h)
}

/// Runs a runtime operation on the call's state and keeps its result.
fn op(
    caller: &mut Caller<'_, Guest>,
    f: impl FnOnce(&mut PyState) -> std::result::Result<PyVal, PyError>,
) -> Result<i32> {
    let v = f(st(caller)).map_err(raise)?;
    temp(caller, v)
}

fn selector(name: &str, nargs: usize) -> String {
    if nargs == 0 || name.ends_with('_') {
        name.to_string()
    } else {
        format!("{name}_")
    }
}

/// Writes back the lists and dicts read from slots that changed in place.
fn flush(caller: &mut Caller<'_, Guest>) -> Result<()> {
    let changed = st(caller).take_changed().map_err(raise)?;
    for (oid, name, value) in changed {
        if host(caller).lock().write_slot(oid, &name, value)? != status::OK {
            return Err(fault(format!(
                "ValueError: slot '{name}' of object {oid} cannot hold its new value"
            )));
        }
    }
    Ok(())
}

/// A message send from Python: `obj.name(args)` with the keyword rule.
/// What this call changed in place is written first, so the receiver sees
/// it; slots are read afresh after.
fn send_py(
    caller: &mut Caller<'_, Guest>,
    oid: u64,
    name: &str,
    args: Vec<PyVal>,
) -> Result<PyVal> {
    flush(caller)?;
    let selector = selector(name, args.len());
    let args = args
        .iter()
        .map(py::to_value)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(raise)?;
    match send(caller, oid, &selector, args)? {
        Ok(value) => py::from_value(&value, st(caller)).map_err(raise),
        Err(code) => Err(fault(match code {
            status::NO_SUCH_OBJECT => format!("ReferenceError: object {oid} does not exist"),
            status::BAD_VALUE => format!("ValueError: the arguments of {selector} are not values"),
            _ => format!("AttributeError: object {oid} does not understand {selector:?}"),
        })),
    }
}

/// Defines the `py_*` functions in `linker`.
pub(crate) fn define(linker: &mut Linker<Guest>) -> Result<()> {
    let m = HOST_MODULE;
    linker.func_wrap(m, "py_stmt", |mut caller: Caller<'_, Guest>| {
        st(&mut caller).end_statement();
    })?;
    linker.func_wrap(
        m,
        "py_load",
        |mut caller: Caller<'_, Guest>, slot: i32, np: i32, nl: i32| -> Result<i32> {
            let v = match st(&mut caller).load(slot) {
                Some(v) => v,
                None => {
                    let name = read_str(&mut caller, np, nl)?;
                    return Err(fault(format!(
                        "UnboundLocalError: cannot access local variable '{name}' where it is not associated with a value"
                    )));
                }
            };
            temp(&mut caller, v)
        },
    )?;
    linker.func_wrap(
        m,
        "py_store",
        |mut caller: Caller<'_, Guest>, slot: i32, h: i32| -> Result<()> {
            let v = val(&mut caller, h)?;
            st(&mut caller).store(slot, v).map_err(raise)
        },
    )?;
    linker.func_wrap(m, "py_int", |mut caller: Caller<'_, Guest>, v: i64| {
        temp(&mut caller, PyVal::Int(v))
    })?;
    linker.func_wrap(m, "py_float", |mut caller: Caller<'_, Guest>, v: f64| {
        temp(&mut caller, PyVal::Float(v))
    })?;
    linker.func_wrap(
        m,
        "py_str",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32| -> Result<i32> {
            let text = read_str(&mut caller, p, l)?;
            op(&mut caller, |st| st.new_str(text))
        },
    )?;
    linker.func_wrap(
        m,
        "py_const",
        |mut caller: Caller<'_, Guest>, kind: i32| -> Result<i32> {
            let v = match kind {
                0 => PyVal::None,
                1 => PyVal::Bool(true),
                2 => PyVal::Bool(false),
                _ => return Err(fault(format!("SystemError: unknown constant {kind}"))),
            };
            temp(&mut caller, v)
        },
    )?;
    linker.func_wrap(
        m,
        "py_arity",
        |mut caller: Caller<'_, Guest>, n: i32, np: i32, nl: i32| -> Result<()> {
            let given = caller.data().frame.args.len();
            if given != n as usize {
                let name = read_str(&mut caller, np, nl)?;
                return Err(fault(format!(
                    "TypeError: {name}() takes {n} arguments ({given} given)"
                )));
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "py_arg",
        |mut caller: Caller<'_, Guest>, i: i32| -> Result<i32> {
            let value = usize::try_from(i)
                .ok()
                .and_then(|i| caller.data().frame.args.get(i).cloned())
                .ok_or_else(|| fault(format!("TypeError: no argument {i}")))?;
            op(&mut caller, |st| py::from_value(&value, st))
        },
    )?;
    linker.func_wrap(m, "py_self", |mut caller: Caller<'_, Guest>| {
        let oid = caller.data().frame.self_oid;
        temp(&mut caller, PyVal::Ref(oid))
    })?;
    linker.func_wrap(
        m,
        "py_binop",
        |mut caller: Caller<'_, Guest>, a: i32, b: i32, code: i32| -> Result<i32> {
            let (a, b) = (val(&mut caller, a)?, val(&mut caller, b)?);
            op(&mut caller, |st| py::binop(st, code, &a, &b))
        },
    )?;
    linker.func_wrap(
        m,
        "py_compare",
        |mut caller: Caller<'_, Guest>, a: i32, b: i32, code: i32| -> Result<i32> {
            let (a, b) = (val(&mut caller, a)?, val(&mut caller, b)?);
            op(&mut caller, |st| {
                py::compare(st, code, &a, &b).map(PyVal::Bool)
            })
        },
    )?;
    linker.func_wrap(
        m,
        "py_unop",
        |mut caller: Caller<'_, Guest>, a: i32, code: i32| -> Result<i32> {
            let a = val(&mut caller, a)?;
            op(&mut caller, |_| py::unop(code, &a))
        },
    )?;
    linker.func_wrap(
        m,
        "py_truthy",
        |mut caller: Caller<'_, Guest>, a: i32| -> Result<i32> {
            Ok(i32::from(py::truthy(&val(&mut caller, a)?)))
        },
    )?;
    linker.func_wrap(
        m,
        "py_getattr",
        |mut caller: Caller<'_, Guest>, obj: i32, np: i32, nl: i32| -> Result<i32> {
            let name = read_str(&mut caller, np, nl)?;
            let target = val(&mut caller, obj)?;
            let PyVal::Ref(oid) = target else {
                let kind = py::type_name(&target);
                return Err(fault(format!(
                    "AttributeError: '{kind}' object has no attribute '{name}'"
                )));
            };
            if let Some(container) = st(&mut caller).bound(oid, &name) {
                return temp(&mut caller, container);
            }
            let value = host(&caller).lock().read_slot(oid, &name)?;
            match value {
                Some(value) => op(&mut caller, |st| {
                    let v = py::from_value(&value, st)?;
                    st.bind(oid, &name, &v, value);
                    Ok(v)
                }),
                None => Err(fault(format!(
                    "AttributeError: object {oid} has no slot '{name}'"
                ))),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "py_setattr",
        |mut caller: Caller<'_, Guest>, obj: i32, np: i32, nl: i32, v: i32| -> Result<()> {
            let name = read_str(&mut caller, np, nl)?;
            let PyVal::Ref(oid) = val(&mut caller, obj)? else {
                return Err(fault(format!(
                    "AttributeError: only objects' slots can be set ('{name}')"
                )));
            };
            let value = py::to_value(&val(&mut caller, v)?).map_err(raise)?;
            st(&mut caller).unbind(oid, &name);
            match host(&caller).lock().write_slot(oid, &name, value)? {
                status::OK => Ok(()),
                status::NO_SUCH_OBJECT => Err(fault(format!(
                    "ReferenceError: object {oid} does not exist"
                ))),
                _ => Err(fault(format!(
                    "ValueError: slot '{name}' cannot hold that value"
                ))),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "py_getitem",
        |mut caller: Caller<'_, Guest>, a: i32, i: i32| -> Result<i32> {
            let (a, i) = (val(&mut caller, a)?, val(&mut caller, i)?);
            op(&mut caller, |st| py::getitem(st, &a, &i))
        },
    )?;
    linker.func_wrap(
        m,
        "py_setitem",
        |mut caller: Caller<'_, Guest>, a: i32, i: i32, v: i32| -> Result<()> {
            let (a, i, v) = (
                val(&mut caller, a)?,
                val(&mut caller, i)?,
                val(&mut caller, v)?,
            );
            py::setitem(st(&mut caller), &a, &i, v).map_err(raise)?;
            charge(&mut caller)
        },
    )?;
    linker.func_wrap(
        m,
        "py_slice",
        |mut caller: Caller<'_, Guest>, a: i32, lo: i32, hi: i32| -> Result<i32> {
            let (a, lo, hi) = (
                val(&mut caller, a)?,
                val(&mut caller, lo)?,
                val(&mut caller, hi)?,
            );
            op(&mut caller, |st| py::slice(st, &a, &lo, &hi))
        },
    )?;
    linker.func_wrap(m, "py_args", |mut caller: Caller<'_, Guest>| {
        st(&mut caller).begin_args();
    })?;
    linker.func_wrap(
        m,
        "py_push",
        |mut caller: Caller<'_, Guest>, h: i32| -> Result<()> {
            let v = val(&mut caller, h)?;
            st(&mut caller).push_arg(v).map_err(raise)
        },
    )?;
    linker.func_wrap(
        m,
        "py_call",
        |mut caller: Caller<'_, Guest>, np: i32, nl: i32| -> Result<i32> {
            let name = read_str(&mut caller, np, nl)?;
            let args = st(&mut caller).take_args().map_err(raise)?;
            op(&mut caller, |st| py::builtin(st, &name, args))
        },
    )?;
    linker.func_wrap(
        m,
        "py_call_method",
        |mut caller: Caller<'_, Guest>, obj: i32, np: i32, nl: i32| -> Result<i32> {
            let name = read_str(&mut caller, np, nl)?;
            let args = st(&mut caller).take_args().map_err(raise)?;
            match val(&mut caller, obj)? {
                PyVal::Ref(oid) => {
                    let v = send_py(&mut caller, oid, &name, args)?;
                    temp(&mut caller, v)
                }
                value => op(&mut caller, |st| py::method(st, &value, &name, args)),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "py_list",
        |mut caller: Caller<'_, Guest>| -> Result<i32> {
            op(&mut caller, |st| {
                let items = st.take_args()?;
                st.new_list(items)
            })
        },
    )?;
    linker.func_wrap(
        m,
        "py_dict",
        |mut caller: Caller<'_, Guest>| -> Result<i32> {
            op(&mut caller, |st| {
                let items = st.take_args()?;
                py::dict(st, items)
            })
        },
    )?;
    linker.func_wrap(
        m,
        "py_iter",
        |mut caller: Caller<'_, Guest>, a: i32| -> Result<i32> {
            let a = val(&mut caller, a)?;
            op(&mut caller, |st| py::iterate(st, &a))
        },
    )?;
    linker.func_wrap(
        m,
        "py_next",
        |mut caller: Caller<'_, Guest>, iter_slot: i32, target: i32| -> Result<i32> {
            let it = st(&mut caller)
                .load(iter_slot)
                .ok_or_else(|| fault("SystemError: no iterator in its slot"))?;
            match py::next(&it).map_err(raise)? {
                Some(v) => {
                    st(&mut caller).store(target, v).map_err(raise)?;
                    Ok(1)
                }
                None => Ok(0),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "py_unpack",
        |mut caller: Caller<'_, Guest>, a: i32, n: i32| -> Result<i32> {
            let a = val(&mut caller, a)?;
            op(&mut caller, |st| {
                let items = py::unpack(st, &a, n.max(0) as usize)?;
                st.new_list(items)
            })
        },
    )?;
    linker.func_wrap(
        m,
        "py_flush",
        |mut caller: Caller<'_, Guest>| -> Result<()> { flush(&mut caller) },
    )?;
    linker.func_wrap(
        m,
        "py_return",
        |mut caller: Caller<'_, Guest>, h: i32| -> Result<()> {
            let value = py::to_value(&val(&mut caller, h)?).map_err(raise)?;
            caller.data_mut().frame.result = Some(value);
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "py_raise",
        |mut caller: Caller<'_, Guest>, h: i32| -> Result<()> {
            let message = py::to_str(&val(&mut caller, h)?);
            Err(fault(message))
        },
    )?;
    Ok(())
}
