//! `batos_guest`: write BAT OS methods in Rust.
//!
//! A BAT OS method is a WebAssembly module (`wasm32-unknown-unknown`) that the
//! kernel runs sandboxed in wasmtime. It talks to the kernel only through the
//! functions of the host module `uvm`, specified in `docs/method-abi.md`
//! (the method ABI, version 1). This crate is `no_std`, allocation-free and
//! has no dependencies. It gives you:
//!
//! - [`sys`]: the raw `uvm` imports, exactly as the ABI lists them;
//! - safe wrappers for the **scalar level** ([`arg_count`], [`arg_i64`],
//!   [`arg_f64`], [`slot_i64`], [`slot_f64`], [`slot_str`], [`set_slot_i64`],
//!   [`set_slot_f64`], [`set_slot_str`], [`return_i64`], [`return_f64`],
//!   [`return_str`], [`log`]) and the **value level** ([`arg_msgpack`],
//!   [`slot_msgpack`], [`set_slot_msgpack`], [`return_msgpack`],
//!   [`self_oid`], [`send`], [`last_result`]);
//! - [`Error`], the ABI's negative status codes as an enum, plus
//!   [`Error::BufferTooSmall`] for the copy-out length convention;
//! - [`msgpack`], a tiny MessagePack encoder/decoder for arguments and
//!   results of the value level;
//! - [`method!`], which defines the exported `invoke` entry point, and
//!   [`trap`] / [`OrTrap`] to abort the method (and with it the whole
//!   transaction: if any method of a message traps, nothing is kept).
//!
//! # A method
//!
//! ```no_run
//! // In your method crate: #![no_std], crate-type = ["cdylib"].
//! use batos_guest::{method, set_slot_i64, slot_i64, return_i64, Error};
//!
//! fn increment() -> Result<(), Error> {
//!     let n = match slot_i64("count") {
//!         Ok(n) => n,
//!         Err(Error::NoSuchSlot) => 0,
//!         Err(e) => return Err(e),
//!     };
//!     set_slot_i64("count", n + 1)?;
//!     return_i64(n + 1);
//!     Ok(())
//! }
//!
//! method!(increment);
//! # fn main() {}
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown` (see the crate's
//! README). rustc exports the linear memory as `memory` by itself, and
//! [`method!`] exports `invoke` with type `(func)`, which is all the ABI asks.
//!
//! # Panics
//!
//! A `no_std` `cdylib` needs a `#[panic_handler]`. With the cargo feature
//! `panic-handler` (on by default) this crate provides one for `wasm32`: it
//! logs `batos_guest: panic` and traps (`unreachable`), so a panic fails the
//! message with `method_trap` and keeps nothing. Turn the feature off
//! (`default-features = false`) to write your own.
//!
//! # The buffer convention
//!
//! Calls that copy bytes out take a buffer and return the value's full
//! length. The wrappers return the filled part of your buffer, or
//! [`Error::BufferTooSmall`] with the length needed; call again with a
//! buffer that big (after [`send`], call [`last_result`] rather than sending
//! again). An empty buffer asks just for the length.
//!
//! # Off wasm32
//!
//! On other targets the [`sys`] functions are stubs that panic, so that the
//! crate, its docs and your method's code still type-check on the host (and
//! the [`msgpack`] module can be unit-tested there).

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

use core::fmt;

pub mod msgpack;

