//! Where segments come from.

use crate::{Segment, StatsSnapshot};

/// An error from a segment source. It says what went wrong and, for files, where.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The input could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// What was being read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The input is damaged at a known byte offset; everything before it was delivered.
    #[error("{path}: corrupt or truncated at byte offset {offset}: {reason}")]
    Corrupt {
        /// What was being read.
        path: String,
        /// Byte offset of the first damaged byte.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The input is of a kind this source does not handle.
    #[error("{path}: {reason}")]
    Unsupported {
        /// What was being read.
        path: String,
        /// Why it cannot be handled.
        reason: String,
    },
    /// The consumer asked the source to stop.
    #[error("stopped by the consumer")]
    Stopped,
}

/// A producer of [`Segment`]s: a pcap file, an eBPF ring buffer, a host's own capture.
pub trait Source {
    /// Delivers segments, in capture order per flow, to `emit` until the input ends (`Ok`),
    /// fails (`Err`, after everything readable before the damage was delivered) or `emit`
    /// returns `false` (then [`SourceError::Stopped`]).
    fn run(&mut self, emit: &mut dyn FnMut(Segment) -> bool) -> Result<(), SourceError>;

    /// Like [`Source::run`], for sources that wait for input (live capture): `idle` is called
    /// whenever the source has delivered what it had and is about to wait, so that a consumer
    /// batching segments can hand them on instead of holding them until the next burst.
    /// File sources never wait and keep the default, which ignores `idle`.
    fn run_live(
        &mut self,
        emit: &mut dyn FnMut(Segment) -> bool,
        idle: &mut dyn FnMut(),
    ) -> Result<(), SourceError> {
        let _ = idle;
        self.run(emit)
    }

    /// The source's own counters (packets, reassembly gaps, drops by reason).
    fn stats(&self) -> StatsSnapshot;
}
