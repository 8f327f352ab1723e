//! The runtime of methods written in Python (compiled by `batos-python`):
//! values live here, on the host; the guest holds handles to them.
//!
//! A method's local variables are host-side slots (`py_load`/`py_store`),
//! and every value an expression makes is a *temporary* whose handle is an
//! index into this call's temporaries; `py_stmt` (emitted before each
//! statement) drops them all, since no temporary outlives its statement.
//! So a loop holds as many values as its locals and one statement's
//! temporaries, however long it runs. Values a call makes are also counted
//! in bytes (`MAX_BYTES`), and host work proportional to a value's size
//! (sorting, joining, comparing, copying) is charged as fuel, so the limits
//! of any method bound these too.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;

use batos_object::value::{as_ref, make_ref, Oid, Value};

/// Bytes of values one call may make (strings, list and dict entries).
pub const MAX_BYTES: usize = 64 << 20;
/// Temporaries one statement may hold.
const MAX_TEMPS: usize = 1 << 20;
/// Local variable slots one method may have.
pub const MAX_LOCALS: usize = 4096;
/// Deepest nesting walked when a value is converted, printed or compared
/// (a list may contain itself). No lock is held while walking into an
/// item: every walk works on a copy of a container's items.
const MAX_DEPTH: usize = 100;

/// A Python value.
#[derive(Clone, Debug)]
pub enum PyVal {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An int (64-bit; overflow is an error, not a wrap).
    Int(i64),
    /// A float.
    Float(f64),
    /// A str.
    Str(Arc<str>),
    /// A list (shared: aliases see each other's changes).
    List(Arc<Mutex<Vec<PyVal>>>),
    /// A dict with str keys, in insertion order.
    Dict(Arc<Mutex<Vec<(String, PyVal)>>>),
    /// A reference to an object of the image.
    Ref(Oid),
    /// `range(start, stop, step)`, lazily.
    Range(i64, i64, i64),
    /// An iterator over a snapshot of a sequence (or a range).
    Iter(Arc<Mutex<PyIter>>),
}

/// What `for` walks.
#[derive(Debug)]
pub enum PyIter {
    /// Items left, in order (reversed: popped from the end).
    Items(Vec<PyVal>),
    /// The next value and the range's end and step.
    Range(i64, i64, i64),
}

/// An error the method raised or ran into: the message fails with
/// `method_trap` and this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyError(pub String);

type R<T> = Result<T, PyError>;

fn err<T>(kind: &str, message: impl std::fmt::Display) -> R<T> {
    Err(PyError(format!("{kind}: {message}")))
}

/// One call's Python state.
#[derive(Default)]
pub struct PyState {
    locals: Vec<Option<PyVal>>,
    temps: Vec<PyVal>,
    args: Vec<Vec<PyVal>>,
    bytes: usize,
    /// Host work done (elements or bytes touched), to charge as fuel.
    pub work: u64,
    /// Lists and dicts read from objects' slots, with the value each slot
    /// held: `self.items.append(x)` changes the list in place, so these
    /// are written back (when changed) before a send and when the method
    /// returns (`py_flush`).
    bound: Vec<Bound>,
}

/// A list or dict read from a slot.
struct Bound {
    oid: Oid,
    name: String,
    container: PyVal,
    original: Value,
}

impl PyState {
    /// The container read from `oid`'s slot `name` earlier in this call.
    pub fn bound(&self, oid: Oid, name: &str) -> Option<PyVal> {
        self.bound
            .iter()
            .find(|b| b.oid == oid && b.name == name)
            .map(|b| b.container.clone())
    }

    /// Remembers a list or dict read from a slot.
    pub fn bind(&mut self, oid: Oid, name: &str, container: &PyVal, original: Value) {
        if matches!(container, PyVal::List(_) | PyVal::Dict(_)) {
            self.bound.push(Bound {
                oid,
                name: name.to_string(),
                container: container.clone(),
                original,
            });
        }
    }

    /// Forgets what was read from a slot (it is being assigned).
    pub fn unbind(&mut self, oid: Oid, name: &str) {
        self.bound.retain(|b| !(b.oid == oid && b.name == name));
    }

    /// The slots whose containers changed since they were read, with their
    /// values now; everything bound is forgotten.
    pub fn take_changed(&mut self) -> R<Vec<(Oid, String, Value)>> {
        let mut changed = Vec::new();
        for b in std::mem::take(&mut self.bound) {
            let now = to_value(&b.container)?;
            if now != b.original {
                changed.push((b.oid, b.name, now));
            }
        }
        Ok(changed)
    }

    /// Drops every temporary (a statement is done).
    pub fn end_statement(&mut self) {
        self.temps.clear();
    }

    /// A new temporary's handle.
    pub fn temp(&mut self, value: PyVal) -> R<i32> {
        if self.temps.len() >= MAX_TEMPS {
            return err("MemoryError", "too many values in one statement");
        }
        self.temps.push(value);
        Ok((self.temps.len() - 1) as i32)
    }

    /// The value behind a handle.
    pub fn get(&self, handle: i32) -> R<PyVal> {
        usize::try_from(handle)
            .ok()
            .and_then(|h| self.temps.get(h))
            .cloned()
            .ok_or_else(|| PyError(format!("SystemError: bad value handle {handle}")))
    }

    /// A local variable's value, if it has one.
    pub fn load(&self, slot: i32) -> Option<PyVal> {
        usize::try_from(slot)
            .ok()
            .and_then(|s| self.locals.get(s))
            .cloned()
            .flatten()
    }

    /// Sets a local variable.
    pub fn store(&mut self, slot: i32, value: PyVal) -> R<()> {
        let slot = usize::try_from(slot)
            .ok()
            .filter(|s| *s < MAX_LOCALS)
            .ok_or_else(|| PyError(format!("SystemError: bad local slot {slot}")))?;
        if self.locals.len() <= slot {
            self.locals.resize(slot + 1, None);
        }
        self.locals[slot] = Some(value);
        Ok(())
    }

    /// Starts collecting a call's arguments.
    pub fn begin_args(&mut self) {
        self.args.push(Vec::new());
    }

    /// Adds an argument to the innermost call being built.
    pub fn push_arg(&mut self, value: PyVal) -> R<()> {
        match self.args.last_mut() {
            Some(args) => {
                args.push(value);
                Ok(())
            }
            None => err("SystemError", "an argument outside a call"),
        }
    }

