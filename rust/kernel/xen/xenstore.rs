// SPDX-License-Identifier: GPL-2.0

//! Xenstore values.
//!
//! Xenstore nodes hold strings. A value written by the other domain (or by its toolstack) is
//! untrusted: the functions here parse it strictly and check its range, so that `0`, numbers
//! that do not fit and garbage are errors the caller sees. `sscanf("%u")`, which the C drivers
//! use through `xenbus_scanf()`, accepts `"12abc"` as 12 and `"-1"` as `UINT_MAX`.
//!
//! Values are given without their terminating NUL, as `&[u8]` (`CStr::to_bytes()`).
//!
//! C header: [`include/xen/xenbus.h`](srctree/include/xen/xenbus.h)

use crate::prelude::*;
use core::ops::RangeInclusive;

/// Parses a decimal number: one or more ASCII digits, nothing else (no sign, spaces, prefix or
/// trailing characters). Leading zeros are allowed.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number, with [`ERANGE`] if the number does
/// not fit in `T`.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_uint;
///
/// assert_eq!(parse_uint::<u32>(b"42"), Ok(42));
/// assert_eq!(parse_uint::<u8>(b"256"), Err(ERANGE));
/// assert_eq!(parse_uint::<u32>(b"12abc"), Err(EINVAL));
/// assert_eq!(parse_uint::<u32>(b"-1"), Err(EINVAL));
/// ```
pub fn parse_uint<T: TryFrom<u64>>(value: &[u8]) -> Result<T> {
    if value.is_empty() {
        return Err(EINVAL);
    }
    let mut number = 0u64;
    let mut overflow = false;
    for &c in value {
        if !c.is_ascii_digit() {
            return Err(EINVAL);
        }
        // Keep checking the remaining characters after an overflow: garbage is `EINVAL`.
        match number
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
        {
            Some(n) => number = n,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(ERANGE);
    }
    T::try_from(number).map_err(|_| ERANGE)
}

/// Parses a decimal number like [`parse_uint`] and checks that it lies in `range`.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number, with [`ERANGE`] if the number is
/// outside `range`.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_in_range;
///
/// // `multi-queue-num-queues` written by a frontend, with at most 8 queues.
/// assert_eq!(parse_in_range(b"4", 1..=8u32), Ok(4));
/// assert_eq!(parse_in_range(b"0", 1..=8u32), Err(ERANGE));
/// assert_eq!(parse_in_range(b"4294967297", 1..=8u32), Err(ERANGE));
/// ```
pub fn parse_in_range<T>(value: &[u8], range: RangeInclusive<T>) -> Result<T>
where
    T: TryFrom<u64> + PartialOrd,
{
    let number = parse_uint::<T>(value)?;
    if !range.contains(&number) {
        return Err(ERANGE);
    }
    Ok(number)
}

/// Parses a boolean node, such as `feature-sg`: `0` is false and any other number is true, as
/// the C drivers read them.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number. A number too large for 64 bits is
/// still true.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_bool;
///
/// assert_eq!(parse_bool(b"1"), Ok(true));
/// assert_eq!(parse_bool(b"0"), Ok(false));
/// assert_eq!(parse_bool(b"yes"), Err(EINVAL));
/// ```
pub fn parse_bool(value: &[u8]) -> Result<bool> {
    match parse_uint::<u64>(value) {
        Ok(number) => Ok(number != 0),
        Err(e) if e == ERANGE => Ok(true),
        Err(e) => Err(e),
    }
}

/// Parses an Ethernet address, such as the `mac` node: six bytes of one or two hexadecimal digits
/// each, separated by colons.
///
/// Fails with [`EINVAL`] for anything else. The address is not checked further (it may be zero,
/// or multicast).
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_mac;
///
/// assert_eq!(parse_mac(b"00:16:3e:0a:Bc:1"), Ok([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0x01]));
/// assert_eq!(parse_mac(b"00:16:3e:0a:bc"), Err(EINVAL));
/// assert_eq!(parse_mac(b"00:16:3e:0a:bc:100"), Err(EINVAL));
/// ```
pub fn parse_mac(value: &[u8]) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = value.split(|&c| c == b':');
    for byte in &mut mac {
        let part = parts.next().ok_or(EINVAL)?;
        if part.is_empty() || part.len() > 2 {
            return Err(EINVAL);
        }
        for &c in part {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(EINVAL),
            };
            *byte = (*byte << 4) | digit;
        }
    }
    if parts.next().is_some() {
        return Err(EINVAL);
    }
    Ok(mac)
}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_xenstore)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_uint::<u32>(b"0"), Ok(0));
        assert_eq!(parse_uint::<u32>(b"007"), Ok(7));
        assert_eq!(parse_uint::<u32>(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_uint::<u32>(b"4294967296"), Err(ERANGE));
        assert_eq!(parse_uint::<u64>(b"4294967296"), Ok(1 << 32));
        assert_eq!(parse_uint::<u64>(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_uint::<u64>(b"18446744073709551616"), Err(ERANGE));
        assert_eq!(
            parse_uint::<u64>(b"99999999999999999999999999999"),
            Err(ERANGE)
        );
        assert_eq!(parse_uint::<u16>(b"65536"), Err(ERANGE));
        assert_eq!(parse_uint::<u8>(b"255"), Ok(255));
        let zeros = [b'0'; 100];
        assert_eq!(parse_uint::<u8>(&zeros), Ok(0));
    }

    #[test]
    fn numbers_garbage() {
        let garbage: [&[u8]; 14] = [
            b"", b"-1", b"+1", b" 1", b"1 ", b"1\n", b"1\0", b"0x10", b"12abc", b"1.5", b"\xff",
            b"one", b"1e3", b"\x001",
        ];
        for value in garbage {
            assert_eq!(parse_uint::<u32>(value), Err(EINVAL));
        }
        // Garbage after an overflow is still garbage.
        assert_eq!(parse_uint::<u8>(b"99999999999999999999999x"), Err(EINVAL));
    }

    #[test]
    fn in_range() {
        assert_eq!(parse_in_range(b"1", 1..=8u32), Ok(1));
        assert_eq!(parse_in_range(b"8", 1..=8u32), Ok(8));
        assert_eq!(parse_in_range(b"0", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"9", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"4294967296", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"x", 1..=8u32), Err(EINVAL));
        assert_eq!(parse_in_range(b"32767", 0..=0x7fffu16), Ok(0x7fff));
        assert_eq!(parse_in_range(b"32768", 0..=0x7fffu16), Err(ERANGE));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(b"0"), Ok(false));
        assert_eq!(parse_bool(b"00"), Ok(false));
        assert_eq!(parse_bool(b"1"), Ok(true));
        assert_eq!(parse_bool(b"2"), Ok(true));
        assert_eq!(parse_bool(b"99999999999999999999999"), Ok(true));
        assert_eq!(parse_bool(b""), Err(EINVAL));
        assert_eq!(parse_bool(b"true"), Err(EINVAL));
        assert_eq!(parse_bool(b"1 "), Err(EINVAL));
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            parse_mac(b"00:16:3e:5f:a0:ff"),
            Ok([0x00, 0x16, 0x3e, 0x5f, 0xa0, 0xff])
        );
        assert_eq!(parse_mac(b"0:1:2:3:4:5"), Ok([0, 1, 2, 3, 4, 5]));
        assert_eq!(parse_mac(b"FF:FF:FF:FF:FF:FF"), Ok([0xff; 6]));
        let garbage: [&[u8]; 11] = [
            b"",
            b":::::",
            b"00:16:3e:5f:a0",
            b"00:16:3e:5f:a0:",
            b"00:16:3e:5f:a0:ff:",
            b"00:16:3e:5f:a0:ff:00",
            b"000:16:3e:5f:a0:ff",
            b"00:16:3e:5f:a0:fff",
            b"0g:16:3e:5f:a0:ff",
            b"00-16-3e-5f-a0-ff",
            b" 00:16:3e:5f:a0:ff",
        ];
        for value in garbage {
            assert_eq!(parse_mac(value), Err(EINVAL));
        }
    }
}