/// Declares the `uvm` imports: real wasm imports on wasm32, panicking stubs
/// elsewhere (so host builds and doc tests type-check).
macro_rules! uvm_imports {
    ($( $(#[$m:meta])* pub fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)?; )*) => {
        #[cfg(target_arch = "wasm32")]
        #[link(wasm_import_module = "uvm")]
        extern "C" {
            $( $(#[$m])* pub fn $name($($a: $t),*) $(-> $r)?; )*
        }

        $(
            #[cfg(not(target_arch = "wasm32"))]
            $(#[$m])*
            ///
            /// (Host stub: this target is not the sandbox, so it panics.)
            ///
            /// # Safety
            ///
            /// Pointer arguments must point into the method's memory, valid
            /// for the lengths passed (the host traps otherwise).
            pub unsafe extern "C" fn $name($($a: $t),*) $(-> $r)? {
                let _ = ($($a,)*);
                panic!(concat!("uvm.", stringify!($name), " is only available inside the BAT OS sandbox"))
            }
        )*
    };
}

/// The raw imports of host module `uvm`, one for one with
/// `docs/method-abi.md`.
///
/// Pointers are addresses in the method's linear memory and lengths are
/// byte counts (both `i32` in the wasm signatures). Status results are `0`
/// or a length on success, or a negative error code ([`Error::from_code`]).
/// A pointer or length outside memory, or a name or selector that is not
/// UTF-8, traps. Prefer the safe wrappers at the crate root.
///
/// ```no_run
/// let n = unsafe { batos_guest::sys::arg_count() };
/// ```
pub mod sys {
    uvm_imports! {
        /// `() -> i32`: the number of arguments.
        ///
        /// ```no_run
        /// let n = unsafe { batos_guest::sys::arg_count() };
        /// ```
        pub fn arg_count() -> i32;

        /// `(index, out_ptr) -> i32`: stores argument `index` (an int) as
        /// i64 at `out_ptr`.
        ///
        /// ```no_run
        /// let mut v = 0i64;
        /// let rc = unsafe { batos_guest::sys::arg_i64(0, &mut v) };
        /// ```
        pub fn arg_i64(index: i32, out: *mut i64) -> i32;

        /// `(index, out_ptr) -> i32`: stores argument `index` (a float or
        /// int) as f64 at `out_ptr`.
        ///
        /// ```no_run
        /// let mut v = 0f64;
        /// let rc = unsafe { batos_guest::sys::arg_f64(0, &mut v) };
        /// ```
        pub fn arg_f64(index: i32, out: *mut f64) -> i32;

        /// `(name_ptr, name_len, out_ptr) -> i32`: stores the int slot at
        /// `out_ptr` (reads delegate along `parent*`).
        ///
        /// ```no_run
        /// let mut v = 0i64;
        /// let rc = unsafe { batos_guest::sys::slot_i64(b"count".as_ptr(), 5, &mut v) };
        /// ```
        pub fn slot_i64(name_ptr: *const u8, name_len: i32, out: *mut i64) -> i32;

        /// `(name_ptr, name_len, out_ptr) -> i32`: stores the float (or
        /// int) slot at `out_ptr`.
        ///
        /// ```no_run
        /// let mut v = 0f64;
        /// let rc = unsafe { batos_guest::sys::slot_f64(b"x".as_ptr(), 1, &mut v) };
        /// ```
        pub fn slot_f64(name_ptr: *const u8, name_len: i32, out: *mut f64) -> i32;

        /// `(name_ptr, name_len, buf_ptr, buf_cap) -> i32`: copies the str
        /// slot into the buffer; returns its full length.
        ///
        /// ```no_run
        /// let mut buf = [0u8; 64];
        /// let len = unsafe { batos_guest::sys::slot_str(b"name".as_ptr(), 4, buf.as_mut_ptr(), 64) };
        /// ```
        pub fn slot_str(name_ptr: *const u8, name_len: i32, buf_ptr: *mut u8, buf_cap: i32) -> i32;

        /// `(name_ptr, name_len, value i64) -> i32`: writes an int slot on
        /// `self`.
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::set_slot_i64(b"count".as_ptr(), 5, 1) };
        /// ```
        pub fn set_slot_i64(name_ptr: *const u8, name_len: i32, value: i64) -> i32;

        /// `(name_ptr, name_len, value f64) -> i32`: writes a float slot on
        /// `self`.
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::set_slot_f64(b"x".as_ptr(), 1, 0.5) };
        /// ```
        pub fn set_slot_f64(name_ptr: *const u8, name_len: i32, value: f64) -> i32;

        /// `(name_ptr, name_len, ptr, len) -> i32`: writes a str slot on
        /// `self`.
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::set_slot_str(b"name".as_ptr(), 4, b"ada".as_ptr(), 3) };
        /// ```
        pub fn set_slot_str(name_ptr: *const u8, name_len: i32, ptr: *const u8, len: i32) -> i32;

        /// `(value i64)`: the method returns an int.
        ///
        /// ```no_run
        /// unsafe { batos_guest::sys::return_i64(42) };
        /// ```
        pub fn return_i64(value: i64);

        /// `(value f64)`: the method returns a float.
        ///
        /// ```no_run
        /// unsafe { batos_guest::sys::return_f64(0.5) };
        /// ```
        pub fn return_f64(value: f64);

        /// `(ptr, len) -> i32`: the method returns a str.
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::return_str(b"hi".as_ptr(), 2) };
        /// ```
        pub fn return_str(ptr: *const u8, len: i32) -> i32;

        /// `(ptr, len)`: logs a line (tracing, with the oid and selector).
        ///
        /// ```no_run
        /// unsafe { batos_guest::sys::log(b"hello".as_ptr(), 5) };
        /// ```
        pub fn log(ptr: *const u8, len: i32);

        /// `(index, buf_ptr, buf_cap) -> i32`: copies argument `index` as
        /// MessagePack; returns its full length.
        ///
        /// ```no_run
        /// let mut buf = [0u8; 256];
        /// let len = unsafe { batos_guest::sys::arg_msgpack(0, buf.as_mut_ptr(), 256) };
        /// ```
        pub fn arg_msgpack(index: i32, buf_ptr: *mut u8, buf_cap: i32) -> i32;

        /// `(name_ptr, name_len, buf_ptr, buf_cap) -> i32`: copies the slot
        /// as MessagePack; returns its full length.
        ///
        /// ```no_run
        /// let mut buf = [0u8; 256];
        /// let len = unsafe { batos_guest::sys::slot_msgpack(b"memo".as_ptr(), 4, buf.as_mut_ptr(), 256) };
        /// ```
        pub fn slot_msgpack(name_ptr: *const u8, name_len: i32, buf_ptr: *mut u8, buf_cap: i32) -> i32;

        /// `(name_ptr, name_len, ptr, len) -> i32`: writes a slot on `self`
        /// from MessagePack (`parent*` rules apply).
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::set_slot_msgpack(b"memo".as_ptr(), 4, [0xc3].as_ptr(), 1) };
        /// ```
        pub fn set_slot_msgpack(name_ptr: *const u8, name_len: i32, ptr: *const u8, len: i32) -> i32;

        /// `(ptr, len) -> i32`: the method returns this MessagePack value.
        ///
        /// ```no_run
        /// let rc = unsafe { batos_guest::sys::return_msgpack([0xc0].as_ptr(), 1) };
        /// ```
        pub fn return_msgpack(ptr: *const u8, len: i32) -> i32;

        /// `() -> i64`: the receiver's oid.
        ///
        /// ```no_run
        /// let me = unsafe { batos_guest::sys::self_oid() };
        /// ```
        pub fn self_oid() -> i64;

        /// `(target i64, sel_ptr, sel_len, args_ptr, args_len, buf_ptr,
        /// buf_cap) -> i32`: sends the selector with a MessagePack array of
        /// arguments to object `target`; copies the result as MessagePack
        /// and returns its full length.
        ///
        /// ```no_run
        /// let mut buf = [0u8; 64];
        /// let len = unsafe {
        ///     batos_guest::sys::send(7, b"increment".as_ptr(), 9, [0x90].as_ptr(), 1, buf.as_mut_ptr(), 64)
        /// };
        /// ```
        pub fn send(
            target: i64,
            sel_ptr: *const u8,
            sel_len: i32,
            args_ptr: *const u8,
            args_len: i32,
            buf_ptr: *mut u8,
            buf_cap: i32
        ) -> i32;

        /// `(buf_ptr, buf_cap) -> i32`: copies the last `send` result again;
        /// returns its full length.
        ///
        /// ```no_run
        /// let mut buf = [0u8; 1024];
        /// let len = unsafe { batos_guest::sys::last_result(buf.as_mut_ptr(), 1024) };
        /// ```
        pub fn last_result(buf_ptr: *mut u8, buf_cap: i32) -> i32;
    }
}