    /// The innermost call's arguments.
    pub fn take_args(&mut self) -> R<Vec<PyVal>> {
        self.args
            .pop()
            .ok_or_else(|| PyError("SystemError: a call without arguments begun".into()))
    }

    /// Counts `bytes` more made by this call.
    pub fn account(&mut self, bytes: usize) -> R<()> {
        self.bytes = self.bytes.saturating_add(bytes);
        self.work = self.work.saturating_add(bytes as u64);
        if self.bytes > MAX_BYTES {
            return err(
                "MemoryError",
                format!("the method's values exceed {} MiB", MAX_BYTES >> 20),
            );
        }
        Ok(())
    }

    /// A str, counted.
    pub fn new_str(&mut self, text: String) -> R<PyVal> {
        self.account(text.len())?;
        Ok(PyVal::Str(text.into()))
    }

    /// A list, counted.
    pub fn new_list(&mut self, items: Vec<PyVal>) -> R<PyVal> {
        self.account(items.len() * 16)?;
        Ok(PyVal::List(Arc::new(Mutex::new(items))))
    }
}

/// The name of a value's type, as Python says it.
pub fn type_name(value: &PyVal) -> &'static str {
    match value {
        PyVal::None => "NoneType",
        PyVal::Bool(_) => "bool",
        PyVal::Int(_) => "int",
        PyVal::Float(_) => "float",
        PyVal::Str(_) => "str",
        PyVal::List(_) => "list",
        PyVal::Dict(_) => "dict",
        PyVal::Ref(_) => "object",
        PyVal::Range(..) => "range",
        PyVal::Iter(_) => "iterator",
    }
}

// ---------------------------------------------------------------------------
// Conversions to and from the protocol's values
// ---------------------------------------------------------------------------

/// A protocol value as Python.
pub fn from_value(value: &Value, st: &mut PyState) -> R<PyVal> {
    Ok(match value {
        Value::Nil => PyVal::None,
        Value::Boolean(b) => PyVal::Bool(*b),
        Value::Integer(i) => match i.as_i64() {
            Some(i) => PyVal::Int(i),
            None => return err("OverflowError", "an int over 2**63-1"),
        },
        Value::F32(f) => PyVal::Float(f64::from(*f)),
        Value::F64(f) => PyVal::Float(*f),
        Value::String(s) => match s.as_str() {
            Some(s) => st.new_str(s.to_string())?,
            None => return err("ValueError", "a str that is not UTF-8"),
        },
        Value::Binary(_) => return err("TypeError", "bytes are not supported in Python methods"),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|v| from_value(v, st))
                .collect::<R<Vec<_>>>()?;
            st.new_list(items)?
        }
        Value::Map(entries) => {
            if let Some(oid) = as_ref(value) {
                return Ok(PyVal::Ref(oid));
            }
            let mut items = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let key = k
                    .as_str()
                    .ok_or_else(|| PyError("TypeError: a map key that is not a str".into()))?;
                items.push((key.to_string(), from_value(v, st)?));
            }
            st.account(items.len() * 32)?;
            PyVal::Dict(Arc::new(Mutex::new(items)))
        }
        Value::Ext(..) => return err("TypeError", "an extension value"),
    })
}

/// A Python value as the protocol's.
pub fn to_value(value: &PyVal) -> R<Value> {
    to_value_at(value, 0)
}

fn to_value_at(value: &PyVal, depth: usize) -> R<Value> {
    if depth > MAX_DEPTH {
        return err(
            "ValueError",
            format!("a value nested deeper than {MAX_DEPTH} levels (or containing itself)"),
        );
    }
    let to_value = |v: &PyVal| to_value_at(v, depth + 1);
    Ok(match value {
        PyVal::None => Value::Nil,
        PyVal::Bool(b) => Value::Boolean(*b),
        PyVal::Int(i) => Value::from(*i),
        PyVal::Float(f) => Value::F64(*f),
        PyVal::Str(s) => Value::from(&**s),
        PyVal::List(items) => {
            let items = items.lock().clone();
            Value::Array(items.iter().map(to_value).collect::<R<Vec<_>>>()?)
        }
        PyVal::Dict(items) => {
            let items = items.lock().clone();
            Value::Map(
                items
                    .iter()
                    .map(|(k, v)| Ok((Value::from(k.as_str()), to_value(v)?)))
                    .collect::<R<Vec<_>>>()?,
            )
        }
        PyVal::Ref(oid) => make_ref(*oid),
        PyVal::Range(..) => Value::Array(
            range_items(value)?
                .iter()
                .map(to_value)
                .collect::<R<Vec<_>>>()?,
        ),
        PyVal::Iter(_) => return err("TypeError", "an iterator is not a value to keep"),
    })
}

fn range_items(value: &PyVal) -> R<Vec<PyVal>> {
    let PyVal::Range(start, stop, step) = *value else {
        return Ok(Vec::new());
    };
    let n = range_len(start, stop, step);
    if n > (MAX_BYTES / 16) as i64 {
        return err("MemoryError", "a range too long to make a list of");
    }
    Ok((0..n).map(|i| PyVal::Int(start + i * step)).collect())
}

fn range_len(start: i64, stop: i64, step: i64) -> i64 {
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    let n = if step > 0 {
        (stop - start + step - 1) / step
    } else {
        (start - stop - step - 1) / -step
    };
    n.clamp(0, i128::from(i64::MAX)) as i64
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

/// `repr(x)` of a float, as CPython writes it (shortest round trip;
/// exponent form below 1e-4 and from 1e16).
fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}"); // shortest digits: "-1.2345e-7"
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the point
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if (point as usize) >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{text}")
    } else {
        let rest = &digits[1..];
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{frac}e{esign}{:02}", &digits[..1], exp.abs())
    }
}

fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr(x)`.
pub fn repr(value: &PyVal) -> String {
    repr_at(value, 0)
}

fn repr_at(value: &PyVal, depth: usize) -> String {
    match value {
        PyVal::Str(s) => str_repr(s),
        other => str_at(other, depth),
    }
}

/// `str(x)`.
pub fn to_str(value: &PyVal) -> String {
    str_at(value, 0)
}

fn str_at(value: &PyVal, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return "...".into();
    }
    let repr = |v: &PyVal| repr_at(v, depth + 1);
    match value {
        PyVal::None => "None".into(),
        PyVal::Bool(true) => "True".into(),
        PyVal::Bool(false) => "False".into(),
        PyVal::Int(i) => i.to_string(),
        PyVal::Float(f) => float_repr(*f),
        PyVal::Str(s) => s.to_string(),
        PyVal::List(items) => {
            let items = items.lock().clone();
            let items: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", items.join(", "))
        }
        PyVal::Dict(items) => {
            let items = items.lock().clone();
            let items: Vec<String> = items
                .iter()
                .map(|(k, v)| format!("{}: {}", str_repr(k), repr(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        PyVal::Ref(oid) => format!("<object {oid}>"),
        PyVal::Range(a, b, 1) => format!("range({a}, {b})"),
        PyVal::Range(a, b, s) => format!("range({a}, {b}, {s})"),
        PyVal::Iter(_) => "<iterator>".into(),
    }
}

// ---------------------------------------------------------------------------
// Operators
// ---------------------------------------------------------------------------

/// Truth value.
pub fn truthy(value: &PyVal) -> bool {
    match value {
        PyVal::None => false,
        PyVal::Bool(b) => *b,
        PyVal::Int(i) => *i != 0,
        PyVal::Float(f) => *f != 0.0,
        PyVal::Str(s) => !s.is_empty(),
        PyVal::List(items) => !items.lock().is_empty(),
        PyVal::Dict(items) => !items.lock().is_empty(),
        PyVal::Range(a, b, s) => range_len(*a, *b, *s) > 0,
        PyVal::Ref(_) | PyVal::Iter(_) => true,
    }
}

enum Num {
    I(i64),
    F(f64),
}

fn num(value: &PyVal) -> Option<Num> {
    match value {
        PyVal::Bool(b) => Some(Num::I(i64::from(*b))),
        PyVal::Int(i) => Some(Num::I(*i)),
        PyVal::Float(f) => Some(Num::F(*f)),
        _ => None,
    }
}

fn overflow<T>() -> R<T> {
    err("OverflowError", "integer overflow (ints are 64-bit)")
}

fn zero<T>(what: &str) -> R<T> {
    err("ZeroDivisionError", what)
}

fn floor_div(a: i64, b: i64) -> R<i64> {
    if b == 0 {
        return zero("integer division or modulo by zero");
    }
    let q = a.checked_div(b).map_or_else(overflow, Ok)?;
    Ok(if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    })
}

fn floor_mod(a: i64, b: i64) -> R<i64> {
    if b == 0 {
        return zero("integer division or modulo by zero");
    }
    let r = a.checked_rem(b).unwrap_or(0);
    Ok(if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    })
}

fn float_mod(a: f64, b: f64) -> R<f64> {
    if b == 0.0 {
        return zero("float modulo");
    }
    let r = a % b;
    Ok(if r != 0.0 && ((r < 0.0) != (b < 0.0)) {
        r + b
    } else {
        r
    })
}

/// Binary operators, by the compiler's codes.
pub const ADD: i32 = 0;
/// `-`
pub const SUB: i32 = 1;
/// `*`
pub const MUL: i32 = 2;
/// `/`
pub const DIV: i32 = 3;
/// `//`
pub const FLOORDIV: i32 = 4;
/// `%`
pub const MOD: i32 = 5;
/// `**`
pub const POW: i32 = 6;

fn repeat(st: &mut PyState, items: &[PyVal], n: i64) -> R<PyVal> {
    let n = n.max(0) as usize;
    st.account(items.len().saturating_mul(n).saturating_mul(16))?;
    let mut out = Vec::with_capacity(items.len() * n);
    for _ in 0..n {
        out.extend_from_slice(items);
    }
    Ok(PyVal::List(Arc::new(Mutex::new(out))))
}

/// `a OP b`.
pub fn binop(st: &mut PyState, op: i32, a: &PyVal, b: &PyVal) -> R<PyVal> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return match (x, y) {
            (Num::I(x), Num::I(y)) => int_op(op, x, y),
            (x, y) => {
                let f = |n: Num| match n {
                    Num::I(i) => i as f64,
                    Num::F(f) => f,
                };
                float_op(op, f(x), f(y))
            }
        };
    }
    match (op, a, b) {
        (ADD, PyVal::Str(x), PyVal::Str(y)) => st.new_str(format!("{x}{y}")),
        (MUL, PyVal::Str(s), n) | (MUL, n, PyVal::Str(s)) if num_int(n).is_some() => {
            let n = num_int(n).unwrap_or(0).max(0) as usize;
            st.account(s.len().saturating_mul(n))?;
            st.new_str(s.repeat(n))
        }
        (ADD, PyVal::List(x), PyVal::List(y)) => {
            let mut items = x.lock().clone();
            items.extend(y.lock().iter().cloned());
            st.new_list(items)
        }
        (MUL, PyVal::List(l), n) | (MUL, n, PyVal::List(l)) if num_int(n).is_some() => {
            let items = l.lock().clone();
            repeat(st, &items, num_int(n).unwrap_or(0))
        }
        _ => err(
            "TypeError",
            format!(
                "unsupported operand type(s) for {}: '{}' and '{}'",
                op_symbol(op),
                type_name(a),
                type_name(b)
            ),
        ),
    }
}

