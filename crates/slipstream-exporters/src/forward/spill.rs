//! The forward queue's disk spill: requests the memory queue has no room for, on disk until
//! the downstream takes them.
//!
//! The spill is a directory of segment files, `<id>.seg` with increasing ids, each a sequence
//! of records `[body length: u32 LE][CRC-32 of the body: u32 LE][signal: u8][body]`. Appends go
//! to the newest segment, which is sealed at [`SEGMENT_BYTES`]; the forwarder reads records
//! oldest first and acknowledges each once it is delivered (or dropped for good). A sealed
//! segment whose records are all read and acknowledged is deleted. At shutdown the offset below
//! which every record is acknowledged is written to `<id>.ack`, so a restart resumes there;
//! after a crash the unacknowledged part of each segment is sent again (at least once).
//!
//! A record whose checksum or length does not hold (a torn write, a damaged disk) ends its
//! segment: the rest of that file is skipped, counted as one dropped request
//! (`reason="spill_corrupt"`), and the segment is deleted as usual.

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use slipstream_core::telemetry::{ByLabel, Gauge, names};
use slipstream_core::{Registry, Signal};
use tokio::sync::Notify;

use super::counters::{ForwardDrop, PerSignal, SpillReason};

/// Size at which the segment being written is sealed and a new one started.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;
const HEADER: usize = 9;

/// One request read back from the spill.
#[derive(Debug)]
pub(crate) struct Spilled {
    pub(crate) signal: Signal,
    pub(crate) body: Bytes,
    /// Where it is, for [`Spill::ack`].
    pub(crate) at: RecordAt,
}

/// The position of a record: its segment and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordAt {
    segment: u64,
    offset: u64,
}

/// Why an append was not taken.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// `max_bytes` would be passed.
    Full,
    /// The write failed (disk full, unwritable directory).
    Io(io::Error),
}

/// The spill directory and what is in it.
#[derive(Debug)]
pub(crate) struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    notify: Notify,
    bytes_gauge: Arc<Gauge>,
    requests_gauge: Arc<Gauge>,
    capacity_gauge: Arc<Gauge>,
    recovered_gauge: Arc<Gauge>,
    recovered: u64,
    spilled: PerSignal<ByLabel<SpillReason>>,
    /// Requests lost in damaged segments (their signal unknown).
    corrupt: ByLabel<ForwardDrop>,
}

#[derive(Debug)]
struct State {
    /// Oldest first; the last one is written to unless sealed.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    reader: Option<(u64, File)>,
    next_id: u64,
    /// Bytes of the segment files on disk.
    bytes: u64,
    /// Records not yet acknowledged.
    requests: u64,
    /// What the gauges were given (they are shared by every routed endpoint's spill: each
    /// adds its part).
    published: (u64, u64),
}

#[derive(Debug)]
struct Segment {
    id: u64,
    /// Bytes written (records are whole up to here).
    len: u64,
    sealed: bool,
    /// The next record to read.
    read: u64,
    /// Offsets of records read and not yet acknowledged.
    inflight: BTreeSet<u64>,
    /// Records after `read`.
    unread: u64,
    /// Offset the segment was resumed at (its `.ack` file), to know what changed.
    resumed_at: u64,
}

impl Segment {
    fn done(&self) -> bool {
        self.sealed && self.read >= self.len && self.inflight.is_empty()
    }

    /// Every record before this offset is acknowledged.
    fn acked_prefix(&self) -> u64 {
        self.inflight.first().copied().unwrap_or(self.read)
    }
}

impl Spill {
    /// Opens (creating when missing) the spill directory, picking up the segments a previous
    /// run left.
    pub(crate) fn open(dir: &Path, max_bytes: u64, registry: &Registry) -> io::Result<Spill> {
        Spill::open_sized(dir, max_bytes, SEGMENT_BYTES, registry)
    }

