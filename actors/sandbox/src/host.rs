//! The `uvm` host functions (ABI v1, `docs/method-abi.md`). Guest-level
//! errors come back as negative status codes; host faults (bad pointers,
//! non-UTF-8 names, limits) trap.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use wasmtime::{Caller, Extern, Linker, ResourceLimiter, StoreLimits};

use crate::abi::{status, HOST_MODULE};
use batos_object::value::{Oid, Value};

/// Deepest MessagePack nesting a guest may hand over.
const MAX_VALUE_DEPTH: usize = 128;

/// Why a method call failed: the message fails with `method_trap`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MethodFault(pub String);

/// Runs a method for a nested send: the engine, as the host functions see
/// it (implemented by [`crate::Sandbox`]).
pub trait Invoke: Send + Sync {
    /// Runs the method `hash` in a fresh instance with `frame`, within
    /// `deadline`, its host calls going to `host`.
    fn invoke(
        &self,
        host: &Arc<Mutex<dyn MethodHost>>,
        hash: &str,
        frame: Frame,
        deadline: Instant,
    ) -> std::result::Result<Value, MethodFault>;
}

/// Store data of one call: the transaction's host, the frame and the
/// store's resource limits.
pub(crate) struct Guest {
    pub(crate) host: Arc<Mutex<dyn MethodHost>>,
    pub(crate) frame: Frame,
    limits: StoreLimits,
    /// The values of a method written in Python (`host_py`).
    pub(crate) py: crate::py::PyState,
}

impl Guest {
    pub(crate) fn new(host: Arc<Mutex<dyn MethodHost>>, frame: Frame, limits: StoreLimits) -> Self {
        Guest {
            host,
            frame,
            limits,
            py: crate::py::PyState::default(),
        }
    }

    pub(crate) fn frame(&self) -> &Frame {
        &self.frame
    }

    /// What the method returned (the last `return_*` wins).
    pub(crate) fn into_result(self) -> Option<Value> {
        self.frame.result
    }

    pub(crate) fn limits(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limits
    }
}

/// A frame's receiver, for callers building one.
pub fn frame(self_oid: Oid, selector: &str, args: Vec<Value>, depth: u32) -> Frame {
    Frame {
        self_oid,
        selector: selector.to_string(),
        args,
        result: None,
        last_result: None,
        depth,
    }
}

/// The state of one method call.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The receiver (`self`).
    pub self_oid: Oid,
    /// The selector being run.
    pub selector: String,
    /// The arguments.
    pub args: Vec<Value>,
    /// What the method returned so far (the last `return_*` wins).
    pub result: Option<Value>,
    /// The last `send` result, MessagePack encoded.
    pub last_result: Option<Vec<u8>>,
    /// Nesting depth of sends (0 for the message itself).
    pub depth: u32,
}

/// What a send resolved to.
pub enum Resolved {
    /// A data slot's value, or a primitive's result.
    Value(Value),
    /// A method to run with `self` = the target.
    Method {
        /// The module's hash.
        hash: String,
    },
    /// A guest-level failure (`status::*`).
    Status(i32),
}

/// The transaction a method runs in: reads see its earlier writes, writes
/// land in it, sends are resolved in it.
pub trait MethodHost: Send {
    /// A data slot of `oid`, found along `parent*`.
    fn read_slot(
        &mut self,
        oid: Oid,
        name: &str,
    ) -> std::result::Result<Option<Value>, MethodFault>;
    /// Writes a data slot of `oid`; `status::BAD_VALUE` if the value is refused.
    fn write_slot(
        &mut self,
        oid: Oid,
        name: &str,
        value: Value,
    ) -> std::result::Result<i32, MethodFault>;
    /// Looks `selector` up for `target` (primitives run here).
    fn resolve(
        &mut self,
        target: Oid,
        selector: &str,
        args: &[Value],
    ) -> std::result::Result<Resolved, MethodFault>;
    /// The sandbox, for nested calls.
    fn sandbox(&self) -> Arc<dyn Invoke>;
    /// When the whole message must be done.
    fn deadline(&self) -> Instant;
    /// What the message may still log (one budget for every method it runs).
    fn log_budget(&mut self) -> &mut LogBudget;
}

/// Bytes of one `log` line that reach the log; the rest is cut.
pub const MAX_LOG_LINE_BYTES: usize = 1024;

/// `log` lines one message may write; later ones are dropped (once noted).
pub const MAX_LOG_LINES: u32 = 16;

/// How many `log` lines a message has written, so a method looping over
/// `log` cannot flood the kernel's log.
#[derive(Debug, Default)]
pub struct LogBudget {
    lines: u32,
}

