//! What changed between two snapshots: the walk that feeds the SLO engine and the one that
//! builds a two-tier sender's partial aggregates.
//!
//! Consecutive snapshots share every series and slot that did not change (the same `Arc`).
//! [`Snapshot::changes_since`] walks a new snapshot next to an older one (both in series-id
//! order), skips every pointer-equal series, and yields the others with their state in the
//! older snapshot; [`SeriesChange::slots`] does the same for slots. A slot only ever grows
//! while it is retained, so what a changed slot gained is its counts minus the older ones
//! ([`SlotData::gained_since`]).

use slipstream_core::aggregates;

use crate::snapshot::{SeriesData, SlotData, Snapshot};

/// A series whose data differs between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct SeriesChange<'a> {
    /// The series in the newer snapshot.
    pub series: &'a SeriesData,
    /// The same series in the older snapshot; `None` when it is new (or its id was reused by
    /// another series since).
    pub before: Option<&'a SeriesData>,
}

/// What one slot gained between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct SlotChange<'a> {
    /// The slot in the newer snapshot.
    pub slot: &'a SlotData,
    /// The same slot in the older snapshot; `None` when it is new.
    pub before: Option<&'a SlotData>,
}

impl Snapshot {
    /// The series of this snapshot that differ from `old` (an earlier snapshot of the same
    /// aggregator), in id order. Series only in `old` (expired since) are not yielded.
    pub fn changes_since<'a>(
        &'a self,
        old: &'a Snapshot,
    ) -> impl Iterator<Item = SeriesChange<'a>> + 'a {
        let old = old.series();
        let mut j = 0;
        self.series().iter().filter_map(move |s| {
            while j < old.len() && old[j].id() < s.id() {
                j += 1;
            }
            let before = old
                .get(j)
                .filter(|o| o.id() == s.id() && o.labels() == s.labels());
            if before.is_some_and(|o| std::sync::Arc::ptr_eq(o, s)) {
                return None;
            }
            Some(SeriesChange {
                series: s,
                before: before.map(|o| &**o),
            })
        })
    }

    /// What this snapshot holds beyond `old` (an earlier snapshot of the same aggregator), as
    /// partial aggregates: per changed series, what each slot gained and the versions new or
    /// serving since. Merged into another aggregator, they add exactly what this one added.
    pub fn aggregates_since(&self, old: &Snapshot) -> Vec<aggregates::Series> {
        self.changes_since(old)
            .filter_map(|c| c.aggregates())
            .collect()
    }
}

impl<'a> SeriesChange<'a> {
    /// The slots that differ, oldest first, each with its state in the older snapshot.
    pub fn slots(&self) -> impl Iterator<Item = SlotChange<'a>> + 'a {
        let old = self.before.map(SeriesData::slots).unwrap_or(&[]);
        let mut k = 0;
        self.series.slots().iter().filter_map(move |slot| {
            while k < old.len() && old[k].start_unix_nanos < slot.start_unix_nanos {
                k += 1;
            }
            let before = old
                .get(k)
                .filter(|o| o.start_unix_nanos == slot.start_unix_nanos)
                .map(|p| &**p);
            if before.is_some_and(|p| std::ptr::eq(p, &**slot)) {
                return None;
            }
            Some(SlotChange { slot, before })
        })
    }

    /// This change as partial aggregates; `None` when nothing a receiver needs changed (only
    /// the series' idle time moved, or slots left the retention).
    pub fn aggregates(&self) -> Option<aggregates::Series> {
        let slots: Vec<aggregates::Slot> = self
            .slots()
            .filter_map(|c| {
                let (total, bad) = c.gained();
                if total == 0 {
                    return None;
                }
                // The whole set, when it changed: the receiver keeps each request once.
                let start = c.slot.start_unix_nanos;
                let exemplars = match (
                    self.series.slot_exemplars(start),
                    self.before.and_then(|b| b.slot_exemplars(start)),
                ) {
                    (Some(now), before) if before != Some(now) => {
                        now.iter().map(aggregates::Exemplar::from).collect()
                    }
                    _ => Vec::new(),
                };
                let (bucket_indexes, bucket_counts) =
                    c.slot.gained_since(c.before).into_iter().unzip();
                let spans = c
                    .slot
                    .spans()
                    .saturating_sub(c.before.map_or(0, SlotData::spans));
                let sampled_spans = c
                    .slot
                    .sampled_spans()
                    .saturating_sub(c.before.map_or(0, SlotData::sampled_spans));
                let (latency_thresholds_nanos, above_threshold) = c
                    .slot
                    .above
                    .gained_since(c.before.map(|b| &b.above))
                    .into_iter()
                    .unzip();
                Some(aggregates::Slot {
                    start_unix_nanos: c.slot.start_unix_nanos,
                    total,
                    bad,
                    bucket_indexes,
                    bucket_counts,
                    latency_thresholds_nanos,
                    above_threshold,
                    // 0 when each span counted once (what older senders send).
                    spans: if spans == total && sampled_spans == 0 {
                        0
                    } else {
                        spans
                    },
                    sampled_spans,
                    exemplars,
                })
            })
            .collect();
        let old = self.before.map(SeriesData::versions).unwrap_or(&[]);
        let versions: Vec<aggregates::Version> = self
            .series
            .versions()
            .iter()
            .filter(|v| {
                !old.iter().any(|o| {
                    o.version == v.version
                        && o.first_seen_unix_nanos <= v.first_seen_unix_nanos
                        && o.last_seen_unix_nanos >= v.last_seen_unix_nanos
                })
            })
            .map(|v| aggregates::Version {
                version: v.version.to_string(),
                first_seen_unix_nanos: v.first_seen_unix_nanos,
                last_seen_unix_nanos: v.last_seen_unix_nanos,
            })
            .collect();
        if slots.is_empty() && versions.is_empty() {
            return None;
        }
        Some(aggregates::Series {
            key: self.series.key_values(),
            overflow: self.series.overflow() as i32,
            slots,
            versions,
        })
    }
}

impl SlotChange<'_> {
    /// Requests and bad requests the slot gained.
    pub fn gained(&self) -> (u64, u64) {
        let (total, bad) = self.before.map_or((0, 0), |p| (p.total, p.bad));
        (
            self.slot.total.saturating_sub(total),
            self.slot.bad.saturating_sub(bad),
        )
    }
}

impl SlotData {
    /// `(bucket, count)` of what the histogram gained since `before` (the same slot in an
    /// earlier snapshot), ascending.
    pub fn gained_since(&self, before: Option<&SlotData>) -> Vec<(u32, u64)> {
        match before {
            None => self.histogram.iter().collect(),
            Some(p) => {
                let mut old = p.histogram.iter().peekable();
                self.histogram
                    .iter()
                    .filter_map(|(b, n)| {
                        while old.next_if(|&(ob, _)| ob < b).is_some() {}
                        let before = old.next_if(|&(ob, _)| ob == b).map_or(0, |(_, n)| n);
                        (n > before).then(|| (b, n - before))
                    })
                    .collect()
            }
        }
    }
}