/// Why a `uvm` call (or encoding its data) failed.
///
/// The first six variants are the ABI's negative status codes.
///
/// ```
/// use batos_guest::Error;
/// assert_eq!(Error::from_code(-1), Error::NoSuchSlot);
/// assert_eq!(Error::SendFailed.code(), Some(-6));
/// assert_eq!(Error::BufferTooSmall { needed: 300 }.as_str(), "buffer_too_small");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// `-1 NO_SUCH_SLOT`: no slot of that name (reads delegate along
    /// `parent*`).
    NoSuchSlot,
    /// `-2 WRONG_TYPE`: the value is not of the type asked for.
    WrongType,
    /// `-3 NO_SUCH_ARG`: argument index out of range.
    NoSuchArg,
    /// `-4 BAD_VALUE`: bytes are not valid MessagePack, or a value the
    /// protocol refuses.
    BadValue,
    /// `-5 NO_SUCH_OBJECT`: the target of a send does not exist.
    NoSuchObject,
    /// `-6 SEND_FAILED`: the sent message failed (does not understand, bad
    /// arguments).
    SendFailed,
    /// A negative code this version of the crate does not know.
    Unknown(i32),
    /// The value did not fit the buffer; `needed` is its full length. Call
    /// again with a buffer at least that big ([`last_result`] after a
    /// [`send`]).
    BufferTooSmall {
        /// The value's full length in bytes.
        needed: usize,
    },
    /// Encoding or decoding MessagePack in the guest failed.
    Msgpack(msgpack::Error),
}

