//! A tiny MessagePack codec: no allocation, no dependencies, `core` only.
//!
//! [`Writer`] encodes into a caller-provided `&mut [u8]`; [`Reader`] decodes
//! from a `&[u8]` one value (or one container header) at a time, borrowing
//! strings and binaries from the input. It covers what methods exchange with
//! the kernel: nil, bool, ints of every width, floats, str, bin, ext, and
//! array and map headers (the elements of a container follow its header and
//! are read or written one by one).
//!
//! Encoding always picks the shortest form. A write that does not fit
//! writes nothing and returns [`Error::BufferFull`]; a read that fails
//! consumes nothing.
//!
//! ```
//! use batos_guest::msgpack::{Reader, Writer};
//!
//! let mut buf = [0u8; 32];
//! let mut w = Writer::new(&mut buf);
//! w.write_array_len(2).unwrap();
//! w.write_int(-5).unwrap();
//! w.write_str("hi").unwrap();
//! assert_eq!(w.as_bytes(), &[0x92, 0xfb, 0xa2, b'h', b'i']);
//!
//! let mut r = Reader::new(w.as_bytes());
//! assert_eq!(r.read_array_len(), Ok(2));
//! assert_eq!(r.read_i64(), Ok(-5));
//! assert_eq!(r.read_str(), Ok("hi"));
//! assert!(r.is_empty());
//! ```
//!
//! This file is also a crate root of its own, so its tests run on the host:
//! `rustc --edition 2021 --test src/msgpack.rs -o /tmp/msgpack-tests && /tmp/msgpack-tests`.

use core::fmt;

/// What went wrong while encoding or decoding.
///
/// ```
/// use batos_guest::msgpack::{Error, Reader};
/// assert_eq!(Reader::new(&[0xc3]).read_i64(), Err(Error::WrongType));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The input ends in the middle of a value.
    UnexpectedEnd,
    /// The output buffer has no room for the value.
    BufferFull,
    /// The value is not of the type asked for.
    WrongType,
    /// A str value is not UTF-8.
    InvalidUtf8,
    /// An int does not fit the type asked for, or a length does not fit
    /// MessagePack's 32 bits.
    OutOfRange,
    /// The byte `0xc1`, which MessagePack never uses.
    Reserved,
}

