//! Times in the report: unix microseconds in, UTC text out, and the `--since` / `--until`
//! spellings the CLI and the API accept (the same as `airlock sessions list --since`).

const US: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read time `{0}`: use RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23), or a duration ago (15m, 2h, 7d)")]
pub struct BadTime(pub String);

/// `2026-11-23T10:00:00Z`, `2026-11-23`, or a duration before `now_us`: `90s`, `15m`, `2h`, `7d`.
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, BadTime> {
    let bad = || BadTime(s.to_owned());
    if let Some(n) = s.strip_suffix(['s', 'm', 'h', 'd']) {
        if let Ok(n) = n.parse::<i64>() {
            let unit = match s.as_bytes().last() {
                Some(b's') => 1,
                Some(b'm') => 60,
                Some(b'h') => 3600,
                _ => 86_400,
            };
            return Ok(now_us.saturating_sub(n.saturating_mul(unit).saturating_mul(US)));
        }
    }
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let t: Vec<i64> = time
        .trim_end_matches('Z')
        .split(':')
        .map(|p| {
            p.split('.')
                .next()
                .unwrap_or("0")
                .parse()
                .map_err(|_| bad())
        })
        .collect::<Result<_, _>>()?;
    let (&[y, mo, day], &[h, mi, sec]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    Ok((days_from_civil(y, mo, day) * 86_400 + h * 3600 + mi * 60 + sec) * US)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23 10:20:30` (UTC).
pub fn fmt_time(us: i64) -> String {
    let secs = us.div_euclid(US);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        fmt_date(us),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `2026-11-23` (UTC).
pub fn fmt_date(us: i64) -> String {
    let days = us.div_euclid(US).div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}")
}

/// `45s`, `30m`, `2h`, `3d`, `1d 4h` — for grant durations and ages.
pub fn fmt_duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 if secs.is_multiple_of(3600) => format!("{}h", secs / 3600),
        3600..86_400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ if secs.is_multiple_of(86_400) => format!("{}d", secs / 86_400),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// Whole days between two instants (0 if `to` is before `from`).
pub fn days_between(from_us: i64, to_us: i64) -> u64 {
    u64::try_from(to_us.saturating_sub(from_us) / (86_400 * US)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_reject_nonsense() {
        let us = parse_time("2026-11-23T10:20:30Z", 0).unwrap();
        assert_eq!(fmt_time(us), "2026-11-23 10:20:30");
        assert_eq!(
            fmt_time(parse_time("2024-02-29", 0).unwrap()),
            "2024-02-29 00:00:00"
        );
        assert_eq!(fmt_time(0), "1970-01-01 00:00:00");
        assert_eq!(parse_time("2h", 10 * 3600 * US).unwrap(), 8 * 3600 * US);
        assert_eq!(parse_time("7d", 7 * 86_400 * US).unwrap(), 0);
        for bad in ["yesterday", "2026-13-01", "2026-11-23T25:00:00Z", "", "5w"] {
            assert!(parse_time(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(fmt_duration(45), "45s");
        assert_eq!(fmt_duration(1800), "30m");
        assert_eq!(fmt_duration(7200), "2h");
        assert_eq!(fmt_duration(5400), "1h 30m");
        assert_eq!(fmt_duration(86_400 * 3), "3d");
        assert_eq!(fmt_duration(86_400 + 4 * 3600), "1d 4h");
        assert_eq!(days_between(0, 86_400 * US * 2 + 5), 2);
        assert_eq!(days_between(10, 0), 0);
    }
}
