//! The unit of input.

use crate::{Direction, FlowKey, ProcessInfo};
use bytes::Bytes;

/// What one syscall (eBPF), one reassembled TCP chunk (pcap) or one datagram carries.
///
/// Payloads are [`Bytes`] so records can slice into them without copying.
#[derive(Debug, Clone, Default)]
pub struct Segment {
    /// The connection, oriented client -> server.
    pub flow: FlowKey,
    /// Which way the payload travels.
    pub direction: Direction,
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The bytes. Empty for a pure close, or for a gap on its own (`gap_before` > 0: bytes a
    /// live source knows were sent at `ts_ns` without seeing them, like a sendfile body).
    pub payload: Bytes,
    /// Stream offset of the first payload byte in this direction (0 for datagrams); for a gap
    /// on its own, the offset right after the gap.
    pub offset: u64,
    /// Number of bytes known to be missing right before this payload (capture loss, reassembly
    /// gap, an eBPF snaplen cut). Inside a message of known length they are skipped by length
    /// (the message is reported truncated, at this segment's time when it ends there);
    /// otherwise the framing state of this direction is reset and parsers resynchronise.
    pub gap_before: u64,
    /// The connection ended after this segment (TCP FIN from both sides or RST, socket close).
    pub end_of_flow: bool,
    /// The process behind the socket, when known.
    pub process: Option<ProcessInfo>,
}

impl Segment {
    /// A data segment with no gap, at stream offset `offset`.
    pub fn data(
        flow: FlowKey,
        direction: Direction,
        ts_ns: u64,
        offset: u64,
        payload: Bytes,
    ) -> Self {
        Segment {
            flow,
            direction,
            ts_ns,
            payload,
            offset,
            ..Default::default()
        }
    }

    /// An empty segment that closes the flow.
    pub fn close(flow: FlowKey, ts_ns: u64) -> Self {
        Segment {
            flow,
            ts_ns,
            end_of_flow: true,
            ..Default::default()
        }
    }
}