impl Error {
    /// The error for a negative ABI status code.
    ///
    /// ```
    /// use batos_guest::Error;
    /// assert_eq!(Error::from_code(-5), Error::NoSuchObject);
    /// assert_eq!(Error::from_code(-99), Error::Unknown(-99));
    /// ```
    pub fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::NoSuchSlot,
            -2 => Error::WrongType,
            -3 => Error::NoSuchArg,
            -4 => Error::BadValue,
            -5 => Error::NoSuchObject,
            -6 => Error::SendFailed,
            other => Error::Unknown(other),
        }
    }

    /// The ABI status code, for errors that came from the host.
    ///
    /// ```
    /// use batos_guest::Error;
    /// assert_eq!(Error::NoSuchArg.code(), Some(-3));
    /// assert_eq!(Error::BufferTooSmall { needed: 1 }.code(), None);
    /// ```
    pub fn code(self) -> Option<i32> {
        match self {
            Error::NoSuchSlot => Some(-1),
            Error::WrongType => Some(-2),
            Error::NoSuchArg => Some(-3),
            Error::BadValue => Some(-4),
            Error::NoSuchObject => Some(-5),
            Error::SendFailed => Some(-6),
            Error::Unknown(code) => Some(code),
            Error::BufferTooSmall { .. } | Error::Msgpack(_) => None,
        }
    }

    /// A short snake_case name (the ABI's name, lower-cased), for logs.
    ///
    /// ```
    /// assert_eq!(batos_guest::Error::NoSuchSlot.as_str(), "no_such_slot");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Error::NoSuchSlot => "no_such_slot",
            Error::WrongType => "wrong_type",
            Error::NoSuchArg => "no_such_arg",
            Error::BadValue => "bad_value",
            Error::NoSuchObject => "no_such_object",
            Error::SendFailed => "send_failed",
            Error::Unknown(_) => "unknown_error",
            Error::BufferTooSmall { .. } => "buffer_too_small",
            Error::Msgpack(_) => "msgpack",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Unknown(code) => write!(f, "unknown error code {}", code),
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {} bytes needed", needed)
            }
            Error::Msgpack(e) => write!(f, "msgpack: {}", e),
            other => f.write_str(other.as_str()),
        }
    }
}

