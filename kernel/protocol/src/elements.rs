//! Counting a MessagePack body's values before decoding it: a decoded value
//! costs tens of bytes however small its encoding (a `nil` is one byte), so
//! a request's values are capped ([`crate::MAX_ELEMENTS`]) before any is
//! allocated, keeping decoding within a constant factor of the body.

use rmp::Marker;

/// The number of values in `body` (every array element, map key and map
/// value, and the top value), counting stops past `max`: `Err(n)` with
/// `n > max` when there are more. Malformed bytes are left to the decoder,
/// which reports them: counting stops there with `Ok`.
pub fn count_values(mut body: &[u8], max: u64) -> Result<u64, u64> {
    let mut pending: u64 = 1;
    let mut seen: u64 = 0;
    while pending > 0 {
        let Ok(marker) = rmp::decode::read_marker(&mut body) else {
            return Ok(seen);
        };
        pending -= 1;
        seen += 1;
        if seen > max {
            return Err(seen);
        }
        let (skip, children) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (u64::from(n), 0),
            Marker::Str8 | Marker::Bin8 => (length(&mut body, 1), 0),
            Marker::Str16 | Marker::Bin16 => (length(&mut body, 2), 0),
            Marker::Str32 | Marker::Bin32 => (length(&mut body, 4), 0),
            Marker::FixArray(n) => (0, u64::from(n)),
            Marker::Array16 => (0, length(&mut body, 2)),
            Marker::Array32 => (0, length(&mut body, 4)),
            Marker::FixMap(n) => (0, 2 * u64::from(n)),
            Marker::Map16 => (0, 2 * length(&mut body, 2)),
            Marker::Map32 => (0, 2 * length(&mut body, 4)),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (length(&mut body, 1) + 1, 0),
            Marker::Ext16 => (length(&mut body, 2) + 1, 0),
            Marker::Ext32 => (length(&mut body, 4) + 1, 0),
            Marker::Reserved => return Ok(seen),
        };
        let Ok(skip) = usize::try_from(skip) else {
            return Ok(seen);
        };
        if skip > body.len() {
            return Ok(seen);
        }
        body = &body[skip..];
        pending += children;
    }
    Ok(seen)
}

/// A big-endian length of `bytes` bytes (0 when the body ends first: the
/// decoder reports the truncation).
fn length(body: &mut &[u8], bytes: usize) -> u64 {
    if body.len() < bytes {
        *body = &[];
        return 0;
    }
    let (head, rest) = body.split_at(bytes);
    *body = rest;
    head.iter().fold(0u64, |n, b| n << 8 | u64::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn encode(v: &Value) -> Vec<u8> {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, v).unwrap();
        buf
    }

    #[test]
    fn counts_every_value_of_every_shape() {
        let v = Value::Map(vec![
            (Value::from("a"), Value::Array(vec![Value::Nil; 3])),
            (Value::from("b"), Value::Binary(vec![0; 300])),
            (Value::from("c"), Value::from(u64::MAX)),
            (Value::from("d"), Value::Ext(1, vec![0; 70_000])),
            (Value::from("e"), Value::from(1.5)),
        ]);
        // the map, 5 keys, the array and its 3 nils, bin, int, ext, float
        assert_eq!(count_values(&encode(&v), 100), Ok(14));
    }

    #[test]
    fn stops_past_the_limit_without_reading_further() {
        let many = Value::Array(vec![Value::Nil; 1000]);
        assert_eq!(count_values(&encode(&many), 10), Err(11));
        // A header that claims more than the body holds is the decoder's to report.
        assert_eq!(count_values(&[0xdd, 0xff, 0xff, 0xff, 0xff], 10), Ok(1));
        assert_eq!(count_values(&[0xc1], 10), Ok(1));
    }
}