    /// [`Spill::open`] sealing segments at `segment_bytes`.
    pub(crate) fn open_sized(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        registry: &Registry,
    ) -> io::Result<Spill> {
        fs::create_dir_all(dir)?;
        let mut ids: Vec<u64> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                name.strip_suffix(".seg")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = VecDeque::with_capacity(ids.len());
        let (mut bytes, mut requests) = (0, 0);
        for id in ids {
            let path = segment_path(dir, id);
            let len = fs::metadata(&path)?.len();
            let read = fs::read(ack_path(dir, id))
                .ok()
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_le_bytes)
                .min(len);
            let unread = count_records(&path, read, len)?;
            requests += unread;
            bytes += len;
            segments.push_back(Segment {
                id,
                len,
                sealed: true,
                read,
                inflight: BTreeSet::new(),
                unread,
                resumed_at: read,
            });
        }
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        // A probe write, so an unwritable directory is found now rather than at the first
        // overflow.
        let probe = dir.join(".probe");
        fs::write(&probe, b"")?;
        fs::remove_file(&probe)?;
        let capacity_gauge = registry.gauge(&names::SPILL_CAPACITY_BYTES, &[]);
        capacity_gauge.add(max_bytes as i64);
        let recovered_gauge = registry.gauge(&names::SPILL_RECOVERED, &[]);
        recovered_gauge.add(requests as i64);
        let spill = Spill {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            state: Mutex::new(State {
                segments,
                writer: None,
                reader: None,
                next_id,
                bytes,
                requests,
                published: (0, 0),
            }),
            notify: Notify::new(),
            bytes_gauge: registry.gauge(&names::SPILL_BYTES, &[]),
            requests_gauge: registry.gauge(&names::SPILL_REQUESTS, &[]),
            capacity_gauge,
            recovered_gauge,
            recovered: requests,
            spilled: PerSignal::new(|s| {
                ByLabel::new(registry, &names::SPILLED_REQUESTS, &[s.as_str()])
            }),
            corrupt: ByLabel::new(registry, &names::DROPPED_REQUESTS, &["unknown"]),
        };
        {
            let mut st = spill.lock();
            spill.delete_done(&mut st);
            spill.publish(&mut st);
        }
        if requests > 0 {
            tracing::info!(
                requests,
                bytes,
                dir = %dir.display(),
                "forward spill holds requests from a previous run; delivering them"
            );
        }
        Ok(spill)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records not yet acknowledged.
    pub(crate) fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Bytes of the segment files on disk.
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Writes one request to the spill. `reason` labels the spilled-requests counter.
    pub(crate) fn append(
        &self,
        signal: Signal,
        body: &[u8],
        reason: SpillReason,
    ) -> Result<(), AppendError> {
        let len = u32::try_from(body.len()).map_err(|_| AppendError::Full)?;
        let record = (HEADER + body.len()) as u64;
        let mut st = self.lock();
        if st.bytes + record > self.max_bytes {
            return Err(AppendError::Full);
        }
        let rotate = match st.segments.back() {
            Some(s) => s.sealed || st.writer.is_none() || s.len + record > self.segment_bytes,
            None => true,
        };
        if rotate {
            if let Some(s) = st.segments.back_mut() {
                s.sealed = true;
            }
            st.writer = None;
            let id = st.next_id;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&self.dir, id))
                .map_err(AppendError::Io)?;
            st.next_id += 1;
            st.writer = Some(file);
            st.segments.push_back(Segment {
                id,
                len: 0,
                sealed: false,
                read: 0,
                inflight: BTreeSet::new(),
                unread: 0,
                resumed_at: 0,
            });
            self.delete_done(&mut st);
        }
        let mut crc = flate2::Crc::new();
        crc.update(body);
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&crc.sum().to_le_bytes());
        header[8] = signal_byte(signal);
        let writer = st.writer.as_mut().expect("a segment is open for writing");
        let written = writer
            .write_all(&header)
            .and_then(|()| writer.write_all(body));
        let seg = st.segments.back_mut().expect("the segment just written");
        if let Err(e) = written {
            // A partial record may be in the file: seal the segment before it, so it is never
            // read, and cut the file back.
            let (good, id) = (seg.len, seg.id);
            seg.sealed = true;
            if let Some(w) = st.writer.take() {
                let _ = w.set_len(good);
            }
            if good == 0 {
                // Nothing in it: do not leave an empty file per refused request.
                st.segments.pop_back();
                let _ = fs::remove_file(segment_path(&self.dir, id));
            }
            return Err(AppendError::Io(e));
        }
        seg.len += record;
        seg.unread += 1;
        st.bytes += record;
        st.requests += 1;
        self.publish(&mut st);
        drop(st);
        self.spilled.get(signal).inc(reason);
        self.notify.notify_one();
        Ok(())
    }

    /// Whether a record is waiting to be read.
    pub(crate) fn has_unread(&self) -> bool {
        self.lock().segments.iter().any(|s| s.read < s.len)
    }

    /// Waits until something is appended (returns at once if something was appended since
    /// the last wait).
    pub(crate) async fn appended(&self) {
        self.notify.notified().await;
    }

    /// Reads the oldest unread record; `None` when everything is read.
    pub(crate) fn next(&self) -> Option<Spilled> {
        let mut guard = self.lock();
        let st = &mut *guard;
        loop {
            let idx = st.segments.iter().position(|s| s.read < s.len)?;
            let (id, offset, len) = {
                let s = &st.segments[idx];
                (s.id, s.read, s.len)
            };
            match read_record(&self.dir, &mut st.reader, id, offset, len) {
                Ok((signal, body)) => {
                    let s = &mut st.segments[idx];
                    s.read = offset + (HEADER + body.len()) as u64;
                    s.inflight.insert(offset);
                    s.unread = s.unread.saturating_sub(1);
                    return Some(Spilled {
                        signal,
                        body,
                        at: RecordAt {
                            segment: id,
                            offset,
                        },
                    });
                }
                Err(e) => {
                    tracing::error!(
                        segment = %segment_path(&self.dir, id).display(),
                        offset,
                        "forward spill: unreadable record ({e}); skipping the rest of the segment"
                    );
                    let unread = st.segments[idx].unread;
                    self.corrupt.add(ForwardDrop::SpillCorrupt, unread.max(1));
                    st.requests = st.requests.saturating_sub(unread);
                    let s = &mut st.segments[idx];
                    s.unread = 0;
                    s.read = s.len;
                    s.sealed = true;
                    if idx + 1 == st.segments.len() {
                        st.writer = None;
                    }
                    self.delete_done(st);
                    self.publish(st);
                }
            }
        }
    }

    /// Marks a record read by [`Spill::next`] as done: delivered, or dropped for good.
    pub(crate) fn ack(&self, at: RecordAt) {
        let mut st = self.lock();
        if let Some(s) = st.segments.iter_mut().find(|s| s.id == at.segment)
            && s.inflight.remove(&at.offset)
        {
            st.requests = st.requests.saturating_sub(1);
        }
        self.delete_done(&mut st);
        self.publish(&mut st);
    }

    /// Records the acknowledged prefix of every segment on disk, so the next run resumes
    /// after what was delivered; then syncs the files.
    pub(crate) fn persist(&self) {
        let mut st = self.lock();
        if let Some(w) = &st.writer
            && let Err(e) = w.sync_all()
        {
            tracing::error!("forward spill: cannot sync the segment being written: {e}");
        }
        for s in st.segments.iter_mut() {
            let prefix = s.acked_prefix();
            if prefix == s.resumed_at {
                continue;
            }
            match fs::write(ack_path(&self.dir, s.id), prefix.to_le_bytes()) {
                Ok(()) => s.resumed_at = prefix,
                Err(e) => tracing::error!(
                    "forward spill: cannot record progress in {}: {e}",
                    ack_path(&self.dir, s.id).display()
                ),
            }
        }
    }

    fn delete_done(&self, st: &mut State) {
        // The segment being written goes too once everything in it is delivered; the next
        // append starts a new one.
        if let Some(last) = st.segments.back_mut()
            && !last.sealed
            && last.len > 0
            && last.read >= last.len
            && last.inflight.is_empty()
        {
            last.sealed = true;
            st.writer = None;
        }
        while st.segments.front().is_some_and(Segment::done) {
            let s = st.segments.pop_front().expect("checked above");
            if st.reader.as_ref().is_some_and(|(id, _)| *id == s.id) {
                st.reader = None;
            }
            st.bytes = st.bytes.saturating_sub(s.len);
            for path in [segment_path(&self.dir, s.id), ack_path(&self.dir, s.id)] {
                if let Err(e) = fs::remove_file(&path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!("forward spill: cannot delete {}: {e}", path.display());
                }
            }
        }
    }

    fn publish(&self, st: &mut State) {
        let (bytes, requests) = st.published;
        self.bytes_gauge.add(st.bytes as i64 - bytes as i64);
        self.requests_gauge
            .add(st.requests as i64 - requests as i64);
        st.published = (st.bytes, st.requests);
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let (bytes, requests) = self.lock().published;
        self.bytes_gauge.add(-(bytes as i64));
        self.requests_gauge.add(-(requests as i64));
        self.capacity_gauge.add(-(self.max_bytes as i64));
        self.recovered_gauge.add(-(self.recovered as i64));
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn ack_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.ack"))
}

