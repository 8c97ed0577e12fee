//! Validates encoded `ExportMetricsServiceRequest`s and `ExportLogsServiceRequest`s in place
//! and counts their data points and log records, without building the prost tree.
//!
//! Metrics and logs are forwarded as the bytes that arrived; nothing reads their content, so a
//! full decode would only allocate (a 16 MiB body of empty log records is 8 million
//! `LogRecord`s, about 1.5 GiB). The walk reads every field of every message the OTLP schema
//! declares, with prost's rules, so it accepts what a full decode accepts and refuses what it
//! refuses:
//!
//! - a known field must come with its declared wire type; repeated numbers may be packed or
//!   not; packed runs must hold whole values;
//! - strings must be UTF-8; varints at most 10 bytes; lengths within their message;
//! - unknown fields are skipped by wire type, groups within prost's nesting limit;
//! - a `oneof` that appears more than once keeps its last member (merged with the one before
//!   when it is the same member), so data points are counted as the decoded tree holds them.
//!
//! Two differences, both deliberate:
//!
//! - `AnyValue`s (log bodies and attribute values) may nest [`MAX_ANY_VALUE_DEPTH`] levels
//!   deep, where prost stops at its recursion limit of 100 messages (about 48 levels of arrays
//!   in a log body): valid deep values are forwarded, and past the cap the error says so
//!   ([`ScanError::NestingLimit`]);
//! - ids a spec-following downstream refuses are refused here ([`ScanError::InvalidId`]): a log
//!   record's `trace_id` and `span_id`, and an exemplar's, when not empty, must be 16 and 8
//!   bytes (the last occurrence of the field counts, as in the decoded tree).

use super::ScanError;
use slipstream_core::wire::{I32, I64, LEN, RECURSION_LIMIT, Reader, VARINT, WireError};

/// How deep `AnyValue`s may nest (a value holding an array of values is two levels).
pub const MAX_ANY_VALUE_DEPTH: u32 = 128;

// === message names, as errors name them ===

const METRICS_REQUEST: &str = "ExportMetricsServiceRequest";
const LOGS_REQUEST: &str = "ExportLogsServiceRequest";
const RESOURCE_METRICS: &str = "ResourceMetrics";
const RESOURCE_LOGS: &str = "ResourceLogs";
const SCOPE_METRICS: &str = "ScopeMetrics";
const SCOPE_LOGS: &str = "ScopeLogs";
const RESOURCE: &str = "Resource";
const ENTITY_REF: &str = "EntityRef";
const SCOPE: &str = "InstrumentationScope";
const METRIC: &str = "Metric";
const POINTS: &str = "Gauge/Sum/Histogram/ExponentialHistogram/Summary";
const NUMBER_POINT: &str = "NumberDataPoint";
const HISTOGRAM_POINT: &str = "HistogramDataPoint";
const EXP_POINT: &str = "ExponentialHistogramDataPoint";
const BUCKETS: &str = "Buckets";
const SUMMARY_POINT: &str = "SummaryDataPoint";
const QUANTILE: &str = "ValueAtQuantile";
const EXEMPLAR: &str = "Exemplar";
const LOG_RECORD: &str = "LogRecord";
const KEY_VALUE: &str = "KeyValue";
const ANY_VALUE: &str = "AnyValue";
const VALUES: &str = "ArrayValue/KeyValueList";

/// The skip budget of unknown groups in a message `depth` levels below the request.
fn budget(depth: u32) -> u32 {
    RECURSION_LIMIT.saturating_sub(depth).max(1)
}

/// Walks an encoded `ExportMetricsServiceRequest`; returns its number of data points.
pub fn walk_metrics(buf: &[u8]) -> Result<u64, ScanError> {
    walk(buf, &METRICS, metric)
}

/// Walks an encoded `ExportLogsServiceRequest`; returns its number of log records.
pub fn walk_logs(buf: &[u8]) -> Result<u64, ScanError> {
    walk(buf, &LOGS, |r| log_record(r).map(|()| 1))
}

// === the envelope both signals share ===