/// What becomes of one `log` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogVerdict {
    /// Within the budget: write the line.
    Write,
    /// The first line over it: write that the rest are dropped.
    SayDropped,
    /// Over it, and that was said: write nothing.
    Drop,
}

impl LogBudget {
    /// Counts one line.
    fn take(&mut self) -> LogVerdict {
        self.lines = self.lines.saturating_add(1);
        match self.lines {
            n if n <= MAX_LOG_LINES => LogVerdict::Write,
            n if n == MAX_LOG_LINES + 1 => LogVerdict::SayDropped,
            _ => LogVerdict::Drop,
        }
    }
}

/// A guest's log text as one safe line: invalid UTF-8 replaced, control
/// characters (newlines included) escaped, cut at [`MAX_LOG_LINE_BYTES`].
fn log_line(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_LOG_LINE_BYTES)];
    let mut line: String = String::from_utf8_lossy(cut).escape_debug().collect();
    if bytes.len() > MAX_LOG_LINE_BYTES {
        line.push_str(&format!("... ({} bytes in all)", bytes.len()));
    }
    line
}

pub(crate) type Result<T> = std::result::Result<T, wasmtime::Error>;

pub(crate) fn fault(message: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(MethodFault(message.into()))
}

fn memory(caller: &mut Caller<'_, Guest>) -> Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(fault("the method exports no memory")),
    }
}

fn span(ptr: i32, len: i32) -> Result<std::ops::Range<usize>> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let end = ptr
        .checked_add(len)
        .ok_or_else(|| fault("pointer + length overflows"))?;
    Ok(ptr..end)
}

fn read_bytes(caller: &mut Caller<'_, Guest>, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let memory = memory(caller)?;
    let range = span(ptr, len)?;
    memory
        .data(&caller)
        .get(range)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| fault(format!("memory access out of bounds ({ptr}+{len})")))
}

pub(crate) fn read_str(caller: &mut Caller<'_, Guest>, ptr: i32, len: i32) -> Result<String> {
    String::from_utf8(read_bytes(caller, ptr, len)?)
        .map_err(|_| fault("a name passed to the host is not UTF-8"))
}

fn write_bytes(caller: &mut Caller<'_, Guest>, ptr: i32, bytes: &[u8]) -> Result<()> {
    let memory = memory(caller)?;
    let range = span(ptr, bytes.len() as i32)?;
    memory
        .data_mut(&mut *caller)
        .get_mut(range)
        .ok_or_else(|| {
            fault(format!(
                "memory access out of bounds ({ptr}+{})",
                bytes.len()
            ))
        })?
        .copy_from_slice(bytes);
    Ok(())
}

/// Copies `min(len, cap)` bytes and returns the full length.
fn write_out(
    caller: &mut Caller<'_, Guest>,
    buf_ptr: i32,
    buf_cap: i32,
    bytes: &[u8],
) -> Result<i32> {
    let len = i32::try_from(bytes.len()).map_err(|_| fault("value larger than 2 GiB"))?;
    let n = bytes.len().min(buf_cap.max(0) as usize);
    write_bytes(caller, buf_ptr, &bytes[..n])?;
    Ok(len)
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn decode(bytes: &[u8]) -> Option<Value> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_VALUE_DEPTH).ok()?;
    reader.is_empty().then_some(value)
}

pub(crate) fn host(caller: &Caller<'_, Guest>) -> Arc<Mutex<dyn MethodHost>> {
    caller.data().host.clone()
}

fn read_slot(
    caller: &mut Caller<'_, Guest>,
    name_ptr: i32,
    name_len: i32,
) -> Result<Option<Value>> {
    let name = read_str(caller, name_ptr, name_len)?;
    let oid = caller.data().frame.self_oid;
    let host = host(caller);
    let value = host.lock().read_slot(oid, &name)?;
    Ok(value)
}

fn write_slot(
    caller: &mut Caller<'_, Guest>,
    name_ptr: i32,
    name_len: i32,
    value: Value,
) -> Result<i32> {
    let name = read_str(caller, name_ptr, name_len)?;
    let oid = caller.data().frame.self_oid;
    let host = host(caller);
    let status = host.lock().write_slot(oid, &name, value)?;
    Ok(status)
}

fn store_i64(
    caller: &mut Caller<'_, Guest>,
    out: i32,
    value: Option<i64>,
    missing: i32,
) -> Result<i32> {
    match value {
        Some(v) => write_bytes(caller, out, &v.to_le_bytes()).map(|_| status::OK),
        None => Ok(missing),
    }
}

