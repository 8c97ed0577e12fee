//! The OpenTelemetry sampling threshold in a span's W3C `tracestate`.
//!
//! OpenTelemetry's probability sampling ("TraceState: Probability Sampling" in the
//! specification) records in the `ot` member of the trace state the rejection threshold `th`
//! the span was sampled with: 1 to 14 lowercase hex digits, right-padded with zeros to 14
//! (56 bits), `T`. The span was kept with probability `(2^56 - T) / 2^56`; `th:0` means it was
//! always kept. For example `ot=th:c` is `T = 0xc0000000000000`, a probability of 1/4.
//!
//! The trace state is a comma-separated list of `key=value` members (optional spaces or tabs
//! around the commas); the `ot` value is a `;`-separated list of `key:value` sub-keys. It is
//! read in place, without allocating, and only parsed when it holds `ot=` at all (most trace
//! states are empty or carry other vendors' members only).

/// Hex digits of a full threshold (56 bits).
const DIGITS: usize = 14;

/// The sampling threshold `T` in trace state `ts`; `None` when it has no `ot` member, the
/// member no `th`, or the `th` is not 1 to 14 lowercase hex digits.
pub(crate) fn sampling_threshold(ts: &[u8]) -> Option<u64> {
    if !contains_ot(ts) {
        return None;
    }
    let member = ts
        .split(|&b| b == b',')
        .map(trim)
        .find_map(|m| m.strip_prefix(b"ot="))?;
    let th = member
        .split(|&b| b == b';')
        .find_map(|kv| kv.strip_prefix(b"th:"))?;
    parse_threshold(th)
}

/// Whether `ts` holds `ot=` anywhere (the quick test before any parsing).
#[inline]
fn contains_ot(ts: &[u8]) -> bool {
    ts.windows(3).any(|w| w == b"ot=")
}

/// `th`'s value: 1 to 14 lowercase hex digits, right-padded with zeros to 14.
fn parse_threshold(th: &[u8]) -> Option<u64> {
    if th.is_empty() || th.len() > DIGITS {
        return None;
    }
    let mut v = 0u64;
    for &c in th {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some(v << (4 * (DIGITS - th.len())))
}

/// `m` without the optional whitespace (spaces, tabs) around a list member.
fn trim(m: &[u8]) -> &[u8] {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = m.iter().position(|b| !ows(b)).unwrap_or(m.len());
    let end = m.iter().rposition(|b| !ows(b)).map_or(start, |e| e + 1);
    &m[start..end]
}