/// The names of a signal's three envelope messages: the request, its per-resource and its
/// per-scope message. Each holds the next in field 2 (the request: field 1), a `Resource` or
/// `InstrumentationScope` in field 1 and a schema URL in field 3.
#[derive(Debug)]
struct Envelope {
    request: &'static str,
    resource: &'static str,
    scope: &'static str,
}

const METRICS: Envelope = Envelope {
    request: METRICS_REQUEST,
    resource: RESOURCE_METRICS,
    scope: SCOPE_METRICS,
};

const LOGS: Envelope = Envelope {
    request: LOGS_REQUEST,
    resource: RESOURCE_LOGS,
    scope: SCOPE_LOGS,
};

/// Walks a request of `env`'s signal; `item` validates one item of a scope message (depth 3)
/// and says how many it counts for.
fn walk<F>(buf: &[u8], env: &Envelope, item: F) -> Result<u64, ScanError>
where
    F: Fn(Reader<'_>) -> Result<u64, ScanError> + Copy,
{
    let mut n = 0u64;
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(env.request)?;
        if field == 1 {
            Reader::expect(wt, LEN, field, env.request, at)?;
            n += per_resource(r.message()?, env, item)?;
        } else {
            r.skip(field, wt, at, budget(0))?;
        }
    }
    Ok(n)
}

/// `ResourceMetrics` / `ResourceLogs` (depth 1).
fn per_resource<F>(mut r: Reader<'_>, env: &Envelope, item: F) -> Result<u64, ScanError>
where
    F: Fn(Reader<'_>) -> Result<u64, ScanError> + Copy,
{
    let name = env.resource;
    let mut n = 0;
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(name)?;
        match field {
            1 => resource(embedded(&mut r, wt, field, name, at)?, 2)?,
            2 => n += per_scope(embedded(&mut r, wt, field, name, at)?, env, item)?,
            3 => string(&mut r, wt, field, name, at)?,
            _ => r.skip(field, wt, at, budget(1))?,
        }
    }
    Ok(n)
}

/// `ScopeMetrics` / `ScopeLogs` (depth 2).
fn per_scope<F>(mut r: Reader<'_>, env: &Envelope, item: F) -> Result<u64, ScanError>
where
    F: Fn(Reader<'_>) -> Result<u64, ScanError> + Copy,
{
    let name = env.scope;
    let mut n = 0;
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(name)?;
        match field {
            1 => scope(embedded(&mut r, wt, field, name, at)?, 3)?,
            2 => n += item(embedded(&mut r, wt, field, name, at)?)?,
            3 => string(&mut r, wt, field, name, at)?,
            _ => r.skip(field, wt, at, budget(2))?,
        }
    }
    Ok(n)
}

// === shared messages ===

/// A string field: its bytes must be UTF-8.
fn string(
    r: &mut Reader<'_>,
    wt: u8,
    field: u32,
    message: &'static str,
    at: usize,
) -> Result<(), ScanError> {
    Reader::expect(wt, LEN, field, message, at)?;
    let (s, offset) = r.bytes()?;
    match std::str::from_utf8(s) {
        Ok(_) => Ok(()),
        Err(_) => Err(ScanError::InvalidUtf8 {
            what: format!("{message} field {field}"),
            offset,
        }),
    }
}

/// An embedded message field: the reader over it, after checking the wire type.
fn embedded<'a>(
    r: &mut Reader<'a>,
    wt: u8,
    field: u32,
    message: &'static str,
    at: usize,
) -> Result<Reader<'a>, ScanError> {
    Reader::expect(wt, LEN, field, message, at)?;
    Ok(r.message()?)
}

/// A repeated number field of `fixed` bytes each (8: `fixed64`, `double`), packed or not.
fn repeated_fixed(
    r: &mut Reader<'_>,
    wt: u8,
    field: u32,
    message: &'static str,
    at: usize,
) -> Result<(), ScanError> {
    if wt == LEN {
        let (run, offset) = r.bytes()?;
        if run.len() % 8 != 0 {
            return Err(ScanError::Wire(WireError::TruncatedFixed {
                bits: 64,
                field,
                offset: offset + run.len() / 8 * 8,
            }));
        }
        Ok(())
    } else {
        Ok(r.skip_known(field, wt, I64, message, at)?)
    }
}