impl Error {
    /// A short snake_case name, for logs.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Error::BufferFull.as_str(), "buffer_full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Error::UnexpectedEnd => "unexpected_end",
            Error::BufferFull => "buffer_full",
            Error::WrongType => "wrong_type",
            Error::InvalidUtf8 => "invalid_utf8",
            Error::OutOfRange => "out_of_range",
            Error::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decoded item: a scalar, a str, bin or ext borrowed from the input, or
/// the header of a container (its elements follow it).
///
/// ```
/// use batos_guest::msgpack::{Reader, Value};
/// let mut r = Reader::new(&[0x81, 0xa1, b'k', 0xc0]);
/// assert_eq!(r.read_value(), Ok(Value::Map(1)));
/// assert_eq!(r.read_value(), Ok(Value::Str("k")));
/// assert_eq!(r.read_value(), Ok(Value::Nil));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// nil.
    Nil,
    /// true or false.
    Bool(bool),
    /// An int that fits `i64` (whatever its encoding).
    Int(i64),
    /// An unsigned int above `i64::MAX`.
    UInt(u64),
    /// A float32.
    F32(f32),
    /// A float64.
    F64(f64),
    /// A UTF-8 string.
    Str(&'a str),
    /// Raw bytes.
    Bin(&'a [u8]),
    /// An extension value: its type tag and data.
    Ext(i8, &'a [u8]),
    /// The header of an array of this many elements.
    Array(u32),
    /// The header of a map of this many key/value pairs.
    Map(u32),
}

/// Encodes MessagePack into a borrowed buffer, front to back.
///
/// ```
/// use batos_guest::msgpack::Writer;
/// let mut buf = [0u8; 16];
/// let mut w = Writer::new(&mut buf);
/// w.write_array_len(1).unwrap();
/// w.write_int(300).unwrap();
/// assert_eq!(w.into_bytes(), &[0x91, 0xcd, 0x01, 0x2c]);
/// ```
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer that fills `buf` from its start.
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// let w = batos_guest::msgpack::Writer::new(&mut buf);
    /// assert!(w.is_empty());
    /// ```
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }

    /// Bytes written so far.
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_nil().unwrap();
    /// assert_eq!(w.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been written yet.
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// assert!(batos_guest::msgpack::Writer::new(&mut buf).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// The bytes written so far.
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_bool(true).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xc3]);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    /// Ends writing; the bytes written, borrowed for the buffer's lifetime.
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_array_len(0).unwrap();
    /// assert_eq!(w.into_bytes(), &[0x90]);
    /// ```
    pub fn into_bytes(self) -> &'a [u8] {
        let Writer { buf, pos } = self;
        &buf[..pos]
    }

    /// Takes the next `n` bytes of the buffer, or fails without writing.
    fn take(&mut self, n: usize) -> Result<&mut [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::BufferFull)?;
        if end > self.buf.len() {
            return Err(Error::BufferFull);
        }
        let out = &mut self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A marker byte followed by a big-endian payload.
    fn marker_be(&mut self, marker: u8, be: &[u8]) -> Result<(), Error> {
        let out = self.take(1 + be.len())?;
        out[0] = marker;
        out[1..].copy_from_slice(be);
        Ok(())
    }

    /// A header (marker and big-endian length) followed by `data`, all or
    /// nothing.
    fn header_then(&mut self, marker: u8, be_len: &[u8], data: &[u8]) -> Result<(), Error> {
        let head = 1 + be_len.len();
        let out = self.take(head.checked_add(data.len()).ok_or(Error::BufferFull)?)?;
        out[0] = marker;
        out[1..head].copy_from_slice(be_len);
        out[head..].copy_from_slice(data);
        Ok(())
    }

    /// Appends bytes that already are MessagePack (one or more whole values),
    /// for example a value got from [`crate::arg_msgpack`].
    ///
    /// ```
    /// let mut buf = [0u8; 4];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_array_len(1).unwrap();
    /// w.write_raw(&[0x2a]).unwrap();
    /// assert_eq!(w.as_bytes(), &[0x91, 0x2a]);
    /// ```
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.take(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    /// Writes nil.
    ///
    /// ```
    /// let mut buf = [0u8; 1];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_nil().unwrap();
    /// assert_eq!(w.as_bytes(), &[0xc0]);
    /// ```
    pub fn write_nil(&mut self) -> Result<(), Error> {
        self.write_raw(&[0xc0])
    }

    /// Writes a bool.
    ///
    /// ```
    /// let mut buf = [0u8; 1];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_bool(false).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xc2]);
    /// ```
    pub fn write_bool(&mut self, v: bool) -> Result<(), Error> {
        self.write_raw(&[if v { 0xc3 } else { 0xc2 }])
    }

    /// Writes a signed int in its shortest form (non-negative ints use the
    /// unsigned forms, as other MessagePack encoders do).
    ///
    /// ```
    /// let mut buf = [0u8; 9];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_int(-200).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xd1, 0xff, 0x38]);
    /// ```
    pub fn write_int(&mut self, v: i64) -> Result<(), Error> {
        if v >= 0 {
            self.write_uint(v as u64)
        } else if v >= -32 {
            self.write_raw(&[v as i8 as u8])
        } else if v >= i8::MIN as i64 {
            self.marker_be(0xd0, &(v as i8).to_be_bytes())
        } else if v >= i16::MIN as i64 {
            self.marker_be(0xd1, &(v as i16).to_be_bytes())
        } else if v >= i32::MIN as i64 {
            self.marker_be(0xd2, &(v as i32).to_be_bytes())
        } else {
            self.marker_be(0xd3, &v.to_be_bytes())
        }
    }

    /// Writes an unsigned int in its shortest form.
    ///
    /// ```
    /// let mut buf = [0u8; 9];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_uint(200).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xcc, 200]);
    /// ```
    pub fn write_uint(&mut self, v: u64) -> Result<(), Error> {
        if v < 0x80 {
            self.write_raw(&[v as u8])
        } else if v <= u8::MAX as u64 {
            self.marker_be(0xcc, &[v as u8])
        } else if v <= u16::MAX as u64 {
            self.marker_be(0xcd, &(v as u16).to_be_bytes())
        } else if v <= u32::MAX as u64 {
            self.marker_be(0xce, &(v as u32).to_be_bytes())
        } else {
            self.marker_be(0xcf, &v.to_be_bytes())
        }
    }

    /// Writes a float64.
    ///
    /// ```
    /// let mut buf = [0u8; 9];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_f64(1.5).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]);
    /// ```
    pub fn write_f64(&mut self, v: f64) -> Result<(), Error> {
        self.marker_be(0xcb, &v.to_bits().to_be_bytes())
    }

    /// Writes a float32.
    ///
    /// ```
    /// let mut buf = [0u8; 5];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_f32(1.5).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xca, 0x3f, 0xc0, 0, 0]);
    /// ```
    pub fn write_f32(&mut self, v: f32) -> Result<(), Error> {
        self.marker_be(0xca, &v.to_bits().to_be_bytes())
    }

    /// Writes a str.
    ///
    /// ```
    /// let mut buf = [0u8; 8];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_str("abc").unwrap();
    /// assert_eq!(w.as_bytes(), &[0xa3, b'a', b'b', b'c']);
    /// ```
    pub fn write_str(&mut self, v: &str) -> Result<(), Error> {
        let b = v.as_bytes();
        let n = b.len();
        if n < 32 {
            self.header_then(0xa0 | n as u8, &[], b)
        } else if n <= u8::MAX as usize {
            self.header_then(0xd9, &[n as u8], b)
        } else if n <= u16::MAX as usize {
            self.header_then(0xda, &(n as u16).to_be_bytes(), b)
        } else {
            self.header_then(0xdb, &len32(n)?.to_be_bytes(), b)
        }
    }

    /// Writes a bin.
    ///
    /// ```
    /// let mut buf = [0u8; 8];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_bin(&[1, 2]).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xc4, 2, 1, 2]);
    /// ```
    pub fn write_bin(&mut self, v: &[u8]) -> Result<(), Error> {
        let n = v.len();
        if n <= u8::MAX as usize {
            self.header_then(0xc4, &[n as u8], v)
        } else if n <= u16::MAX as usize {
            self.header_then(0xc5, &(n as u16).to_be_bytes(), v)
        } else {
            self.header_then(0xc6, &len32(n)?.to_be_bytes(), v)
        }
    }

    /// Writes an ext value: a type tag and its data.
    ///
    /// ```
    /// let mut buf = [0u8; 8];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_ext(5, &[9]).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xd4, 5, 9]);
    /// ```
    pub fn write_ext(&mut self, tag: i8, data: &[u8]) -> Result<(), Error> {
        let t = tag as u8;
        let n = data.len();
        match n {
            1 => self.header_then(0xd4, &[t], data),
            2 => self.header_then(0xd5, &[t], data),
            4 => self.header_then(0xd6, &[t], data),
            8 => self.header_then(0xd7, &[t], data),
            16 => self.header_then(0xd8, &[t], data),
            _ if n <= u8::MAX as usize => self.header_then(0xc7, &[n as u8, t], data),
            _ if n <= u16::MAX as usize => {
                let l = (n as u16).to_be_bytes();
                self.header_then(0xc8, &[l[0], l[1], t], data)
            }
            _ => {
                let l = len32(n)?.to_be_bytes();
                self.header_then(0xc9, &[l[0], l[1], l[2], l[3], t], data)
            }
        }
    }

    /// Writes the header of an array of `n` elements; write the elements
    /// next.
    ///
    /// ```
    /// let mut buf = [0u8; 8];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_array_len(20).unwrap();
    /// assert_eq!(w.as_bytes(), &[0xdc, 0, 20]);
    /// ```
    pub fn write_array_len(&mut self, n: u32) -> Result<(), Error> {
        if n < 16 {
            self.write_raw(&[0x90 | n as u8])
        } else if n <= u16::MAX as u32 {
            self.marker_be(0xdc, &(n as u16).to_be_bytes())
        } else {
            self.marker_be(0xdd, &n.to_be_bytes())
        }
    }

    /// Writes the header of a map of `n` pairs; write key, value, key,
    /// value… next.
    ///
    /// ```
    /// let mut buf = [0u8; 8];
    /// let mut w = batos_guest::msgpack::Writer::new(&mut buf);
    /// w.write_map_len(1).unwrap();
    /// assert_eq!(w.as_bytes(), &[0x81]);
    /// ```
    pub fn write_map_len(&mut self, n: u32) -> Result<(), Error> {
        if n < 16 {
            self.write_raw(&[0x80 | n as u8])
        } else if n <= u16::MAX as u32 {
            self.marker_be(0xde, &(n as u16).to_be_bytes())
        } else {
            self.marker_be(0xdf, &n.to_be_bytes())
        }
    }
}