fn store_f64(
    caller: &mut Caller<'_, Guest>,
    out: i32,
    value: Option<f64>,
    missing: i32,
) -> Result<i32> {
    match value {
        Some(v) => write_bytes(caller, out, &v.to_le_bytes()).map(|_| status::OK),
        None => Ok(missing),
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::F64(f) => Some(*f),
        Value::F32(f) => Some(f64::from(*f)),
        Value::Integer(i) => i
            .as_i64()
            .map(|i| i as f64)
            .or_else(|| i.as_u64().map(|u| u as f64)),
        _ => None,
    }
}

fn arg(caller: &Caller<'_, Guest>, index: i32) -> Option<Value> {
    usize::try_from(index)
        .ok()
        .and_then(|i| caller.data().frame.args.get(i).cloned())
}

/// Defines every ABI v1 function in `linker`.
pub(crate) fn define(linker: &mut Linker<Guest>) -> Result<()> {
    let m = HOST_MODULE;
    linker.func_wrap(m, "arg_count", |caller: Caller<'_, Guest>| {
        caller.data().frame.args.len() as i32
    })?;
    linker.func_wrap(
        m,
        "arg_i64",
        |mut caller: Caller<'_, Guest>, index: i32, out: i32| -> Result<i32> {
            match arg(&caller, index) {
                None => Ok(status::NO_SUCH_ARG),
                Some(v) => store_i64(&mut caller, out, v.as_i64(), status::WRONG_TYPE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "arg_f64",
        |mut caller: Caller<'_, Guest>, index: i32, out: i32| -> Result<i32> {
            match arg(&caller, index) {
                None => Ok(status::NO_SUCH_ARG),
                Some(v) => store_f64(&mut caller, out, as_f64(&v), status::WRONG_TYPE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "slot_i64",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, out: i32| -> Result<i32> {
            match read_slot(&mut caller, p, l)? {
                None => Ok(status::NO_SUCH_SLOT),
                Some(v) => store_i64(&mut caller, out, v.as_i64(), status::WRONG_TYPE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "slot_f64",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, out: i32| -> Result<i32> {
            match read_slot(&mut caller, p, l)? {
                None => Ok(status::NO_SUCH_SLOT),
                Some(v) => store_f64(&mut caller, out, as_f64(&v), status::WRONG_TYPE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "slot_str",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, buf: i32, cap: i32| -> Result<i32> {
            match read_slot(&mut caller, p, l)? {
                None => Ok(status::NO_SUCH_SLOT),
                Some(Value::String(s)) => write_out(&mut caller, buf, cap, s.as_bytes()),
                Some(_) => Ok(status::WRONG_TYPE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "set_slot_i64",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, v: i64| {
            write_slot(&mut caller, p, l, Value::from(v))
        },
    )?;
    linker.func_wrap(
        m,
        "set_slot_f64",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, v: f64| {
            write_slot(&mut caller, p, l, Value::F64(v))
        },
    )?;
    linker.func_wrap(
        m,
        "set_slot_str",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, vp: i32, vl: i32| -> Result<i32> {
            match String::from_utf8(read_bytes(&mut caller, vp, vl)?) {
                Ok(s) => write_slot(&mut caller, p, l, Value::from(s)),
                Err(_) => Ok(status::BAD_VALUE),
            }
        },
    )?;
    linker.func_wrap(m, "return_i64", |mut caller: Caller<'_, Guest>, v: i64| {
        caller.data_mut().frame.result = Some(Value::from(v));
    })?;
    linker.func_wrap(m, "return_f64", |mut caller: Caller<'_, Guest>, v: f64| {
        caller.data_mut().frame.result = Some(Value::F64(v));
    })?;
    linker.func_wrap(
        m,
        "return_str",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32| -> Result<i32> {
            match String::from_utf8(read_bytes(&mut caller, p, l)?) {
                Ok(s) => {
                    caller.data_mut().frame.result = Some(Value::from(s));
                    Ok(status::OK)
                }
                Err(_) => Ok(status::BAD_VALUE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "log",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32| -> Result<()> {
            let bytes = read_bytes(&mut caller, p, l)?;
            let verdict = host(&caller).lock().log_budget().take();
            let frame = &caller.data().frame;
            match verdict {
                LogVerdict::Write => tracing::info!(
                    oid = frame.self_oid,
                    selector = %frame.selector,
                    "method log: {}",
                    log_line(&bytes)
                ),
                LogVerdict::SayDropped => tracing::info!(
                    oid = frame.self_oid,
                    selector = %frame.selector,
                    "method log: further lines of this message dropped (limit {MAX_LOG_LINES})"
                ),
                LogVerdict::Drop => {}
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        m,
        "arg_msgpack",
        |mut caller: Caller<'_, Guest>, index: i32, buf: i32, cap: i32| -> Result<i32> {
            match arg(&caller, index) {
                None => Ok(status::NO_SUCH_ARG),
                Some(v) => write_out(&mut caller, buf, cap, &encode(&v)),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "slot_msgpack",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, buf: i32, cap: i32| -> Result<i32> {
            match read_slot(&mut caller, p, l)? {
                None => Ok(status::NO_SUCH_SLOT),
                Some(v) => write_out(&mut caller, buf, cap, &encode(&v)),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "set_slot_msgpack",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32, vp: i32, vl: i32| -> Result<i32> {
            match decode(&read_bytes(&mut caller, vp, vl)?) {
                Some(value) => write_slot(&mut caller, p, l, value),
                None => Ok(status::BAD_VALUE),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "return_msgpack",
        |mut caller: Caller<'_, Guest>, p: i32, l: i32| -> Result<i32> {
            match decode(&read_bytes(&mut caller, p, l)?) {
                Some(value) => {
                    caller.data_mut().frame.result = Some(value);
                    Ok(status::OK)
                }
                None => Ok(status::BAD_VALUE),
            }
        },
    )?;
    linker.func_wrap(m, "self_oid", |caller: Caller<'_, Guest>| {
        caller.data().frame.self_oid as i64
    })?;
    linker.func_wrap(
        m,
        "send",
        |mut caller: Caller<'_, Guest>,
         target: i64,
         sp: i32,
         sl: i32,
         ap: i32,
         al: i32,
         buf: i32,
         cap: i32|
         -> Result<i32> {
            let selector = read_str(&mut caller, sp, sl)?;
            let args = match decode(&read_bytes(&mut caller, ap, al)?) {
                Some(Value::Array(args)) => args,
                _ => return Ok(status::BAD_VALUE),
            };
            let result = match send(&caller, target as u64, &selector, args)? {
                Ok(value) => value,
                Err(code) => return Ok(code),
            };
            let bytes = encode(&result);
            let len = write_out(&mut caller, buf, cap, &bytes)?;
            caller.data_mut().frame.last_result = Some(bytes);
            Ok(len)
        },
    )?;
    linker.func_wrap(
        m,
        "last_result",
        |mut caller: Caller<'_, Guest>, buf: i32, cap: i32| -> Result<i32> {
            let bytes = caller
                .data()
                .frame
                .last_result
                .clone()
                .unwrap_or_else(|| encode(&Value::Nil));
            write_out(&mut caller, buf, cap, &bytes)
        },
    )?;
    Ok(())
}

/// Resolves and runs a nested send. The host lock is never held while a
/// nested method runs, so re-entrant sends work.
pub(crate) fn send(
    caller: &Caller<'_, Guest>,
    target: Oid,
    selector: &str,
    args: Vec<Value>,
) -> Result<std::result::Result<Value, i32>> {
    let host = host(caller);
    let depth = caller.data().frame.depth + 1;
    let resolved = host.lock().resolve(target, selector, &args)?;
    match resolved {
        Resolved::Value(value) => Ok(Ok(value)),
        Resolved::Status(code) => Ok(Err(code)),
        Resolved::Method { hash } => {
            let (sandbox, deadline) = {
                let h = host.lock();
                (h.sandbox(), h.deadline())
            };
            let frame = frame(target, selector, args, depth);
            let value = sandbox.invoke(&host, &hash, frame, deadline)?;
            Ok(Ok(value))
        }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn log_lines_are_escaped_and_cut() {
        assert_eq!(log_line(b"plain"), "plain");
        assert_eq!(log_line(b"two\nlines\x1b[31m"), "two\\nlines\\u{1b}[31m");
        let long = vec![b'a'; MAX_LOG_LINE_BYTES + 10];
        let line = log_line(&long);
        assert!(line.starts_with(&"a".repeat(MAX_LOG_LINE_BYTES)));
        assert!(line.ends_with(&format!("({} bytes in all)", MAX_LOG_LINE_BYTES + 10)));
    }

    #[test]
    fn a_message_logs_a_bounded_number_of_lines() {
        let mut budget = LogBudget::default();
        for _ in 0..MAX_LOG_LINES {
            assert_eq!(budget.take(), LogVerdict::Write);
        }
        assert_eq!(budget.take(), LogVerdict::SayDropped);
        assert_eq!(budget.take(), LogVerdict::Drop);
        assert_eq!(budget.take(), LogVerdict::Drop);
    }
}