/// A repeated varint field, packed or not.
fn repeated_varint(
    r: &mut Reader<'_>,
    wt: u8,
    field: u32,
    message: &'static str,
    at: usize,
) -> Result<(), ScanError> {
    if wt == LEN {
        let mut run = r.message()?;
        while !run.is_empty() {
            run.varint()?;
        }
        Ok(())
    } else {
        Ok(r.skip_known(field, wt, VARINT, message, at)?)
    }
}

/// `Resource` at `depth`.
fn resource(mut r: Reader<'_>, depth: u32) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(RESOURCE)?;
        match field {
            1 => key_value(embedded(&mut r, wt, field, RESOURCE, at)?, depth + 1, 0)?,
            2 => r.skip_known(field, wt, VARINT, RESOURCE, at)?,
            3 => entity_ref(embedded(&mut r, wt, field, RESOURCE, at)?, depth + 1)?,
            _ => r.skip(field, wt, at, budget(depth))?,
        }
    }
    Ok(())
}

/// `EntityRef` at `depth`: four strings, two of them repeated.
fn entity_ref(mut r: Reader<'_>, depth: u32) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(ENTITY_REF)?;
        match field {
            1..=4 => string(&mut r, wt, field, ENTITY_REF, at)?,
            _ => r.skip(field, wt, at, budget(depth))?,
        }
    }
    Ok(())
}

/// `InstrumentationScope` at `depth`.
fn scope(mut r: Reader<'_>, depth: u32) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(SCOPE)?;
        match field {
            1 | 2 => string(&mut r, wt, field, SCOPE, at)?,
            3 => key_value(embedded(&mut r, wt, field, SCOPE, at)?, depth + 1, 0)?,
            4 => r.skip_known(field, wt, VARINT, SCOPE, at)?,
            _ => r.skip(field, wt, at, budget(depth))?,
        }
    }
    Ok(())
}

/// `KeyValue` at message `depth`, inside `level` levels of `AnyValue`.
fn key_value(mut r: Reader<'_>, depth: u32, level: u32) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(KEY_VALUE)?;
        match field {
            1 => string(&mut r, wt, field, KEY_VALUE, at)?,
            2 => any_value(
                embedded(&mut r, wt, field, KEY_VALUE, at)?,
                depth + 1,
                level + 1,
                at,
            )?,
            3 => r.skip_known(field, wt, VARINT, KEY_VALUE, at)?,
            _ => r.skip(field, wt, at, budget(depth))?,
        }
    }
    Ok(())
}

/// `AnyValue` number `level` (1 for a body or an attribute's value) at message `depth`.
fn any_value(mut r: Reader<'_>, depth: u32, level: u32, at: usize) -> Result<(), ScanError> {
    if level > MAX_ANY_VALUE_DEPTH {
        return Err(ScanError::NestingLimit {
            limit: MAX_ANY_VALUE_DEPTH,
            offset: at,
        });
    }
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(ANY_VALUE)?;
        match field {
            1 => string(&mut r, wt, field, ANY_VALUE, at)?,
            2 | 3 | 8 => r.skip_known(field, wt, VARINT, ANY_VALUE, at)?,
            4 => r.skip_known(field, wt, I64, ANY_VALUE, at)?,
            5 | 6 => {
                let mut values = embedded(&mut r, wt, field, ANY_VALUE, at)?;
                while !values.is_empty() {
                    let at = values.offset();
                    let (inner, wt) = values.key(VALUES)?;
                    if inner != 1 {
                        values.skip(inner, wt, at, budget(depth + 1))?;
                        continue;
                    }
                    let m = embedded(&mut values, wt, inner, VALUES, at)?;
                    if field == 5 {
                        any_value(m, depth + 2, level + 1, at)?;
                    } else {
                        key_value(m, depth + 2, level)?;
                    }
                }
            }
            7 => r.skip_known(field, wt, LEN, ANY_VALUE, at)?,
            _ => r.skip(field, wt, at, budget(depth))?,
        }
    }
    Ok(())
}

