// SPDX-License-Identifier: GPL-2.0

//! Parsing and printing of bitrates, sizes and durations.

use std::time::Duration;

/// A bitrate in bits per second: a decimal number with an optional SI
/// suffix `k`, `M` or `G` (case-insensitive, powers of 1000), such as
/// `2000000`, `500k` or `3.75M`.
pub(crate) fn parse_bitrate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        Some((i, 'g' | 'G')) => (&t[..i], 1e9),
        _ => (t, 1.0),
    };
    let bad = || format!("{s:?} is not a bitrate (examples: 2000000, 500k, 3.75M)");
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bits = (v * mult).round();
    if !(1.0..=1e12).contains(&bits) {
        return Err(format!("bitrate {s:?} is out of range (1 b/s to 1000G)"));
    }
    Ok(bits as u64)
}

/// A duration in seconds, fractions allowed: `10`, `0.5`.
pub(crate) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 1e9 {
        return Err(format!("{s:?} seconds is out of range"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A duration: a number with a unit `ns`, `us`, `ms` or `s` (`20ms`,
/// `1.5s`), or plain seconds (`0.02`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = [("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1.0)]
        .iter()
        .find_map(|&(u, m)| t.strip_suffix(u).map(|n| (n, m)))
        .unwrap_or((t, 1.0));
    let bad = || format!("{s:?} is not a duration (examples: 20ms, 500us, 0.1s)");
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let secs = v * unit;
    if !secs.is_finite() || secs > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `bits` per second for people: `3.75 Mb/s`.
pub(crate) fn human_rate(bits: f64) -> String {
    if bits >= 1e9 {
        format!("{:.2} Gb/s", bits / 1e9)
    } else if bits >= 1e6 {
        format!("{:.2} Mb/s", bits / 1e6)
    } else {
        format!("{:.1} kb/s", bits / 1e3)
    }
}

/// `bytes` for people: `1.6 MB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.2} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("2000000"), Ok(2_000_000));
        assert_eq!(parse_bitrate("500k"), Ok(500_000));
        assert_eq!(parse_bitrate("500K"), Ok(500_000));
        assert_eq!(parse_bitrate("3.75M"), Ok(3_750_000));
        assert_eq!(parse_bitrate("3.75m"), Ok(3_750_000));
        assert_eq!(parse_bitrate("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bitrate("0.5k"), Ok(500));
        for bad in ["", "M", "fast", "-1M", "1e6", "2 M", "1.2.3k", "3Mb"] {
            assert!(parse_bitrate(bad).is_err(), "{bad}");
        }
        assert!(parse_bitrate("0").unwrap_err().contains("out of range"));
        assert!(parse_bitrate("2000G").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["", "0", "-1", "x", "inf", "NaN"] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn human() {
        assert_eq!(human_rate(3_750_000.0), "3.75 Mb/s");
        assert_eq!(human_rate(500_000.0), "500.0 kb/s");
        assert_eq!(human_bytes(1_600_000), "1.6 MB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