fn signal_byte(signal: Signal) -> u8 {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
    }
}

fn signal_of(byte: u8) -> Option<Signal> {
    Some(match byte {
        0 => Signal::Traces,
        1 => Signal::Metrics,
        2 => Signal::Logs,
        _ => return None,
    })
}

/// Reads the record at `offset` of segment `id` (whose valid part ends at `len`), reusing the
/// open reader when it is on that segment.
fn read_record(
    dir: &Path,
    reader: &mut Option<(u64, File)>,
    id: u64,
    offset: u64,
    len: u64,
) -> io::Result<(Signal, Bytes)> {
    if reader.as_ref().is_none_or(|(rid, _)| *rid != id) {
        *reader = Some((id, File::open(segment_path(dir, id))?));
    }
    let (_, file) = reader.as_mut().expect("opened above");
    let corrupt = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    if len - offset < HEADER as u64 {
        return Err(corrupt("truncated record header"));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut header = [0u8; HEADER];
    file.read_exact(&mut header)?;
    let body_len = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4 bytes")));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let signal = signal_of(header[8]).ok_or_else(|| corrupt("unknown signal"))?;
    if body_len > len - offset - HEADER as u64 {
        return Err(corrupt("record runs past the end of the segment"));
    }
    let mut body = vec![0u8; body_len as usize];
    file.read_exact(&mut body)?;
    let mut check = flate2::Crc::new();
    check.update(&body);
    if check.sum() != crc {
        return Err(corrupt("checksum mismatch"));
    }
    Ok((signal, Bytes::from(body)))
}

/// Records from `from` to the end of a segment file, walking the headers (a corrupt tail ends
/// the count).
fn count_records(path: &Path, from: u64, len: u64) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let (mut pos, mut n) = (from, 0);
    let mut header = [0u8; HEADER];
    while len - pos >= HEADER as u64 {
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut header)?;
        let body = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4 bytes")));
        if body > len - pos - HEADER as u64 {
            break;
        }
        pos += HEADER as u64 + body;
        n += 1;
    }
    Ok(n)
}