fn len32(n: usize) -> Result<u32, Error> {
    if n as u64 > u32::MAX as u64 {
        Err(Error::OutOfRange)
    } else {
        Ok(n as u32)
    }
}

/// Decodes MessagePack from a borrowed buffer, front to back.
///
/// ```
/// use batos_guest::msgpack::Reader;
/// let mut r = Reader::new(&[0x92, 0x01, 0xc3]);
/// assert_eq!(r.read_array_len(), Ok(2));
/// assert_eq!(r.read_i64(), Ok(1));
/// assert_eq!(r.read_bool(), Ok(true));
/// ```
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    ///
    /// ```
    /// assert!(!batos_guest::msgpack::Reader::new(&[0xc0]).is_empty());
    /// ```
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// How many bytes have been read.
    ///
    /// ```
    /// let mut r = batos_guest::msgpack::Reader::new(&[0xcc, 200, 0xc0]);
    /// r.read_i64().unwrap();
    /// assert_eq!(r.position(), 2);
    /// ```
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    ///
    /// ```
    /// let mut r = batos_guest::msgpack::Reader::new(&[0x91, 0x07]);
    /// r.read_array_len().unwrap();
    /// assert_eq!(r.rest(), &[0x07]);
    /// ```
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Whether everything has been read.
    ///
    /// ```
    /// let mut r = batos_guest::msgpack::Reader::new(&[0xc0]);
    /// r.read_nil().unwrap();
    /// assert!(r.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::UnexpectedEnd)?;
        if end > self.buf.len() {
            return Err(Error::UnexpectedEnd);
        }
        let buf: &'a [u8] = self.buf;
        let out = &buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str_of(&mut self, n: usize) -> Result<Value<'a>, Error> {
        let b = self.bytes(n)?;
        core::str::from_utf8(b)
            .map(Value::Str)
            .map_err(|_| Error::InvalidUtf8)
    }

    fn ext_of(&mut self, n: usize) -> Result<Value<'a>, Error> {
        let tag = self.u8()? as i8;
        Ok(Value::Ext(tag, self.bytes(n)?))
    }

    fn value_inner(&mut self) -> Result<Value<'a>, Error> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::Int(m as i64),
            0x80..=0x8f => Value::Map((m & 0x0f) as u32),
            0x90..=0x9f => Value::Array((m & 0x0f) as u32),
            0xa0..=0xbf => return self.str_of((m & 0x1f) as usize),
            0xc0 => Value::Nil,
            0xc1 => return Err(Error::Reserved),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = self.u8()? as usize;
                Value::Bin(self.bytes(n)?)
            }
            0xc5 => {
                let n = self.u16()? as usize;
                Value::Bin(self.bytes(n)?)
            }
            0xc6 => {
                let n = self.u32()? as usize;
                Value::Bin(self.bytes(n)?)
            }
            0xc7 => {
                let n = self.u8()? as usize;
                return self.ext_of(n);
            }
            0xc8 => {
                let n = self.u16()? as usize;
                return self.ext_of(n);
            }
            0xc9 => {
                let n = self.u32()? as usize;
                return self.ext_of(n);
            }
            0xca => Value::F32(f32::from_bits(self.u32()?)),
            0xcb => Value::F64(f64::from_bits(self.u64()?)),
            0xcc => Value::Int(self.u8()? as i64),
            0xcd => Value::Int(self.u16()? as i64),
            0xce => Value::Int(self.u32()? as i64),
            0xcf => {
                let v = self.u64()?;
                if v > i64::MAX as u64 {
                    Value::UInt(v)
                } else {
                    Value::Int(v as i64)
                }
            }
            0xd0 => Value::Int(self.u8()? as i8 as i64),
            0xd1 => Value::Int(self.u16()? as i16 as i64),
            0xd2 => Value::Int(self.u32()? as i32 as i64),
            0xd3 => Value::Int(self.u64()? as i64),
            0xd4 => return self.ext_of(1),
            0xd5 => return self.ext_of(2),
            0xd6 => return self.ext_of(4),
            0xd7 => return self.ext_of(8),
            0xd8 => return self.ext_of(16),
            0xd9 => {
                let n = self.u8()? as usize;
                return self.str_of(n);
            }
            0xda => {
                let n = self.u16()? as usize;
                return self.str_of(n);
            }
            0xdb => {
                let n = self.u32()? as usize;
                return self.str_of(n);
            }
            0xdc => Value::Array(self.u16()? as u32),
            0xdd => Value::Array(self.u32()?),
            0xde => Value::Map(self.u16()? as u32),
            0xdf => Value::Map(self.u32()?),
            0xe0..=0xff => Value::Int(m as i8 as i64),
        })
    }

    /// Reads the next item: a scalar, str, bin, ext, or a container header.
    /// On error nothing is consumed.
    ///
    /// ```
    /// use batos_guest::msgpack::{Reader, Value};
    /// let mut r = Reader::new(&[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    /// assert_eq!(r.read_value(), Ok(Value::UInt(u64::MAX)));
    /// ```
    pub fn read_value(&mut self) -> Result<Value<'a>, Error> {
        let start = self.pos;
        let v = self.value_inner();
        if v.is_err() {
            self.pos = start;
        }
        v
    }

    /// Reads the next item with `f`, or leaves it unread when `f` refuses it.
    fn typed<T>(&mut self, f: impl FnOnce(Value<'a>) -> Result<T, Error>) -> Result<T, Error> {
        let start = self.pos;
        let r = self.read_value().and_then(f);
        if r.is_err() {
            self.pos = start;
        }
        r
    }

    /// Reads nil.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Reader::new(&[0xc0]).read_nil(), Ok(()));
    /// ```
    pub fn read_nil(&mut self) -> Result<(), Error> {
        self.typed(|v| match v {
            Value::Nil => Ok(()),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a bool.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Reader::new(&[0xc2]).read_bool(), Ok(false));
    /// ```
    pub fn read_bool(&mut self) -> Result<bool, Error> {
        self.typed(|v| match v {
            Value::Bool(b) => Ok(b),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads an int of any width that fits `i64`.
    ///
    /// ```
    /// use batos_guest::msgpack::{Error, Reader};
    /// assert_eq!(Reader::new(&[0xd0, 0x80]).read_i64(), Ok(-128));
    /// assert_eq!(Reader::new(&[0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0]).read_i64(), Err(Error::OutOfRange));
    /// ```
    pub fn read_i64(&mut self) -> Result<i64, Error> {
        self.typed(|v| match v {
            Value::Int(i) => Ok(i),
            Value::UInt(_) => Err(Error::OutOfRange),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a non-negative int of any width.
    ///
    /// ```
    /// use batos_guest::msgpack::{Error, Reader};
    /// assert_eq!(Reader::new(&[0x07]).read_u64(), Ok(7));
    /// assert_eq!(Reader::new(&[0xff]).read_u64(), Err(Error::OutOfRange));
    /// ```
    pub fn read_u64(&mut self) -> Result<u64, Error> {
        self.typed(|v| match v {
            Value::Int(i) if i >= 0 => Ok(i as u64),
            Value::Int(_) => Err(Error::OutOfRange),
            Value::UInt(u) => Ok(u),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a float (32 or 64 bits) or an int, as `f64` (like the ABI's
    /// `arg_f64`).
    ///
    /// ```
    /// use batos_guest::msgpack::Reader;
    /// assert_eq!(Reader::new(&[0xca, 0x3f, 0xc0, 0, 0]).read_f64(), Ok(1.5));
    /// assert_eq!(Reader::new(&[0x03]).read_f64(), Ok(3.0));
    /// ```
    pub fn read_f64(&mut self) -> Result<f64, Error> {
        self.typed(|v| match v {
            Value::F64(f) => Ok(f),
            Value::F32(f) => Ok(f as f64),
            Value::Int(i) => Ok(i as f64),
            Value::UInt(u) => Ok(u as f64),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a str, borrowed from the input.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Reader::new(&[0xa2, b'o', b'k']).read_str(), Ok("ok"));
    /// ```
    pub fn read_str(&mut self) -> Result<&'a str, Error> {
        self.typed(|v| match v {
            Value::Str(s) => Ok(s),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a bin, borrowed from the input.
    ///
    /// ```
    /// let b: &[u8] = &[0xc4, 1, 0xaa];
    /// assert_eq!(batos_guest::msgpack::Reader::new(b).read_bin(), Ok(&[0xaa][..]));
    /// ```
    pub fn read_bin(&mut self) -> Result<&'a [u8], Error> {
        self.typed(|v| match v {
            Value::Bin(b) => Ok(b),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads an ext value: its type tag and data.
    ///
    /// ```
    /// let b: &[u8] = &[0xd4, 5, 9];
    /// assert_eq!(batos_guest::msgpack::Reader::new(b).read_ext(), Ok((5, &[9][..])));
    /// ```
    pub fn read_ext(&mut self) -> Result<(i8, &'a [u8]), Error> {
        self.typed(|v| match v {
            Value::Ext(t, d) => Ok((t, d)),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads an array header: the number of elements that follow.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Reader::new(&[0x90]).read_array_len(), Ok(0));
    /// ```
    pub fn read_array_len(&mut self) -> Result<u32, Error> {
        self.typed(|v| match v {
            Value::Array(n) => Ok(n),
            _ => Err(Error::WrongType),
        })
    }

    /// Reads a map header: the number of key/value pairs that follow.
    ///
    /// ```
    /// assert_eq!(batos_guest::msgpack::Reader::new(&[0xde, 0, 16]).read_map_len(), Ok(16));
    /// ```
    pub fn read_map_len(&mut self) -> Result<u32, Error> {
        self.typed(|v| match v {
            Value::Map(n) => Ok(n),
            _ => Err(Error::WrongType),
        })
    }

    /// Skips one whole value, containers with all their elements, and
    /// returns its bytes. On error nothing is consumed.
    ///
    /// ```
    /// use batos_guest::msgpack::Reader;
    /// let mut r = Reader::new(&[0x92, 0x01, 0x91, 0xc0, 0x05]);
    /// assert_eq!(r.skip(), Ok(&[0x92, 0x01, 0x91, 0xc0][..]));
    /// assert_eq!(r.read_i64(), Ok(5));
    /// ```
    pub fn skip(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        // Values still to read; u64 so that 2 × u32::MAX map entries cannot
        // overflow it.
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.read_value() {
                Ok(Value::Array(n)) => pending += n as u64,
                Ok(Value::Map(n)) => pending += 2 * n as u64,
                Ok(_) => {}
                Err(e) => {
                    self.pos = start;
                    return Err(e);
                }
            }
            // Every element takes at least one byte: a count larger than the
            // input left is truncated input, found without looping on it.
            if pending > (self.buf.len() - self.pos) as u64 {
                self.pos = start;
                return Err(Error::UnexpectedEnd);
            }
        }
        let buf: &'a [u8] = self.buf;
        Ok(&buf[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Writer) -> Result<(), Error>) -> ([u8; 64], usize) {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        f(&mut w).unwrap();
        let n = w.len();
        (buf, n)
    }

    #[test]
    fn ints_use_shortest_form_and_round_trip() {
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (255, &[0xcc, 0xff]),
            (256, &[0xcd, 0x01, 0x00]),
            (65535, &[0xcd, 0xff, 0xff]),
            (65536, &[0xce, 0, 1, 0, 0]),
            (u32::MAX as i64, &[0xce, 0xff, 0xff, 0xff, 0xff]),
            (u32::MAX as i64 + 1, &[0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (
                i64::MAX,
                &[0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
            (-1, &[0xff]),
            (-32, &[0xe0]),
            (-33, &[0xd0, 0xdf]),
            (-128, &[0xd0, 0x80]),
            (-129, &[0xd1, 0xff, 0x7f]),
            (-32768, &[0xd1, 0x80, 0x00]),
            (-32769, &[0xd2, 0xff, 0xff, 0x7f, 0xff]),
            (i32::MIN as i64, &[0xd2, 0x80, 0, 0, 0]),
            (
                i32::MIN as i64 - 1,
                &[0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
            ),
            (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ];
        for &(v, bytes) in cases {
            let (buf, n) = enc(|w| w.write_int(v));
            assert_eq!(&buf[..n], bytes, "encoding {v}");
            let mut r = Reader::new(bytes);
            assert_eq!(r.read_i64(), Ok(v), "decoding {v}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn every_int_width_decodes() {
        // Non-canonical but valid encodings, as other encoders may produce.
        let cases: &[(&[u8], i64)] = &[
            (&[0xcc, 0x05], 5),
            (&[0xcd, 0x00, 0x05], 5),
            (&[0xce, 0, 0, 0, 5], 5),
            (&[0xcf, 0, 0, 0, 0, 0, 0, 0, 5], 5),
            (&[0xd0, 0x05], 5),
            (&[0xd1, 0xff, 0xfb], -5),
            (&[0xd2, 0xff, 0xff, 0xff, 0xfb], -5),
            (&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb], -5),
        ];
        for &(bytes, v) in cases {
            assert_eq!(Reader::new(bytes).read_i64(), Ok(v), "{bytes:x?}");
        }
    }

    #[test]
    fn unsigned_ints() {
        let (buf, n) = enc(|w| w.write_uint(u64::MAX));
        assert_eq!(
            &buf[..n],
            &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.read_i64(), Err(Error::OutOfRange));
        assert_eq!(r.position(), 0, "a failed read consumes nothing");
        assert_eq!(r.read_value(), Ok(Value::UInt(u64::MAX)));
        assert_eq!(Reader::new(&buf[..n]).read_u64(), Ok(u64::MAX));
        assert_eq!(
            Reader::new(&[0xd0, 0xff]).read_u64(),
            Err(Error::OutOfRange)
        );
    }

    #[test]
    fn scalars_round_trip() {
        let (buf, n) = enc(|w| {
            w.write_nil()?;
            w.write_bool(true)?;
            w.write_bool(false)?;
            w.write_f64(-2.25)?;
            w.write_f32(0.5)?;
            w.write_f64(f64::INFINITY)
        });
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.read_nil(), Ok(()));
        assert_eq!(r.read_bool(), Ok(true));
        assert_eq!(r.read_bool(), Ok(false));
        assert_eq!(r.read_f64(), Ok(-2.25));
        assert_eq!(r.read_value(), Ok(Value::F32(0.5)));
        assert_eq!(r.read_f64(), Ok(f64::INFINITY));
        assert!(r.is_empty());
        assert_eq!(r.read_nil(), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn str_lengths_pick_their_header() {
        let mut big = [0u8; 70000];
        let mut text = [b'x'; 70000];
        text[0] = b'y';
        for &(len, head) in &[
            (0usize, 1usize),
            (31, 1),
            (32, 2),
            (255, 2),
            (256, 3),
            (65535, 3),
            (65536, 5),
        ] {
            let s = core::str::from_utf8(&text[..len]).unwrap();
            let mut w = Writer::new(&mut big);
            w.write_str(s).unwrap();
            assert_eq!(w.len(), head + len, "str of {len}");
            let bytes = w.into_bytes();
            let mut r = Reader::new(bytes);
            assert_eq!(r.read_str(), Ok(s));
            assert!(r.is_empty());
        }
        let (buf, n) = enc(|w| w.write_str("héllo"));
        assert_eq!(buf[0], 0xa6);
        assert_eq!(Reader::new(&buf[..n]).read_str(), Ok("héllo"));
    }

    #[test]
    fn bin_lengths_pick_their_header() {
        let mut big = [0u8; 70000];
        let data = [7u8; 70000];
        for &(len, head, marker) in &[
            (0usize, 2usize, 0xc4u8),
            (255, 2, 0xc4),
            (256, 3, 0xc5),
            (65536, 5, 0xc6),
        ] {
            let mut w = Writer::new(&mut big);
            w.write_bin(&data[..len]).unwrap();
            assert_eq!(w.len(), head + len);
            let bytes = w.into_bytes();
            assert_eq!(bytes[0], marker);
            assert_eq!(Reader::new(bytes).read_bin(), Ok(&data[..len]));
        }
    }

    #[test]
    fn ext_round_trips() {
        for &len in &[1usize, 2, 3, 4, 8, 16, 17, 300] {
            let data = [0x5au8; 300];
            let mut buf = [0u8; 320];
            let mut w = Writer::new(&mut buf);
            w.write_ext(-3, &data[..len]).unwrap();
            let bytes = w.into_bytes();
            let mut r = Reader::new(bytes);
            assert_eq!(r.read_ext(), Ok((-3, &data[..len])), "ext of {len}");
            assert!(r.is_empty());
        }
    }

    #[test]
    fn containers() {
        let (buf, n) = enc(|w| {
            w.write_array_len(3)?;
            w.write_int(1)?;
            w.write_map_len(1)?;
            w.write_str("k")?;
            w.write_bin(&[1, 2])?;
            w.write_array_len(16)?;
            w.write_map_len(70000)
        });
        assert_eq!(
            &buf[..n],
            &[0x93, 0x01, 0x81, 0xa1, b'k', 0xc4, 2, 1, 2, 0xdc, 0, 16, 0xdf, 0, 1, 0x11, 0x70]
        );
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.read_array_len(), Ok(3));
        assert_eq!(r.read_i64(), Ok(1));
        assert_eq!(r.read_map_len(), Ok(1));
        assert_eq!(r.read_str(), Ok("k"));
        assert_eq!(r.read_bin(), Ok(&[1u8, 2][..]));
        assert_eq!(r.read_array_len(), Ok(16));
        assert_eq!(r.read_map_len(), Ok(70000));
        assert!(r.is_empty());
    }

    #[test]
    fn wrong_type_consumes_nothing() {
        let mut r = Reader::new(&[0xa1, b'a']);
        assert_eq!(r.read_i64(), Err(Error::WrongType));
        assert_eq!(r.read_array_len(), Err(Error::WrongType));
        assert_eq!(r.read_bin(), Err(Error::WrongType));
        assert_eq!(r.position(), 0);
        assert_eq!(r.read_str(), Ok("a"));
    }

    #[test]
    fn bad_input() {
        assert_eq!(Reader::new(&[0xc1]).read_value(), Err(Error::Reserved));
        assert_eq!(
            Reader::new(&[0xa2, b'a']).read_str(),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            Reader::new(&[0xcd, 0x01]).read_i64(),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(
            Reader::new(&[0xa2, 0xff, 0xfe]).read_str(),
            Err(Error::InvalidUtf8)
        );
        assert_eq!(
            Reader::new(&[0xdb, 0xff, 0xff, 0xff, 0xff]).read_str(),
            Err(Error::UnexpectedEnd)
        );
        assert_eq!(Reader::new(&[]).read_value(), Err(Error::UnexpectedEnd));
    }

    #[test]
    fn skip_whole_values() {
        let (buf, n) = enc(|w| {
            w.write_map_len(2)?;
            w.write_str("a")?;
            w.write_array_len(2)?;
            w.write_int(-1000)?;
            w.write_map_len(0)?;
            w.write_str("b")?;
            w.write_nil()?;
            w.write_int(9)
        });
        let mut r = Reader::new(&buf[..n]);
        let skipped = r.skip().unwrap();
        assert_eq!(skipped.len(), n - 1);
        assert_eq!(r.read_i64(), Ok(9));
        // Truncated containers are refused, consuming nothing.
        let mut r = Reader::new(&[0x92, 0x01]);
        assert_eq!(r.skip(), Err(Error::UnexpectedEnd));
        assert_eq!(r.position(), 0);
        let mut r = Reader::new(&[0xdf, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.skip(), Err(Error::UnexpectedEnd));
        let mut r = Reader::new(&[0x91, 0xc1]);
        assert_eq!(r.skip(), Err(Error::Reserved));
        assert_eq!(r.position(), 0);
    }

    #[test]
    fn full_buffer_writes_nothing() {
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        w.write_int(1).unwrap();
        assert_eq!(w.write_str("abcd"), Err(Error::BufferFull));
        assert_eq!(w.write_int(1 << 40), Err(Error::BufferFull));
        assert_eq!(w.write_f64(1.0), Err(Error::BufferFull));
        assert_eq!(w.len(), 1);
        w.write_str("ab").unwrap();
        assert_eq!(w.as_bytes(), &[0x01, 0xa2, b'a', b'b']);
        assert_eq!(w.write_nil(), Err(Error::BufferFull));
        let mut empty = [0u8; 0];
        assert_eq!(Writer::new(&mut empty).write_nil(), Err(Error::BufferFull));
    }

    #[test]
    fn raw_splices_encoded_values() {
        let (inner, m) = enc(|w| w.write_str("x"));
        let (buf, n) = enc(|w| {
            w.write_array_len(1)?;
            w.write_raw(&inner[..m])
        });
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.read_array_len(), Ok(1));
        assert_eq!(r.read_str(), Ok("x"));
    }
}
