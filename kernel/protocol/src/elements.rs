//! Counting a MessagePack body's values before decoding it: a decoded value
//! costs tens of bytes however small its encoding (a `nil` is one byte), so
//! a request's values are capped ([`crate::MAX_ELEMENTS`]) before any is
//! allocated, keeping decoding within a constant factor of the body.

/// The number of values in `body` (every array element, map key and map
/// value, and the top value), counting stops past `max`: `Err(n)` with
/// `n > max` when there are more. Malformed bytes are left to the decoder,
/// which reports them: counting stops there with `Ok`.
pub fn count_values(body: &[u8], max: u64) -> Result<u64, u64> {
    let mut at = 0usize;
    let mut pending: u64 = 1;
    let mut seen: u64 = 0;
    while pending > 0 {
        let Some(&marker) = body.get(at) else {
            return Ok(seen);
        };
        at += 1;
        pending -= 1;
        seen += 1;
        if seen > max {
            return Err(seen);
        }
        // (bytes to skip, values that follow) for each marker (the
        // MessagePack spec's table, in byte order).
        let (skip, children) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
            0x90..=0x9f => (0, u64::from(marker & 0x0f)),
            0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
            0xc4 | 0xd9 => (length(body, &mut at, 1), 0),
            0xc5 | 0xda => (length(body, &mut at, 2), 0),
            0xc6 | 0xdb => (length(body, &mut at, 4), 0),
            0xc7 => (length(body, &mut at, 1) + 1, 0),
            0xc8 => (length(body, &mut at, 2) + 1, 0),
            0xc9 => (length(body, &mut at, 4) + 1, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xca | 0xce | 0xd2 => (4, 0),
            0xcb | 0xcf | 0xd3 => (8, 0),
            0xd4 => (2, 0),
            0xd5 => (3, 0),
            0xd6 => (5, 0),
            0xd7 => (9, 0),
            0xd8 => (17, 0),
            0xdc => (0, length(body, &mut at, 2)),
            0xdd => (0, length(body, &mut at, 4)),
            0xde => (0, 2 * length(body, &mut at, 2)),
            0xdf => (0, 2 * length(body, &mut at, 4)),
            // 0xc1 is never used.
            _ => return Ok(seen),
        };
        match usize::try_from(skip).ok().and_then(|s| at.checked_add(s)) {
            Some(next) if next <= body.len() => at = next,
            _ => return Ok(seen),
        }
        pending += children;
    }
    Ok(seen)
}

/// A big-endian length of `bytes` bytes at `at` (0 when the body ends
/// first: the decoder reports the truncation).
fn length(body: &[u8], at: &mut usize, bytes: usize) -> u64 {
    let Some(head) = body.get(*at..*at + bytes) else {
        *at = body.len();
        return 0;
    };
    *at += bytes;
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