/// Checks the length of an id field that is empty or `expected` bytes long.
fn id(
    len: usize,
    expected: usize,
    item: &'static str,
    what: &'static str,
    offset: usize,
) -> Result<(), ScanError> {
    if len == 0 || len == expected {
        return Ok(());
    }
    Err(ScanError::InvalidId {
        item,
        what,
        len,
        expected: if expected == 16 { "0 or 16" } else { "0 or 8" },
        offset,
    })
}

// === metrics ===

/// `Metric` (depth 3): the data points of its `data` oneof as the decoded tree holds it.
fn metric(mut r: Reader<'_>) -> Result<u64, ScanError> {
    // The oneof member set last, and its points (merged occurrences of one member add up).
    let mut member = 0u32;
    let mut points = 0u64;
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(METRIC)?;
        match field {
            1..=3 => string(&mut r, wt, field, METRIC, at)?,
            12 => key_value(embedded(&mut r, wt, field, METRIC, at)?, 4, 0)?,
            5 | 7 | 9 | 10 | 11 => {
                let n = data(embedded(&mut r, wt, field, METRIC, at)?, field)?;
                if member == field {
                    points += n;
                } else {
                    member = field;
                    points = n;
                }
            }
            _ => r.skip(field, wt, at, budget(3))?,
        }
    }
    Ok(points)
}

/// `Gauge` (5), `Sum` (7), `Histogram` (9), `ExponentialHistogram` (10) or `Summary` (11), by
/// the `Metric` field it arrived in (depth 4): its number of data points.
fn data(mut r: Reader<'_>, kind: u32) -> Result<u64, ScanError> {
    let mut points = 0;
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(POINTS)?;
        match (field, kind) {
            (1, _) => {
                let p = embedded(&mut r, wt, field, POINTS, at)?;
                match kind {
                    5 | 7 => number_point(p)?,
                    9 => histogram_point(p)?,
                    10 => exp_point(p)?,
                    _ => summary_point(p)?,
                }
                points += 1;
            }
            (2, 7 | 9 | 10) | (3, 7) => r.skip_known(field, wt, VARINT, POINTS, at)?,
            _ => r.skip(field, wt, at, budget(4))?,
        }
    }
    Ok(points)
}

/// `NumberDataPoint` (depth 5).
fn number_point(mut r: Reader<'_>) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(NUMBER_POINT)?;
        match field {
            7 => key_value(embedded(&mut r, wt, field, NUMBER_POINT, at)?, 6, 0)?,
            2 | 3 | 4 | 6 => r.skip_known(field, wt, I64, NUMBER_POINT, at)?,
            5 => exemplar(embedded(&mut r, wt, field, NUMBER_POINT, at)?)?,
            8 => r.skip_known(field, wt, VARINT, NUMBER_POINT, at)?,
            _ => r.skip(field, wt, at, budget(5))?,
        }
    }
    Ok(())
}

/// `HistogramDataPoint` (depth 5).
fn histogram_point(mut r: Reader<'_>) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(HISTOGRAM_POINT)?;
        match field {
            9 => key_value(embedded(&mut r, wt, field, HISTOGRAM_POINT, at)?, 6, 0)?,
            2 | 3 | 4 | 5 | 11 | 12 => r.skip_known(field, wt, I64, HISTOGRAM_POINT, at)?,
            6 | 7 => repeated_fixed(&mut r, wt, field, HISTOGRAM_POINT, at)?,
            8 => exemplar(embedded(&mut r, wt, field, HISTOGRAM_POINT, at)?)?,
            10 => r.skip_known(field, wt, VARINT, HISTOGRAM_POINT, at)?,
            _ => r.skip(field, wt, at, budget(5))?,
        }
    }
    Ok(())
}

/// `ExponentialHistogramDataPoint` (depth 5).
fn exp_point(mut r: Reader<'_>) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(EXP_POINT)?;
        match field {
            1 => key_value(embedded(&mut r, wt, field, EXP_POINT, at)?, 6, 0)?,
            2 | 3 | 4 | 5 | 7 | 12 | 13 | 14 => r.skip_known(field, wt, I64, EXP_POINT, at)?,
            6 | 10 => r.skip_known(field, wt, VARINT, EXP_POINT, at)?,
            8 | 9 => buckets(embedded(&mut r, wt, field, EXP_POINT, at)?)?,
            11 => exemplar(embedded(&mut r, wt, field, EXP_POINT, at)?)?,
            _ => r.skip(field, wt, at, budget(5))?,
        }
    }
    Ok(())
}

