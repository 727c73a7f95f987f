//! Helpers shared by the benches (each bench is its own crate: `mod common;`).

use bytes::Bytes;
use l7tap::pcap::PcapSource;
use l7tap::{Direction, Segment, Source};
use std::path::{Path, PathBuf};

/// The project's root (where `tests/captures` and `benches/data` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The payloads of a capture's segments, in order, with their direction.
pub fn payloads(path: &Path) -> Vec<(Direction, Bytes)> {
    let mut src = PcapSource::open(path).expect("capture");
    let mut out = Vec::new();
    src.run(&mut |s: Segment| {
        if !s.payload.is_empty() {
            out.push((s.direction, s.payload));
        }
        true
    })
    .expect("intact capture");
    out
}
