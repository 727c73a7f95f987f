//! l7tap-core: the vocabulary every other l7tap crate speaks.
//!
//! It owns what flows through the pipeline ([`Segment`], [`FlowKey`], [`L7Record`]), the
//! [`Parser`] trait protocols implement, and the per-worker machinery that turns segments into
//! records: the flow table ([`FlowTable`]), message framing across segments ([`StreamBuf`]),
//! request/response pairing ([`PairingQueue`]), protocol inference with a per-server cache and
//! the counters of every stage ([`Counters`]).
//!
//! It knows nothing about where segments come from (pcap, eBPF, a host) nor about concrete
//! protocols, plugins or sinks: those live in the crates above it.
#![deny(missing_docs)]

mod config;
mod counters;
mod flow;
mod flow_table;
mod pairing;
mod parser;
mod record;
mod segment;
mod source;
mod stream;

pub use config::Config;
pub use counters::{Counters, DropReason, StatsSnapshot, MAX_PROTOCOL_COUNTERS};

/// How many parsers can have their own parse-error counter.
pub fn counters_capacity() -> usize {
    MAX_PROTOCOL_COUNTERS
}
pub use flow::{
    addr_hash, intern_path, Direction, FlowBuildHasher, FlowHasher, FlowKey, ProcessInfo, L4,
    MAX_INTERNED_PATHS,
};
pub use flow_table::{FlowProcessor, FlowTable};
pub use pairing::{PairingMode, PairingQueue, PendingRequest};
pub use parser::{
    Confidence, Inference, Message, MessageRole, Needed, ParseCtx, ParseError, ParseMode, Parsed,
    Parser, Remaining, SkipProgress,
};
pub use record::{Attribute, L7Record, Protocol, ResponseStatus};
pub use segment::Segment;
pub use source::{Source, SourceError};
pub use stream::{FrameCtx, FramedMessage, StreamBuf, StreamEvent};
