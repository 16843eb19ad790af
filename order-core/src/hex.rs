//! Hex digits, for ids, key secrets, trace ids, digests, cursors and keys: written in
//! lowercase, read in either case.

/// Lowercase hex digits of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The `N` bytes that `text`, exactly `2 × N` hex digits (either case), spells; `None` for
/// anything else.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    let mut out = [0_u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_read_back_as_written_and_nothing_else_reads() {
        let bytes = [0x00, 0x7f, 0xa5, 0xff];
        assert_eq!(decode::<4>(&encode(&bytes)), Some(bytes));
        assert_eq!(decode::<4>("007FA5FF"), Some(bytes), "either case");
        for bad in [
            "",
            "007fa5f",
            "007fa5ff0",
            "007fa5fg",
            "+07fa5ff",
            " 07fa5ff",
        ] {
            assert_eq!(decode::<4>(bad), None, "{bad:?}");
        }
    }
}
