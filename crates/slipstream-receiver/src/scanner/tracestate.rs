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
//! read in place in one pass, without allocating; an empty one (most spans') is not looked
//! at.

/// Hex digits of a full threshold (56 bits).
const DIGITS: usize = 14;

/// The sampling threshold `T` in trace state `ts`; `None` when it has no `ot` member, the
/// member no `th`, or the `th` is not 1 to 14 lowercase hex digits. One pass over the members
/// up to the `ot` one, then over its sub-keys.
pub(crate) fn sampling_threshold(ts: &[u8]) -> Option<u64> {
    let mut rest = ts;
    loop {
        let start = rest.iter().position(|&b| !is_ows(b))?;
        rest = &rest[start..];
        let end = rest.iter().position(|&b| b == b',');
        if let Some(ot) = rest.strip_prefix(b"ot=") {
            let ot = trim_end(&ot[..end.map_or(ot.len(), |e| e - 3)]);
            return ot
                .split(|&b| b == b';')
                .find_map(|kv| kv.strip_prefix(b"th:"))
                .and_then(parse_threshold);
        }
        rest = &rest[end? + 1..];
    }
}

/// Optional whitespace around a list member.
fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `m` without the optional whitespace before the comma that ends a member.
fn trim_end(m: &[u8]) -> &[u8] {
    let end = m.iter().rposition(|&b| !is_ows(b)).map_or(0, |e| e + 1);
    &m[..end]
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