impl From<msgpack::Error> for Error {
    fn from(e: msgpack::Error) -> Self {
        Error::Msgpack(e)
    }
}

/// A length for the ABI's `i32` (guest memory never holds more).
fn len_i32(n: usize) -> i32 {
    if n > i32::MAX as usize {
        i32::MAX
    } else {
        n as i32
    }
}

/// An argument index for the ABI, or `NoSuchArg` when it cannot be one.
fn index_i32(i: usize) -> Result<i32, Error> {
    if i > i32::MAX as usize {
        Err(Error::NoSuchArg)
    } else {
        Ok(i as i32)
    }
}

/// A status result: a non-negative length, or the error of a negative code.
fn status(rc: i32) -> Result<usize, Error> {
    if rc < 0 {
        Err(Error::from_code(rc))
    } else {
        Ok(rc as usize)
    }
}

/// A copy-out result: the filled part of `buf`, or `BufferTooSmall`.
fn copied(rc: i32, buf: &mut [u8]) -> Result<&[u8], Error> {
    let n = status(rc)?;
    if n > buf.len() {
        Err(Error::BufferTooSmall { needed: n })
    } else {
        Ok(&buf[..n])
    }
}

// ---------------------------------------------------------------- scalar level

/// The number of arguments of this message.
///
/// ```no_run
/// if batos_guest::arg_count() != 2 {
///     batos_guest::trap();
/// }
/// ```
pub fn arg_count() -> usize {
    let n = unsafe { sys::arg_count() };
    if n < 0 {
        0
    } else {
        n as usize
    }
}

/// Argument `index` (from 0), which must be an int.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let amount = batos_guest::arg_i64(0)?;
/// # Ok(()) }
/// ```
pub fn arg_i64(index: usize) -> Result<i64, Error> {
    let mut out = 0i64;
    status(unsafe { sys::arg_i64(index_i32(index)?, &mut out) })?;
    Ok(out)
}

/// Argument `index` (from 0), a float or an int, as `f64`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let factor = batos_guest::arg_f64(0)?;
/// # Ok(()) }
/// ```
pub fn arg_f64(index: usize) -> Result<f64, Error> {
    let mut out = 0f64;
    status(unsafe { sys::arg_f64(index_i32(index)?, &mut out) })?;
    Ok(out)
}

/// The int slot `name` (reads delegate along `parent*`).
///
/// ```no_run
/// use batos_guest::{slot_i64, Error};
/// # fn main() -> Result<(), Error> {
/// let count = match slot_i64("count") {
///     Ok(n) => n,
///     Err(Error::NoSuchSlot) => 0,
///     Err(e) => return Err(e),
/// };
/// # Ok(()) }
/// ```
pub fn slot_i64(name: &str) -> Result<i64, Error> {
    let mut out = 0i64;
    status(unsafe { sys::slot_i64(name.as_ptr(), len_i32(name.len()), &mut out) })?;
    Ok(out)
}

/// The float (or int) slot `name`, as `f64`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let x = batos_guest::slot_f64("x")?;
/// # Ok(()) }
/// ```
pub fn slot_f64(name: &str) -> Result<f64, Error> {
    let mut out = 0f64;
    status(unsafe { sys::slot_f64(name.as_ptr(), len_i32(name.len()), &mut out) })?;
    Ok(out)
}