fn num_int(value: &PyVal) -> Option<i64> {
    match value {
        PyVal::Int(i) => Some(*i),
        PyVal::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn op_symbol(op: i32) -> &'static str {
    ["+", "-", "*", "/", "//", "%", "**"]
        .get(op as usize)
        .copied()
        .unwrap_or("?")
}

fn int_op(op: i32, x: i64, y: i64) -> R<PyVal> {
    let checked = |v: Option<i64>| v.map(PyVal::Int).map_or_else(overflow, Ok);
    match op {
        ADD => checked(x.checked_add(y)),
        SUB => checked(x.checked_sub(y)),
        MUL => checked(x.checked_mul(y)),
        DIV => {
            if y == 0 {
                return zero("division by zero");
            }
            Ok(PyVal::Float(x as f64 / y as f64))
        }
        FLOORDIV => floor_div(x, y).map(PyVal::Int),
        MOD => floor_mod(x, y).map(PyVal::Int),
        POW => {
            if y < 0 {
                if x == 0 {
                    return zero("0.0 cannot be raised to a negative power");
                }
                return Ok(PyVal::Float((x as f64).powf(y as f64)));
            }
            let y = u32::try_from(y).map_or_else(|_| overflow(), Ok)?;
            checked(x.checked_pow(y))
        }
        _ => err("SystemError", format!("unknown operator {op}")),
    }
}

fn float_op(op: i32, x: f64, y: f64) -> R<PyVal> {
    Ok(PyVal::Float(match op {
        ADD => x + y,
        SUB => x - y,
        MUL => x * y,
        DIV => {
            if y == 0.0 {
                return zero("float division by zero");
            }
            x / y
        }
        FLOORDIV => {
            if y == 0.0 {
                return zero("float floor division by zero");
            }
            (x / y).floor()
        }
        MOD => float_mod(x, y)?,
        POW => {
            if x == 0.0 && y < 0.0 {
                return zero("0.0 cannot be raised to a negative power");
            }
            x.powf(y)
        }
        _ => return err("SystemError", format!("unknown operator {op}")),
    }))
}

/// Comparison codes.
pub const EQ: i32 = 0;
/// `!=`
pub const NE: i32 = 1;
/// `<`
pub const LT: i32 = 2;
/// `<=`
pub const LE: i32 = 3;
/// `>`
pub const GT: i32 = 4;
/// `>=`
pub const GE: i32 = 5;
/// `in`
pub const IN: i32 = 6;
/// `not in`
pub const NOT_IN: i32 = 7;

/// `a == b`.
pub fn equal(a: &PyVal, b: &PyVal) -> bool {
    equal_at(a, b, 0)
}

fn equal_at(a: &PyVal, b: &PyVal, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let equal = |a: &PyVal, b: &PyVal| equal_at(a, b, depth + 1);
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return match (x, y) {
            (Num::I(x), Num::I(y)) => x == y,
            (Num::I(x), Num::F(y)) | (Num::F(y), Num::I(x)) => x as f64 == y,
            (Num::F(x), Num::F(y)) => x == y,
        };
    }
    match (a, b) {
        (PyVal::None, PyVal::None) => true,
        (PyVal::Str(x), PyVal::Str(y)) => x == y,
        (PyVal::Ref(x), PyVal::Ref(y)) => x == y,
        (PyVal::List(x), PyVal::List(y)) => {
            if Arc::ptr_eq(x, y) {
                return true;
            }
            let (x, y) = (x.lock().clone(), y.lock().clone());
            x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| equal(a, b))
        }
        (PyVal::Dict(x), PyVal::Dict(y)) => {
            if Arc::ptr_eq(x, y) {
                return true;
            }
            let (x, y) = (x.lock().clone(), y.lock().clone());
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| k == k2 && equal(v, v2)))
        }
        (PyVal::Range(a1, b1, s1), PyVal::Range(a2, b2, s2)) => (a1, b1, s1) == (a2, b2, s2),
        _ => false,
    }
}

/// Ordering of `a` and `b`, where Python defines one.
pub fn order(a: &PyVal, b: &PyVal) -> R<Ordering> {
    order_at(a, b, 0)
}

fn order_at(a: &PyVal, b: &PyVal, depth: usize) -> R<Ordering> {
    if depth > MAX_DEPTH {
        return err("RecursionError", "comparing values nested too deep");
    }
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        let o = match (x, y) {
            (Num::I(x), Num::I(y)) => Some(x.cmp(&y)),
            (Num::I(x), Num::F(y)) => (x as f64).partial_cmp(&y),
            (Num::F(x), Num::I(y)) => x.partial_cmp(&(y as f64)),
            (Num::F(x), Num::F(y)) => x.partial_cmp(&y),
        };
        // NaN is neither less nor greater: every ordered comparison is False.
        return Ok(o.unwrap_or(Ordering::Equal));
    }
    match (a, b) {
        (PyVal::Str(x), PyVal::Str(y)) => Ok(x.cmp(y)),
        (PyVal::List(x), PyVal::List(y)) => {
            let (x, y) = (x.lock().clone(), y.lock().clone());
            for (a, b) in x.iter().zip(&y) {
                if !equal_at(a, b, depth + 1) {
                    return order_at(a, b, depth + 1);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => err(
            "TypeError",
            format!(
                "'<' not supported between instances of '{}' and '{}'",
                type_name(a),
                type_name(b)
            ),
        ),
    }
}

fn is_nan(v: &PyVal) -> bool {
    matches!(v, PyVal::Float(f) if f.is_nan())
}

/// `a OP b` for comparisons and `in`.
pub fn compare(st: &mut PyState, op: i32, a: &PyVal, b: &PyVal) -> R<bool> {
    Ok(match op {
        EQ => equal(a, b),
        NE => !equal(a, b),
        LT | LE | GT | GE => {
            if is_nan(a) || is_nan(b) {
                return Ok(false);
            }
            let o = order(a, b)?;
            match op {
                LT => o == Ordering::Less,
                LE => o != Ordering::Greater,
                GT => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }
        }
        IN | NOT_IN => {
            let found = contains(st, b, a)?;
            if op == IN {
                found
            } else {
                !found
            }
        }
        _ => return err("SystemError", format!("unknown comparison {op}")),
    })
}

fn contains(st: &mut PyState, container: &PyVal, item: &PyVal) -> R<bool> {
    match container {
        PyVal::Str(s) => match item {
            PyVal::Str(sub) => {
                st.work += s.len() as u64;
                Ok(s.contains(&**sub))
            }
            other => err(
                "TypeError",
                format!(
                    "'in <string>' requires string as left operand, not {}",
                    type_name(other)
                ),
            ),
        },
        PyVal::List(items) => {
            let items = items.lock().clone();
            st.work += items.len() as u64;
            Ok(items.iter().any(|x| equal(x, item)))
        }
        PyVal::Dict(items) => {
            let items = items.lock();
            st.work += items.len() as u64;
            Ok(matches!(item, PyVal::Str(k) if items.iter().any(|(k2, _)| **k == **k2)))
        }
        PyVal::Range(a, b, s) => Ok(match num_int(item) {
            Some(i) => {
                let n = range_len(*a, *b, *s);
                let off = i128::from(i) - i128::from(*a);
                off % i128::from(*s) == 0 && (0..i128::from(n)).contains(&(off / i128::from(*s)))
            }
            None => false,
        }),
        other => err(
            "TypeError",
            format!("argument of type '{}' is not iterable", type_name(other)),
        ),
    }
}

/// Unary operators.
pub const NEG: i32 = 0;
/// `not`
pub const NOT: i32 = 1;
/// `+x`
pub const POS: i32 = 2;

/// `OP a`.
pub fn unop(op: i32, a: &PyVal) -> R<PyVal> {
    match (op, num(a)) {
        (NOT, _) => Ok(PyVal::Bool(!truthy(a))),
        (NEG, Some(Num::I(i))) => i.checked_neg().map(PyVal::Int).map_or_else(overflow, Ok),
        (NEG, Some(Num::F(f))) => Ok(PyVal::Float(-f)),
        (POS, Some(Num::I(i))) => Ok(PyVal::Int(i)),
        (POS, Some(Num::F(f))) => Ok(PyVal::Float(f)),
        _ => err(
            "TypeError",
            format!("bad operand type for unary operator: '{}'", type_name(a)),
        ),
    }
}

// ---------------------------------------------------------------------------
// Indexing and iteration
// ---------------------------------------------------------------------------

fn index(i: &PyVal, len: usize, what: &str) -> R<usize> {
    let Some(i) = num_int(i) else {
        return err(
            "TypeError",
            format!("{what} indices must be integers, not {}", type_name(i)),
        );
    };
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    if (0..len).contains(&j) {
        Ok(j as usize)
    } else {
        err("IndexError", format!("{what} index out of range"))
    }
}

/// `a[i]`.
pub fn getitem(st: &mut PyState, a: &PyVal, i: &PyVal) -> R<PyVal> {
    match a {
        PyVal::List(items) => {
            let items = items.lock();
            Ok(items[index(i, items.len(), "list")?].clone())
        }
        PyVal::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            st.work += chars.len() as u64;
            let c = chars[index(i, chars.len(), "string")?];
            st.new_str(c.to_string())
        }
        PyVal::Dict(items) => {
            let PyVal::Str(key) = i else {
                return err("KeyError", repr(i));
            };
            let items = items.lock();
            items
                .iter()
                .find(|(k, _)| **k == **key)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| PyError(format!("KeyError: {}", str_repr(key))))
        }
        PyVal::Range(..) => {
            let items = range_items(a)?;
            Ok(items[index(i, items.len(), "range object")?].clone())
        }
        other => err(
            "TypeError",
            format!("'{}' object is not subscriptable", type_name(other)),
        ),
    }
}

