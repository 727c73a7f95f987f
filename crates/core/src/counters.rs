//! Counters for every stage: nothing is lost without a number going up.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why input or output was dropped. Every variant has its own counter; the discriminant is
/// the counter's index (the position in [`DropReason::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The worker's input queue was full and the engine was told not to block.
    InputQueueFull = 0,
    /// The record output queue was full and the engine was told not to block.
    OutputQueueFull = 1,
    /// The flow table was full; the least recently seen flow was evicted for a new one.
    FlowTableFull = 2,
    /// A flow had too many requests waiting for responses; the oldest was flushed early.
    PairingQueueFull = 3,
    /// Bytes discarded because the source reported missing bytes before them (and the partial
    /// message they belonged to).
    GapBytes = 4,
    /// Bytes discarded while waiting for a message start after a gap or parse error.
    ResyncBytes = 5,
    /// Bytes of flows whose protocol could not be inferred.
    UnparsedBytes = 6,
    /// Bytes of truncated message bodies that were skipped.
    TruncatedBytes = 7,
    /// Bytes of flows that stopped parsing after repeated errors.
    ParseErrorBytes = 8,
    /// The inference cache was full and was cleared.
    InferenceCacheFull = 9,
    /// Bytes of a message still incomplete when its flow closed.
    IncompleteAtClose = 10,
    /// Flows forgotten after an internal error: a panic caught in the worker (a bug in l7tap
    /// or in a parser given to the engine, reported on stderr) leaves their state in doubt, so
    /// the worker starts afresh.
    FlowsResetAfterPanic = 11,
}

impl DropReason {
    /// Every reason, in the order of [`Counters::drops`].
    pub const ALL: [DropReason; 12] = [
        DropReason::InputQueueFull,
        DropReason::OutputQueueFull,
        DropReason::FlowTableFull,
        DropReason::PairingQueueFull,
        DropReason::GapBytes,
        DropReason::ResyncBytes,
        DropReason::UnparsedBytes,
        DropReason::TruncatedBytes,
        DropReason::ParseErrorBytes,
        DropReason::InferenceCacheFull,
        DropReason::IncompleteAtClose,
        DropReason::FlowsResetAfterPanic,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::InputQueueFull => "drop_input_queue_full",
            DropReason::OutputQueueFull => "drop_output_queue_full",
            DropReason::FlowTableFull => "drop_flow_table_full",
            DropReason::PairingQueueFull => "drop_pairing_queue_full",
            DropReason::GapBytes => "drop_gap_bytes",
            DropReason::ResyncBytes => "drop_resync_bytes",
            DropReason::UnparsedBytes => "drop_unparsed_bytes",
            DropReason::TruncatedBytes => "drop_truncated_bytes",
            DropReason::ParseErrorBytes => "drop_parse_error_bytes",
            DropReason::InferenceCacheFull => "drop_inference_cache_full",
            DropReason::IncompleteAtClose => "drop_incomplete_at_close_bytes",
            DropReason::FlowsResetAfterPanic => "drop_flows_reset_after_panic",
        }
    }
}

/// Maximum number of protocols with their own parse-error counter.
pub const MAX_PROTOCOL_COUNTERS: usize = 32;