/// The str slot `name`, copied into `buf`.
///
/// Returns [`Error::BufferTooSmall`] when it does not fit.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let mut buf = [0u8; 256];
/// let name = batos_guest::slot_str("name", &mut buf)?;
/// # Ok(()) }
/// ```
pub fn slot_str<'a>(name: &str, buf: &'a mut [u8]) -> Result<&'a str, Error> {
    let rc = unsafe {
        sys::slot_str(
            name.as_ptr(),
            len_i32(name.len()),
            buf.as_mut_ptr(),
            len_i32(buf.len()),
        )
    };
    let bytes = copied(rc, buf)?;
    core::str::from_utf8(bytes).map_err(|_| Error::Msgpack(msgpack::Error::InvalidUtf8))
}

/// Writes the int slot `name` on `self`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// batos_guest::set_slot_i64("count", 1)?;
/// # Ok(()) }
/// ```
pub fn set_slot_i64(name: &str, value: i64) -> Result<(), Error> {
    status(unsafe { sys::set_slot_i64(name.as_ptr(), len_i32(name.len()), value) }).map(drop)
}

/// Writes the float slot `name` on `self`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// batos_guest::set_slot_f64("x", 2.5)?;
/// # Ok(()) }
/// ```
pub fn set_slot_f64(name: &str, value: f64) -> Result<(), Error> {
    status(unsafe { sys::set_slot_f64(name.as_ptr(), len_i32(name.len()), value) }).map(drop)
}

/// Writes the str slot `name` on `self`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// batos_guest::set_slot_str("greeting", "hello")?;
/// # Ok(()) }
/// ```
pub fn set_slot_str(name: &str, value: &str) -> Result<(), Error> {
    status(unsafe {
        sys::set_slot_str(
            name.as_ptr(),
            len_i32(name.len()),
            value.as_ptr(),
            len_i32(value.len()),
        )
    })
    .map(drop)
}

/// The method returns an int (the last `return_*` call wins).
///
/// ```no_run
/// batos_guest::return_i64(42);
/// ```
pub fn return_i64(value: i64) {
    unsafe { sys::return_i64(value) }
}

/// The method returns a float (the last `return_*` call wins).
///
/// ```no_run
/// batos_guest::return_f64(0.5);
/// ```
pub fn return_f64(value: f64) {
    unsafe { sys::return_f64(value) }
}

/// The method returns a str (the last `return_*` call wins).
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// batos_guest::return_str("done")?;
/// # Ok(()) }
/// ```
pub fn return_str(value: &str) -> Result<(), Error> {
    status(unsafe { sys::return_str(value.as_ptr(), len_i32(value.len())) }).map(drop)
}

/// Logs a line (the kernel traces it with the oid and selector).
///
/// ```no_run
/// batos_guest::log("counter: incremented");
/// ```
pub fn log(line: &str) {
    unsafe { sys::log(line.as_ptr(), len_i32(line.len())) }
}

// ----------------------------------------------------------------- value level

/// Argument `index` (from 0), any type, as MessagePack copied into `buf`.
///
/// ```no_run
/// use batos_guest::msgpack::Reader;
/// # fn main() -> Result<(), batos_guest::Error> {
/// let mut buf = [0u8; 256];
/// let arg = batos_guest::arg_msgpack(0, &mut buf)?;
/// let label = Reader::new(arg).read_str()?;
/// # Ok(()) }
/// ```
pub fn arg_msgpack(index: usize, buf: &mut [u8]) -> Result<&[u8], Error> {
    let rc = unsafe { sys::arg_msgpack(index_i32(index)?, buf.as_mut_ptr(), len_i32(buf.len())) };
    copied(rc, buf)
}

