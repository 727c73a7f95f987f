//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod deepflow_result;

use l7tap::pcap::PcapSource;
use l7tap::{Engine, EngineBuilder, L7Record, StatsSnapshot};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared corpus (`../shared/corpus/deepflow`), or `None` with a printed reason.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("L7TAP_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/corpus/deepflow"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: corpus not found at {} (set L7TAP_CORPUS); corpus tests skipped",
            dir.display()
        );
        None
    }
}

/// A bundled capture.
pub fn capture(name: &str) -> PathBuf {
    root().join("tests/captures").join(name)
}

/// Replays a file on one worker (so records keep capture order) and returns records + stats.
pub fn replay_with(
    path: &Path,
    configure: impl FnOnce(EngineBuilder) -> EngineBuilder,
) -> (Vec<L7Record>, StatsSnapshot) {
    let mut engine = configure(Engine::builder().workers(1))
        .build()
        .expect("engine builds");
    let rx = engine.records().expect("channel output");
    let mut src = PcapSource::open(path).expect("capture opens");
    engine.run(&mut src).expect("capture replays without error");
    let stats = engine.finish();
    (rx.iter().collect(), stats)
}

/// Replays with default settings.
pub fn replay(path: &Path) -> (Vec<L7Record>, StatsSnapshot) {
    replay_with(path, |b| b)
}

/// Lossy text of a record field.
pub fn s(b: &bytes::Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}