/// Counters of one worker.
///
/// Each worker owns one and is its only writer: increments are a plain load and store (no
/// locked instruction), so two threads counting into one `Counters` at once could lose
/// counts. Readers take snapshots from any thread.
#[derive(Debug)]
pub struct Counters {
    /// Segments received.
    pub segments: AtomicU64,
    /// Payload bytes received.
    pub bytes: AtomicU64,
    /// Messages parsed (requests and responses).
    pub messages: AtomicU64,
    /// Records emitted.
    pub records: AtomicU64,
    /// Records with both request and response.
    pub records_paired: AtomicU64,
    /// Records flagged unpaired (lone requests at flow end, orphan responses).
    pub records_unpaired: AtomicU64,
    /// Requests flushed with status timeout.
    pub records_timeout: AtomicU64,
    /// Messages flagged truncated.
    pub messages_truncated: AtomicU64,
    /// Flows created.
    pub flows_created: AtomicU64,
    /// Flows closed by FIN/RST/close.
    pub flows_closed: AtomicU64,
    /// Flows removed after the idle timeout.
    pub flows_expired: AtomicU64,
    /// Flows whose protocol was inferred.
    pub flows_inferred: AtomicU64,
    /// Flows given up as unparseable after repeated inference failures.
    pub flows_unparseable: AtomicU64,
    /// Inference answered from the per-server cache.
    pub inference_cache_hits: AtomicU64,
    /// Flows whose client/server roles were swapped by inference.
    pub flows_swapped: AtomicU64,
    /// Gaps reported by the source.
    pub gaps: AtomicU64,
    /// Panics caught while processing (bugs; see [`DropReason::FlowsResetAfterPanic`]).
    pub internal_errors: AtomicU64,
    /// Parse errors per protocol slot (see the parser registry order).
    pub parse_errors: [AtomicU64; MAX_PROTOCOL_COUNTERS],
    /// Drops by reason (index: position in [`DropReason::ALL`]).
    pub drops: [AtomicU64; DropReason::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            segments: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            records: AtomicU64::new(0),
            records_paired: AtomicU64::new(0),
            records_unpaired: AtomicU64::new(0),
            records_timeout: AtomicU64::new(0),
            messages_truncated: AtomicU64::new(0),
            flows_created: AtomicU64::new(0),
            flows_closed: AtomicU64::new(0),
            flows_expired: AtomicU64::new(0),
            flows_inferred: AtomicU64::new(0),
            flows_unparseable: AtomicU64::new(0),
            inference_cache_hits: AtomicU64::new(0),
            flows_swapped: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            internal_errors: AtomicU64::new(0),
            parse_errors: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Increments a counter by `n`. A counter has one writer (the worker owning the
/// [`Counters`]), so this is a plain load and store rather than a locked read-modify-write:
/// readers on other threads still see whole values, and a worker pays no bus lock per
/// segment, message and record (several per event on the hot path).
#[inline]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Counters {
    /// Counts a drop. Called by the thread that owns these counters (see [`Counters`]).
    #[inline]
    pub fn count_drop(&self, reason: DropReason, n: u64) {
        let idx = reason as usize;
        bump(&self.drops[idx], n);
    }

    /// The current value of a drop counter.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        let idx = reason as usize;
        self.drops[idx].load(Ordering::Relaxed)
    }

    /// Counts a parse error against protocol slot `slot`.
    #[inline]
    pub fn parse_error(&self, slot: usize) {
        if let Some(c) = self.parse_errors.get(slot) {
            bump(c, 1);
        }
    }

    /// A named snapshot of every counter; `protocol_names[i]` names parse-error slot `i`.
    pub fn snapshot(&self, protocol_names: &[String]) -> StatsSnapshot {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v: Vec<(String, u64)> = vec![
            ("segments".into(), ld(&self.segments)),
            ("bytes".into(), ld(&self.bytes)),
            ("messages".into(), ld(&self.messages)),
            ("records".into(), ld(&self.records)),
            ("records_paired".into(), ld(&self.records_paired)),
            ("records_unpaired".into(), ld(&self.records_unpaired)),
            ("records_timeout".into(), ld(&self.records_timeout)),
            ("messages_truncated".into(), ld(&self.messages_truncated)),
            ("flows_created".into(), ld(&self.flows_created)),
            ("flows_closed".into(), ld(&self.flows_closed)),
            ("flows_expired".into(), ld(&self.flows_expired)),
            ("flows_inferred".into(), ld(&self.flows_inferred)),
            ("flows_unparseable".into(), ld(&self.flows_unparseable)),
            ("flows_swapped".into(), ld(&self.flows_swapped)),
            (
                "inference_cache_hits".into(),
                ld(&self.inference_cache_hits),
            ),
            ("gaps".into(), ld(&self.gaps)),
            ("internal_errors".into(), ld(&self.internal_errors)),
        ];
        for (i, name) in protocol_names
            .iter()
            .enumerate()
            .take(MAX_PROTOCOL_COUNTERS)
        {
            v.push((format!("parse_errors_{name}"), ld(&self.parse_errors[i])));
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            v.push((r.name().to_string(), ld(&self.drops[i])));
        }
        StatsSnapshot(v)
    }
}

/// Named counter values, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot(pub Vec<(String, u64)>);

impl StatsSnapshot {
    /// The value of counter `name` (0 when absent).
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    /// Adds `other` into `self`, counter by counter (by name).
    pub fn merge(&mut self, other: &StatsSnapshot) {
        for (name, v) in &other.0 {
            match self.0.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => *mine += v,
                None => self.0.push((name.clone(), *v)),
            }
        }
    }

    /// Counters with a non-zero value.
    pub fn non_zero(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| (n.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_index_their_counters() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
        let c = Counters::default();
        c.count_drop(DropReason::GapBytes, 3);
        c.count_drop(DropReason::IncompleteAtClose, 2);
        assert_eq!(
            (
                c.dropped(DropReason::GapBytes),
                c.dropped(DropReason::IncompleteAtClose)
            ),
            (3, 2)
        );
        assert_eq!(c.snapshot(&[]).get("drop_incomplete_at_close_bytes"), 2);
    }
}