/// The slot `name`, any type, as MessagePack copied into `buf`.
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let mut buf = [0u8; 1024];
/// let memo = batos_guest::slot_msgpack("memo", &mut buf)?;
/// batos_guest::return_msgpack(memo)?;
/// # Ok(()) }
/// ```
pub fn slot_msgpack<'a>(name: &str, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
    let rc = unsafe {
        sys::slot_msgpack(
            name.as_ptr(),
            len_i32(name.len()),
            buf.as_mut_ptr(),
            len_i32(buf.len()),
        )
    };
    copied(rc, buf)
}

/// Writes the slot `name` on `self` from one MessagePack value
/// (`parent*` rules apply).
///
/// ```no_run
/// use batos_guest::msgpack::Writer;
/// # fn main() -> Result<(), batos_guest::Error> {
/// let mut buf = [0u8; 32];
/// let mut w = Writer::new(&mut buf);
/// w.write_array_len(2)?;
/// w.write_int(1)?;
/// w.write_str("two")?;
/// batos_guest::set_slot_msgpack("pair", w.as_bytes())?;
/// # Ok(()) }
/// ```
pub fn set_slot_msgpack(name: &str, value: &[u8]) -> Result<(), Error> {
    status(unsafe {
        sys::set_slot_msgpack(
            name.as_ptr(),
            len_i32(name.len()),
            value.as_ptr(),
            len_i32(value.len()),
        )
    })
    .map(drop)
}

/// The method returns this MessagePack value (the last `return_*` call
/// wins).
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// batos_guest::return_msgpack(&[0x92, 0x01, 0x02])?; // [1, 2]
/// # Ok(()) }
/// ```
pub fn return_msgpack(value: &[u8]) -> Result<(), Error> {
    status(unsafe { sys::return_msgpack(value.as_ptr(), len_i32(value.len())) }).map(drop)
}

/// The receiver's oid (`self`: where slot writes go).
///
/// ```no_run
/// # fn main() -> Result<(), batos_guest::Error> {
/// let mut buf = [0u8; 64];
/// let result = batos_guest::send(batos_guest::self_oid(), "increment", &[0x90], &mut buf)?;
/// # Ok(()) }
/// ```
pub fn self_oid() -> i64 {
    unsafe { sys::self_oid() }
}

/// Sends `selector` to object `target` with `args`, the MessagePack
/// encoding of an array of arguments (`[0x90]` for none), and returns the
/// result as MessagePack copied into `buf`.
///
/// The sent method runs in this message's transaction: its writes are kept
/// only if the whole message succeeds, and if it traps, so does this one.
/// On [`Error::BufferTooSmall`] the message *was* sent: fetch the result
/// with [`last_result`], do not send again.
///
/// ```no_run
/// use batos_guest::msgpack::{Reader, Writer};
/// # fn main() -> Result<(), batos_guest::Error> {
/// let account = batos_guest::arg_i64(0)?;
/// let mut args = [0u8; 16];
/// let mut w = Writer::new(&mut args);
/// w.write_array_len(1)?;
/// w.write_int(100)?;
/// let mut buf = [0u8; 64];
/// let result = batos_guest::send(account, "deposit_", w.as_bytes(), &mut buf)?;
/// let balance = Reader::new(result).read_i64()?;
/// # Ok(()) }
/// ```
pub fn send<'a>(
    target: i64,
    selector: &str,
    args: &[u8],
    buf: &'a mut [u8],
) -> Result<&'a [u8], Error> {
    let rc = unsafe {
        sys::send(
            target,
            selector.as_ptr(),
            len_i32(selector.len()),
            args.as_ptr(),
            len_i32(args.len()),
            buf.as_mut_ptr(),
            len_i32(buf.len()),
        )
    };
    copied(rc, buf)
}