/// `a[i] = v`.
pub fn setitem(st: &mut PyState, a: &PyVal, i: &PyVal, v: PyVal) -> R<()> {
    match a {
        PyVal::List(items) => {
            let mut items = items.lock();
            let at = index(i, items.len(), "list assignment")?;
            items[at] = v;
            Ok(())
        }
        PyVal::Dict(items) => {
            let PyVal::Str(key) = i else {
                return err("TypeError", "dict keys are str in methods");
            };
            let mut items = items.lock();
            match items.iter_mut().find(|(k, _)| **k == **key) {
                Some((_, slot)) => *slot = v,
                None => {
                    st.account(32 + key.len())?;
                    items.push((key.to_string(), v));
                }
            }
            Ok(())
        }
        other => err(
            "TypeError",
            format!(
                "'{}' object does not support item assignment",
                type_name(other)
            ),
        ),
    }
}

fn slice_bounds(len: usize, lo: &PyVal, hi: &PyVal) -> R<(usize, usize)> {
    let len = len as i64;
    let bound = |v: &PyVal, default: i64| -> R<i64> {
        match v {
            PyVal::None => Ok(default),
            other => match num_int(other) {
                Some(i) => Ok(if i < 0 { (i + len).max(0) } else { i.min(len) }),
                None => err("TypeError", "slice indices must be integers or None"),
            },
        }
    };
    let (a, b) = (bound(lo, 0)?, bound(hi, len)?);
    Ok((a as usize, (b.max(a)) as usize))
}

/// `a[lo:hi]`.
pub fn slice(st: &mut PyState, a: &PyVal, lo: &PyVal, hi: &PyVal) -> R<PyVal> {
    match a {
        PyVal::List(items) => {
            let items = items.lock().clone();
            let (x, y) = slice_bounds(items.len(), lo, hi)?;
            st.new_list(items[x..y].to_vec())
        }
        PyVal::Str(s) => {
            let chars: Vec<char> = s.chars().collect();
            let (x, y) = slice_bounds(chars.len(), lo, hi)?;
            st.new_str(chars[x..y].iter().collect())
        }
        other => err(
            "TypeError",
            format!("'{}' object is not subscriptable", type_name(other)),
        ),
    }
}

/// `iter(a)`: a snapshot of what `for` walks.
pub fn iterate(st: &mut PyState, a: &PyVal) -> R<PyVal> {
    let mut items = match a {
        PyVal::List(items) => items.lock().clone(),
        PyVal::Str(s) => {
            let mut out = Vec::new();
            for c in s.chars() {
                out.push(st.new_str(c.to_string())?);
            }
            out
        }
        PyVal::Dict(items) => {
            let keys: Vec<String> = items.lock().iter().map(|(k, _)| k.clone()).collect();
            let mut out = Vec::new();
            for k in keys {
                out.push(st.new_str(k)?);
            }
            out
        }
        PyVal::Range(a, b, s) => {
            return Ok(PyVal::Iter(Arc::new(Mutex::new(PyIter::Range(*a, *b, *s)))))
        }
        PyVal::Iter(_) => return Ok(a.clone()),
        other => {
            return err(
                "TypeError",
                format!("'{}' object is not iterable", type_name(other)),
            )
        }
    };
    st.work += items.len() as u64;
    items.reverse();
    Ok(PyVal::Iter(Arc::new(Mutex::new(PyIter::Items(items)))))
}

/// The next item of an iterator, if any.
pub fn next(it: &PyVal) -> R<Option<PyVal>> {
    let PyVal::Iter(it) = it else {
        return err("TypeError", "not an iterator");
    };
    let mut it = it.lock();
    Ok(match &mut *it {
        PyIter::Items(items) => items.pop(),
        PyIter::Range(next, stop, step) => {
            let more = if *step > 0 {
                *next < *stop
            } else {
                *next > *stop
            };
            if more {
                let value = *next;
                *next = next.saturating_add(*step);
                Some(PyVal::Int(value))
            } else {
                None
            }
        }
    })
}