/// `ExponentialHistogramDataPoint.Buckets` (depth 6).
fn buckets(mut r: Reader<'_>) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(BUCKETS)?;
        match field {
            1 => r.skip_known(field, wt, VARINT, BUCKETS, at)?,
            2 => repeated_varint(&mut r, wt, field, BUCKETS, at)?,
            _ => r.skip(field, wt, at, budget(6))?,
        }
    }
    Ok(())
}

/// `SummaryDataPoint` (depth 5).
fn summary_point(mut r: Reader<'_>) -> Result<(), ScanError> {
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(SUMMARY_POINT)?;
        match field {
            7 => key_value(embedded(&mut r, wt, field, SUMMARY_POINT, at)?, 6, 0)?,
            2..=5 => r.skip_known(field, wt, I64, SUMMARY_POINT, at)?,
            6 => {
                let mut q = embedded(&mut r, wt, field, SUMMARY_POINT, at)?;
                while !q.is_empty() {
                    let at = q.offset();
                    let (field, wt) = q.key(QUANTILE)?;
                    match field {
                        1 | 2 => q.skip_known(field, wt, I64, QUANTILE, at)?,
                        _ => q.skip(field, wt, at, budget(6))?,
                    }
                }
            }
            8 => r.skip_known(field, wt, VARINT, SUMMARY_POINT, at)?,
            _ => r.skip(field, wt, at, budget(5))?,
        }
    }
    Ok(())
}

/// `Exemplar` (depth 6): ids, when present, of the right length.
fn exemplar(mut r: Reader<'_>) -> Result<(), ScanError> {
    let start = r.offset();
    let (mut span_id, mut trace_id) = (0, 0);
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(EXEMPLAR)?;
        match field {
            7 => key_value(embedded(&mut r, wt, field, EXEMPLAR, at)?, 7, 0)?,
            2 | 3 | 6 => r.skip_known(field, wt, I64, EXEMPLAR, at)?,
            4 => span_id = embedded(&mut r, wt, field, EXEMPLAR, at)?.rest().len(),
            5 => trace_id = embedded(&mut r, wt, field, EXEMPLAR, at)?.rest().len(),
            _ => r.skip(field, wt, at, budget(6))?,
        }
    }
    id(trace_id, 16, "exemplar", "trace_id", start)?;
    id(span_id, 8, "exemplar", "span_id", start)
}

// === logs ===

/// `LogRecord` (depth 3): ids, when present, of the right length.
fn log_record(mut r: Reader<'_>) -> Result<(), ScanError> {
    let start = r.offset();
    let (mut trace_id, mut span_id) = (0, 0);
    while !r.is_empty() {
        let at = r.offset();
        let (field, wt) = r.key(LOG_RECORD)?;
        match field {
            1 | 11 => r.skip_known(field, wt, I64, LOG_RECORD, at)?,
            2 | 7 => r.skip_known(field, wt, VARINT, LOG_RECORD, at)?,
            3 | 12 => string(&mut r, wt, field, LOG_RECORD, at)?,
            5 => any_value(embedded(&mut r, wt, field, LOG_RECORD, at)?, 4, 1, at)?,
            6 => key_value(embedded(&mut r, wt, field, LOG_RECORD, at)?, 4, 0)?,
            8 => r.skip_known(field, wt, I32, LOG_RECORD, at)?,
            9 => trace_id = embedded(&mut r, wt, field, LOG_RECORD, at)?.rest().len(),
            10 => span_id = embedded(&mut r, wt, field, LOG_RECORD, at)?.rest().len(),
            _ => r.skip(field, wt, at, budget(3))?,
        }
    }
    id(trace_id, 16, "log record", "trace_id", start)?;
    id(span_id, 8, "log record", "span_id", start)
}