/// The result of the last [`send`] again, as MessagePack copied into `buf`.
///
/// ```no_run
/// use batos_guest::{last_result, send, Error};
/// # fn main() -> Result<(), Error> {
/// let mut small = [0u8; 16];
/// let mut big = [0u8; 4096];
/// let result = match send(7, "describe", &[0x90], &mut small) {
///     Ok(r) => r,
///     Err(Error::BufferTooSmall { needed }) if needed <= big.len() => last_result(&mut big)?,
///     Err(e) => return Err(e),
/// };
/// # Ok(()) }
/// ```
pub fn last_result(buf: &mut [u8]) -> Result<&[u8], Error> {
    let rc = unsafe { sys::last_result(buf.as_mut_ptr(), len_i32(buf.len())) };
    copied(rc, buf)
}

// ------------------------------------------------------------ running a method

/// Aborts the method with a wasm trap (`unreachable`). The message fails
/// with `method_trap` and nothing of its transaction is kept, including the
/// writes of every method it sent to.
///
/// ```no_run
/// if batos_guest::arg_count() != 1 {
///     batos_guest::trap();
/// }
/// ```
pub fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    {
        core::arch::wasm32::unreachable()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        panic!("batos_guest::trap")
    }
}

/// `.or_trap()`: the value, or a [`trap`] (without the formatting machinery
/// that `unwrap` pulls into a module).
///
/// ```no_run
/// use batos_guest::OrTrap;
/// let amount = batos_guest::arg_i64(0).or_trap();
/// let doubled = amount.checked_mul(2).or_trap();
/// ```
pub trait OrTrap<T> {
    /// The `Ok` or `Some` value; traps otherwise.
    ///
    /// ```no_run
    /// use batos_guest::OrTrap;
    /// let n = batos_guest::slot_i64("count").or_trap();
    /// ```
    fn or_trap(self) -> T;
}

impl<T, E> OrTrap<T> for Result<T, E> {
    fn or_trap(self) -> T {
        match self {
            Ok(v) => v,
            Err(_) => trap(),
        }
    }
}

impl<T> OrTrap<T> for Option<T> {
    fn or_trap(self) -> T {
        match self {
            Some(v) => v,
            None => trap(),
        }
    }
}

/// Runs a method body: on `Err`, logs `batos_guest: method failed: NAME`
/// and [`trap`]s. [`method!`] calls it from `invoke`; call it yourself when
/// you write `invoke` by hand.
///
/// ```no_run
/// #[no_mangle]
/// pub extern "C" fn invoke() {
///     batos_guest::run_method(|| {
///         batos_guest::return_i64(batos_guest::arg_i64(0)? * 2);
///         Ok(())
///     })
/// }
/// ```
pub fn run_method<F: FnOnce() -> Result<(), Error>>(body: F) {
    if let Err(e) = body() {
        const PREFIX: &[u8] = b"batos_guest: method failed: ";
        let name = e.as_str().as_bytes();
        let mut line = [0u8; 64];
        let n = PREFIX.len() + name.len();
        line[..PREFIX.len()].copy_from_slice(PREFIX);
        line[PREFIX.len()..n].copy_from_slice(name);
        unsafe { sys::log(line.as_ptr(), n as i32) };
        trap()
    }
}

/// Defines the method's entry point: the `invoke` export, type `(func)`.
///
/// Give it a function (or closure) `FnOnce() -> Result<(), Error>`; an `Err`
/// logs the error and traps (see [`run_method`]). Use it once per module.
/// By hand, the same is
/// `#[no_mangle] pub extern "C" fn invoke() { batos_guest::run_method(body) }`.
///
/// ```no_run
/// use batos_guest::{arg_i64, method, return_i64, Error};
///
/// fn double() -> Result<(), Error> {
///     return_i64(arg_i64(0)? * 2);
///     Ok(())
/// }
///
/// method!(double);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! method {
    ($body:expr) => {
        /// The method's entry point, called by the BAT OS kernel.
        #[no_mangle]
        pub extern "C" fn invoke() {
            $crate::run_method($body)
        }
    };
}

/// The panic handler of feature `panic-handler` (default): logs and traps.
#[cfg(all(feature = "panic-handler", target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    log("batos_guest: panic");
    trap()
}