/// The items of a sequence, for builtins that take one.
fn items_of(st: &mut PyState, a: &PyVal) -> R<Vec<PyVal>> {
    let it = iterate(st, a)?;
    let mut out = Vec::new();
    while let Some(x) = next(&it)? {
        out.push(x);
    }
    st.account(out.len() * 16)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Builtins and methods of values
// ---------------------------------------------------------------------------

fn arity(name: &str, args: &[PyVal], min: usize, max: usize) -> R<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return err(
            "TypeError",
            format!("{name}() takes {expected} arguments ({} given)", args.len()),
        );
    }
    Ok(())
}

fn parse_int(s: &str) -> R<i64> {
    let t = s.trim().replace('_', "");
    t.parse::<i64>().or_else(|_| {
        err(
            "ValueError",
            format!("invalid literal for int() with base 10: {}", str_repr(s)),
        )
    })
}

fn parse_float(s: &str) -> R<f64> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => Ok(f64::NAN),
        _ => t.parse::<f64>().or_else(|_| {
            err(
                "ValueError",
                format!("could not convert string to float: {}", str_repr(s)),
            )
        }),
    }
}

fn sort(st: &mut PyState, items: &mut [PyVal]) -> R<()> {
    st.work += (items.len() as u64) * 8;
    let mut failure = None;
    items.sort_by(|a, b| match order(a, b) {
        Ok(o) => o,
        Err(e) => {
            failure.get_or_insert(e);
            Ordering::Equal
        }
    });
    failure.map_or(Ok(()), Err)
}

fn extreme(st: &mut PyState, name: &str, args: Vec<PyVal>, want: Ordering) -> R<PyVal> {
    let items = if args.len() == 1 {
        items_of(st, &args[0])?
    } else {
        args
    };
    let mut best: Option<PyVal> = None;
    for x in items {
        best = Some(match best {
            Some(b) if order(&x, &b)? != want => b,
            _ => x,
        });
    }
    best.ok_or_else(|| PyError(format!("ValueError: {name}() arg is an empty sequence")))
}

/// `name(args)` for the builtins the subset has.
pub fn builtin(st: &mut PyState, name: &str, args: Vec<PyVal>) -> R<PyVal> {
    match name {
        "len" => {
            arity(name, &args, 1, 1)?;
            let n = match &args[0] {
                PyVal::Str(s) => s.chars().count(),
                PyVal::List(items) => items.lock().len(),
                PyVal::Dict(items) => items.lock().len(),
                PyVal::Range(a, b, s) => range_len(*a, *b, *s) as usize,
                other => {
                    return err(
                        "TypeError",
                        format!("object of type '{}' has no len()", type_name(other)),
                    )
                }
            };
            Ok(PyVal::Int(n as i64))
        }
        "str" => {
            arity(name, &args, 0, 1)?;
            let text = args.first().map(to_str).unwrap_or_default();
            st.new_str(text)
        }
        "repr" => {
            arity(name, &args, 1, 1)?;
            st.new_str(repr(&args[0]))
        }
        "int" => {
            arity(name, &args, 0, 1)?;
            Ok(PyVal::Int(match args.first() {
                None => 0,
                Some(PyVal::Str(s)) => parse_int(s)?,
                Some(PyVal::Float(f)) => {
                    if !f.is_finite() {
                        return err(
                            "ValueError",
                            "cannot convert float infinity or NaN to integer",
                        );
                    }
                    let t = f.trunc();
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&t) {
                        return overflow();
                    }
                    t as i64
                }
                Some(other) => match num_int(other) {
                    Some(i) => i,
                    None => {
                        return err(
                            "TypeError",
                            format!(
                                "int() argument must be a string or a number, not '{}'",
                                type_name(other)
                            ),
                        )
                    }
                },
            }))
        }
        "float" => {
            arity(name, &args, 0, 1)?;
            Ok(PyVal::Float(match args.first() {
                None => 0.0,
                Some(PyVal::Str(s)) => parse_float(s)?,
                Some(PyVal::Float(f)) => *f,
                Some(other) => match num_int(other) {
                    Some(i) => i as f64,
                    None => {
                        return err(
                            "TypeError",
                            format!(
                                "float() argument must be a string or a number, not '{}'",
                                type_name(other)
                            ),
                        )
                    }
                },
            }))
        }
        "bool" => {
            arity(name, &args, 0, 1)?;
            Ok(PyVal::Bool(args.first().is_some_and(truthy)))
        }
        "abs" => {
            arity(name, &args, 1, 1)?;
            match num(&args[0]) {
                Some(Num::I(i)) => i.checked_abs().map(PyVal::Int).map_or_else(overflow, Ok),
                Some(Num::F(f)) => Ok(PyVal::Float(f.abs())),
                None => err(
                    "TypeError",
                    format!("bad operand type for abs(): '{}'", type_name(&args[0])),
                ),
            }
        }
        "min" => {
            arity(name, &args, 1, usize::MAX)?;
            extreme(st, name, args, Ordering::Less)
        }
        "max" => {
            arity(name, &args, 1, usize::MAX)?;
            extreme(st, name, args, Ordering::Greater)
        }
        "sum" => {
            arity(name, &args, 1, 2)?;
            let mut total = args.get(1).cloned().unwrap_or(PyVal::Int(0));
            for x in items_of(st, &args[0])? {
                total = binop(st, ADD, &total, &x)?;
            }
            Ok(total)
        }
        "sorted" => {
            arity(name, &args, 1, 1)?;
            let mut items = items_of(st, &args[0])?;
            sort(st, &mut items)?;
            st.new_list(items)
        }
        "list" => {
            arity(name, &args, 0, 1)?;
            let items = match args.first() {
                Some(a) => items_of(st, a)?,
                None => Vec::new(),
            };
            st.new_list(items)
        }
        "range" => {
            arity(name, &args, 1, 3)?;
            let ints = args
                .iter()
                .map(|a| {
                    num_int(a).ok_or_else(|| {
                        PyError(format!(
                            "TypeError: '{}' object cannot be interpreted as an integer",
                            type_name(a)
                        ))
                    })
                })
                .collect::<R<Vec<i64>>>()?;
            let (start, stop, step) = match ints.as_slice() {
                [stop] => (0, *stop, 1),
                [start, stop] => (*start, *stop, 1),
                [start, stop, step] => (*start, *stop, *step),
                _ => unreachable!("arity checked"),
            };
            if step == 0 {
                return err("ValueError", "range() arg 3 must not be zero");
            }
            Ok(PyVal::Range(start, stop, step))
        }
        "round" => {
            arity(name, &args, 1, 2)?;
            let digits = match args.get(1) {
                None | Some(PyVal::None) => None,
                Some(d) => Some(
                    num_int(d)
                        .ok_or_else(|| PyError("TypeError: ndigits must be an int".into()))?,
                ),
            };
            match (num(&args[0]), digits) {
                (Some(Num::I(i)), _) => Ok(PyVal::Int(i)),
                (Some(Num::F(f)), None) => {
                    if !f.is_finite() {
                        return err(
                            "ValueError",
                            "cannot convert float infinity or NaN to integer",
                        );
                    }
                    Ok(PyVal::Int(f.round_ties_even() as i64))
                }
                (Some(Num::F(f)), Some(d)) => {
                    let scale = 10f64.powi(d.clamp(-300, 300) as i32);
                    Ok(PyVal::Float((f * scale).round_ties_even() / scale))
                }
                (None, _) => err(
                    "TypeError",
                    format!("type {} doesn't define __round__", type_name(&args[0])),
                ),
            }
        }
        "isinstance" => {
            arity(name, &args, 2, 2)?;
            let PyVal::Str(kind) = &args[1] else {
                return err("TypeError", "isinstance() arg 2 must be a type");
            };
            let x = &args[0];
            Ok(PyVal::Bool(match &**kind {
                "int" => matches!(x, PyVal::Int(_) | PyVal::Bool(_)),
                "bool" => matches!(x, PyVal::Bool(_)),
                other => type_name(x) == other,
            }))
        }
        "__exception__" => {
            // `raise Kind(message)`: the text the trap carries.
            let kind = args.first().map(to_str).unwrap_or_default();
            let text = match args.get(1) {
                Some(message) => format!("{kind}: {}", to_str(message)),
                None => kind,
            };
            st.new_str(text)
        }
        other => err("NameError", format!("name '{other}' is not defined")),
    }
}

