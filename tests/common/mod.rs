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

/// One query as dig printed it with `+noall +answer +comments` (header and answer lines).
#[derive(Debug)]
pub struct DigAnswer {
    /// The status word of the header: NOERROR, NXDOMAIN, ...
    pub status: String,
    /// The message id.
    pub id: u64,
    /// The answers, rendered as DeepFlow renders them ("A=10.1.2.3 TTL=0", "TXT").
    pub answers: Vec<String>,
}

impl DigAnswer {
    /// Parses dig's lines: the `;; ->>HEADER<<-` line, then answer lines
    /// ("name. TTL IN TYPE value"); other lines are ignored.
    pub fn parse(text: &str) -> DigAnswer {
        let mut lines = text
            .lines()
            .filter(|l| l.contains("status:") || l.contains("\tIN\t"));
        let header = lines.next().expect("dig printed a header");
        let status = header.split("status: ").nth(1).unwrap_or_default();
        let status = status.split(',').next().unwrap_or_default().to_string();
        let id = header.split("id: ").nth(1).unwrap_or_default();
        let id = id.trim().parse().expect("dig printed the id");
        let answers = lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f[3] {
                    "A" | "AAAA" | "CNAME" | "NS" | "PTR" => {
                        format!("{}={} TTL={}", f[3], f[4].trim_end_matches('.'), f[1])
                    }
                    other => other.to_string(),
                }
            })
            .collect();
        DigAnswer {
            status,
            id,
            answers,
        }
    }

    /// The record's response code and status class for dig's status word.
    pub fn code(&self) -> (i32, l7tap::ResponseStatus) {
        match self.status.as_str() {
            "NOERROR" => (0, l7tap::ResponseStatus::Ok),
            "NXDOMAIN" => (3, l7tap::ResponseStatus::ClientError),
            other => panic!("dig status {other}"),
        }
    }
}

/// Checks the simple-query records of a `psql -a -f` session against what psql printed: the
/// statements of `sql` in order, each with the command tag, row count or error message psql
/// showed for it (psql -a echoes each statement, then prints its command tag, its rows and
/// "(N rows)", or "psql:<file>:<line>: ERROR:  <message>"). `records` may hold other records
/// (startup, other flows): only those of request type "Q" are compared.
pub fn check_psql_session(records: &[&L7Record], sql: &str, printed: &str, context: &str) {
    use l7tap::{Protocol, ResponseStatus};
    let lines: Vec<&str> = printed.lines().collect();
    let queries: Vec<&&L7Record> = records
        .iter()
        .filter(|r| s(&r.request_type) == "Q")
        .collect();
    let statements: Vec<&str> = sql.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(queries.len(), statements.len(), "{context}");
    for (r, stmt) in queries.iter().zip(&statements) {
        assert_eq!(r.protocol, Protocol::Postgresql);
        assert_eq!(s(&r.request_resource), *stmt);
        assert!(!r.unpaired && r.rrt_ns > 0, "{stmt}");
        let at = lines
            .iter()
            .position(|l| l == stmt)
            .expect("psql echoed it");
        let next = lines[at + 1];
        if let Some(e) = next.split(" ERROR:  ").nth(1) {
            assert_eq!(s(&r.response_exception), e, "{stmt}");
            // 23505 unique_violation, 42P01 undefined_table: the client's mistakes.
            assert_eq!(r.response_status, ResponseStatus::ClientError, "{stmt}");
        } else if stmt.starts_with("SELECT") {
            let rows = lines[at..]
                .iter()
                .find_map(|l| l.strip_prefix('(').and_then(|l| l.strip_suffix(" rows)")))
                .expect("psql printed the row count");
            assert_eq!(s(&r.response_result), format!("SELECT {rows}"), "{stmt}");
            assert_eq!(r.response_status, ResponseStatus::Ok);
        } else {
            assert_eq!(s(&r.response_result), next, "{stmt}");
            assert_eq!(r.response_status, ResponseStatus::Ok);
        }
    }
}

/// The built plugin (built once by scripts/build-plugins.sh when missing).
pub fn plugin(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let path = root().join("target/plugins").join(format!("{name}.wasm"));
    BUILD.call_once(|| {
        let st = std::process::Command::new("bash").arg(root().join("scripts/build-plugins.sh")).status();
        assert!(st.is_ok_and(|s| s.success()), "scripts/build-plugins.sh failed: install rustc libstd-rust-dev-wasm32 clang-14 lld-14 wasi-libc");
    });
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