/// `value.name(args)` for str, list and dict values.
pub fn method(st: &mut PyState, value: &PyVal, name: &str, args: Vec<PyVal>) -> R<PyVal> {
    let arg_str = |i: usize| -> R<Arc<str>> {
        match args.get(i) {
            Some(PyVal::Str(s)) => Ok(s.clone()),
            Some(other) => err(
                "TypeError",
                format!("must be str, not {}", type_name(other)),
            ),
            None => err("TypeError", format!("{name}() takes an argument")),
        }
    };
    match value {
        PyVal::Str(s) => {
            st.work += s.len() as u64;
            match name {
                "upper" => st.new_str(s.to_uppercase()),
                "lower" => st.new_str(s.to_lowercase()),
                "strip" | "lstrip" | "rstrip" => {
                    let chars: Option<Vec<char>> = match args.first() {
                        None | Some(PyVal::None) => None,
                        Some(_) => Some(arg_str(0)?.chars().collect()),
                    };
                    let matches = |c: char| match &chars {
                        Some(set) => set.contains(&c),
                        None => c.is_whitespace(),
                    };
                    let out = match name {
                        "strip" => s.trim_matches(matches),
                        "lstrip" => s.trim_start_matches(matches),
                        _ => s.trim_end_matches(matches),
                    };
                    st.new_str(out.to_string())
                }
                "split" => {
                    let parts: Vec<String> = match args.first() {
                        None | Some(PyVal::None) => {
                            s.split_whitespace().map(str::to_string).collect()
                        }
                        Some(_) => {
                            let sep = arg_str(0)?;
                            if sep.is_empty() {
                                return err("ValueError", "empty separator");
                            }
                            s.split(&*sep).map(str::to_string).collect()
                        }
                    };
                    let mut items = Vec::with_capacity(parts.len());
                    for p in parts {
                        items.push(st.new_str(p)?);
                    }
                    st.new_list(items)
                }
                "join" => {
                    let items = items_of(st, args.first().unwrap_or(&PyVal::None))?;
                    let mut texts = Vec::with_capacity(items.len());
                    for item in &items {
                        match item {
                            PyVal::Str(t) => texts.push(t.to_string()),
                            other => {
                                return err(
                                    "TypeError",
                                    format!(
                                        "sequence item: expected str instance, {} found",
                                        type_name(other)
                                    ),
                                )
                            }
                        }
                    }
                    st.account(s.len().saturating_mul(texts.len()))?;
                    st.new_str(texts.join(s))
                }
                "startswith" => Ok(PyVal::Bool(s.starts_with(&*arg_str(0)?))),
                "endswith" => Ok(PyVal::Bool(s.ends_with(&*arg_str(0)?))),
                "replace" => {
                    let (from, to) = (arg_str(0)?, arg_str(1)?);
                    // What the result will take, counted before it is made.
                    let matches = if from.is_empty() {
                        s.chars().count() + 1
                    } else {
                        s.matches(&*from).count()
                    };
                    st.account(matches.saturating_mul(to.len()))?;
                    let out = s.replace(&*from, &to);
                    st.new_str(out)
                }
                "find" => {
                    let sub = arg_str(0)?;
                    Ok(PyVal::Int(match s.find(&*sub) {
                        Some(byte) => s[..byte].chars().count() as i64,
                        None => -1,
                    }))
                }
                "count" => Ok(PyVal::Int(s.matches(&*arg_str(0)?).count() as i64)),
                _ => err(
                    "AttributeError",
                    format!("'str' object has no attribute '{name}'"),
                ),
            }
        }
        PyVal::List(items) => match name {
            "append" => {
                arity(name, &args, 1, 1)?;
                st.account(16)?;
                items.lock().push(args[0].clone());
                Ok(PyVal::None)
            }
            "pop" => {
                arity(name, &args, 0, 1)?;
                let mut items = items.lock();
                if items.is_empty() {
                    return err("IndexError", "pop from empty list");
                }
                let at = match args.first() {
                    Some(i) => index(i, items.len(), "pop")?,
                    None => items.len() - 1,
                };
                Ok(items.remove(at))
            }
            "insert" => {
                arity(name, &args, 2, 2)?;
                st.account(16)?;
                let mut items = items.lock();
                let len = items.len() as i64;
                let i = num_int(&args[0])
                    .ok_or_else(|| PyError("TypeError: an integer is required".into()))?;
                let at = (if i < 0 { i + len } else { i }).clamp(0, len) as usize;
                items.insert(at, args[1].clone());
                Ok(PyVal::None)
            }
            "index" => {
                arity(name, &args, 1, 1)?;
                let items = items.lock().clone();
                st.work += items.len() as u64;
                items
                    .iter()
                    .position(|x| equal(x, &args[0]))
                    .map(|i| PyVal::Int(i as i64))
                    .ok_or_else(|| {
                        PyError(format!("ValueError: {} is not in list", repr(&args[0])))
                    })
            }
            "count" => {
                arity(name, &args, 1, 1)?;
                let items = items.lock().clone();
                st.work += items.len() as u64;
                Ok(PyVal::Int(
                    items.iter().filter(|x| equal(x, &args[0])).count() as i64,
                ))
            }
            "extend" => {
                arity(name, &args, 1, 1)?;
                let more = items_of(st, &args[0])?;
                items.lock().extend(more);
                Ok(PyVal::None)
            }
            "sort" => {
                arity(name, &args, 0, 0)?;
                let mut sorted = items.lock().clone();
                sort(st, &mut sorted)?;
                *items.lock() = sorted;
                Ok(PyVal::None)
            }
            "reverse" => {
                items.lock().reverse();
                Ok(PyVal::None)
            }
            _ => err(
                "AttributeError",
                format!("'list' object has no attribute '{name}'"),
            ),
        },
        PyVal::Dict(items) => match name {
            "get" => {
                arity(name, &args, 1, 2)?;
                let key = arg_str(0)?;
                let found = items
                    .lock()
                    .iter()
                    .find(|(k, _)| **k == *key)
                    .map(|(_, v)| v.clone());
                Ok(found.unwrap_or_else(|| args.get(1).cloned().unwrap_or(PyVal::None)))
            }
            "keys" | "values" | "items" => {
                let snapshot = items.lock().clone();
                let mut out = Vec::with_capacity(snapshot.len());
                for (k, v) in snapshot {
                    out.push(match name {
                        "keys" => st.new_str(k)?,
                        "values" => v,
                        _ => {
                            let k = st.new_str(k)?;
                            st.new_list(vec![k, v])?
                        }
                    });
                }
                st.new_list(out)
            }
            "pop" => {
                arity(name, &args, 1, 2)?;
                let key = arg_str(0)?;
                let mut items = items.lock();
                match items.iter().position(|(k, _)| **k == *key) {
                    Some(at) => Ok(items.remove(at).1),
                    None => args
                        .get(1)
                        .cloned()
                        .ok_or_else(|| PyError(format!("KeyError: {}", str_repr(&key)))),
                }
            }
            _ => err(
                "AttributeError",
                format!("'dict' object has no attribute '{name}'"),
            ),
        },
        other => err(
            "AttributeError",
            format!("'{}' object has no attribute '{name}'", type_name(other)),
        ),
    }
}

/// Builds a dict from alternating keys and values.
pub fn dict(st: &mut PyState, flat: Vec<PyVal>) -> R<PyVal> {
    let mut items: Vec<(String, PyVal)> = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let PyVal::Str(k) = k else {
            return err(
                "TypeError",
                format!("dict keys are str in methods, not {}", type_name(&k)),
            );
        };
        match items.iter_mut().find(|(k2, _)| **k2 == *k) {
            Some((_, slot)) => *slot = v,
            None => items.push((k.to_string(), v)),
        }
    }
    st.account(items.len() * 32)?;
    Ok(PyVal::Dict(Arc::new(Mutex::new(items))))
}

/// Unpacks `value` into exactly `n` items (`a, b = ...`, `for k, v in ...`).
pub fn unpack(st: &mut PyState, value: &PyVal, n: usize) -> R<Vec<PyVal>> {
    let items = items_of(st, value)?;
    if items.len() != n {
        return err(
            "ValueError",
            format!("expected {n} values to unpack, got {}", items.len()),
        );
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_cpython_prints_them() {
        for (x, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (123456789012345.6, "123456789012345.6"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (100.0, "100.0"),
        ] {
            assert_eq!(float_repr(x), want, "{x}");
        }
    }

    #[test]
    fn a_list_containing_itself_is_printed_compared_and_refused_without_hanging() {
        let mut st = PyState::default();
        let l = st.new_list(vec![PyVal::Int(1)]).unwrap();
        method(&mut st, &l, "append", vec![l.clone()]).unwrap();
        assert!(to_str(&l).contains("..."));
        assert!(
            to_value(&l).is_err(),
            "a value to keep cannot contain itself"
        );
        let other = st.new_list(vec![l.clone()]).unwrap();
        assert!(!equal(&l, &other));
        assert!(method(&mut st, &l, "count", vec![other.clone()]).is_ok());
        assert!(method(&mut st, &l, "index", vec![l.clone()]).is_ok());
        assert!(compare(&mut st, IN, &other, &l).is_ok());
    }

    #[test]
    fn results_are_counted_before_they_are_made() {
        let mut st = PyState::default();
        let s = st.new_str("a".repeat(1 << 20)).unwrap();
        let big = PyVal::Str("b".repeat(1 << 20).into());
        assert!(method(
            &mut st,
            &s,
            "replace",
            vec![PyVal::Str("a".into()), big.clone()]
        )
        .is_err());
        let mut st = PyState::default();
        let items = st.new_list(vec![PyVal::Str("x".into()); 1 << 10]).unwrap();
        assert!(
            method(&mut st, &big, "join", vec![items]).is_err(),
            "a 1 MiB separator 1,024 times is over the budget"
        );
    }

    #[test]
    fn floor_division_and_modulo_follow_python() {
        assert_eq!(floor_div(-7, 2).unwrap(), -4);
        assert_eq!(floor_mod(-7, 2).unwrap(), 1);
        assert_eq!(floor_mod(7, -2).unwrap(), -1);
        assert!(floor_div(i64::MIN, -1).is_err());
        assert!(floor_div(1, 0).is_err());
    }
}
