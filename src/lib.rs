//! l7tap: capture, infer, parse and enrich application-layer (L7) traffic.
//!
//! The [`Engine`] takes [`Segment`]s (from a pcap file, from eBPF capture, or fed by the
//! embedding program), routes each flow to one worker thread, infers its protocol, frames
//! and parses messages zero-copy, pairs requests with responses and hands out [`L7Record`]s
//! through a crossbeam channel or a callback.
//!
//! ```no_run
//! use l7tap::{Engine, pcap::PcapSource};
//!
//! let mut engine = Engine::builder().workers(2).build().expect("valid configuration");
//! let records = engine.records().expect("channel output");
//! let printer = std::thread::spawn(move || {
//!     for r in records {
//!         println!("{} {} -> {:?}", String::from_utf8_lossy(&r.request_type),
//!                  String::from_utf8_lossy(&r.request_resource), r.response_code);
//!     }
//! });
//! let mut source = PcapSource::open("capture.pcap").expect("readable file");
//! engine.run(&mut source).expect("intact file");
//! let stats = engine.finish();
//! printer.join().expect("printer thread");
//! eprintln!("{} records", stats.get("records"));
//! ```
#![deny(missing_docs)]

pub mod json;

pub use l7tap_capture_pcap as pcap;
pub use l7tap_core as core;
pub use l7tap_core::{
    Attribute, Config, Direction, FlowKey, L7Record, Parser, ProcessInfo, Protocol, ResponseStatus,
    Segment, Source, SourceError, StatsSnapshot, L4,
};
pub use l7tap_protocols as protocols;
pub use l7tap_wasm_host as wasm;
pub use l7tap_wasm_host::{PluginHost, PluginLimits};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use l7tap_core::{Counters, DropReason, FlowProcessor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What to do when a queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for room (file replay: nothing is lost, the reader slows down).
    #[default]
    Block,
    /// Drop and count (live capture: the host is never slowed down by l7tap).
    Drop,
}

/// Errors building or running an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

type Callback = Arc<dyn Fn(L7Record) + Send + Sync>;

enum Output {
    Channel(usize),
    Callback(Callback),
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    protocols: Option<Vec<Protocol>>,
    extra_parsers: Vec<Arc<dyn Parser>>,
    http1: Option<protocols::Http1Config>,
    config: Config,
    workers: usize,
    queue_capacity: usize,
    output: Output,
    backpressure: Backpressure,
    plugins: Option<PluginHost>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            protocols: None,
            extra_parsers: Vec::new(),
            http1: None,
            config: Config::default(),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(8),
            queue_capacity: 1024,
            output: Output::Channel(4096),
            backpressure: Backpressure::Block,
            plugins: None,
        }
    }
}

impl EngineBuilder {
    /// Enables only these built-in protocols (default: all).
    pub fn protocols(mut self, protocols: &[Protocol]) -> Self {
        self.protocols = Some(protocols.to_vec());
        self
    }

    /// Adds a parser of the embedding program's own, tried after the built-ins.
    pub fn parser(mut self, parser: Arc<dyn Parser>) -> Self {
        self.extra_parsers.push(parser);
        self
    }

    /// Sets which HTTP headers carry trace context and request ids.
    pub fn http1_config(mut self, config: protocols::Http1Config) -> Self {
        self.http1 = Some(config);
        self
    }

    /// Largest message kept whole (default 64 KiB); longer ones are cut and flagged truncated.
    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.config.max_message_bytes = n;
        self
    }

    /// Most flows tracked in all (split evenly between workers).
    pub fn max_flows(mut self, n: usize) -> Self {
        self.config.max_flows_per_worker = n;
        self
    }

    /// Flows unseen this long are removed (capture time).
    pub fn flow_idle_timeout(mut self, d: Duration) -> Self {
        self.config.flow_idle_timeout_ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self
    }

    /// Requests unanswered this long are flushed with status `timeout` (capture time).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.config.request_timeout_ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self
    }

    /// Most requests waiting for responses on one flow.
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.config.max_pending_requests = n;
        self
    }

    /// Replaces all core limits at once.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Number of worker threads (default: cores, at most 8).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Capacity of each worker's input queue, in batches of segments.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Records go to a bounded channel of this capacity (the default, 4096), read with
    /// [`Engine::records`].
    pub fn channel_output(mut self, capacity: usize) -> Self {
        self.output = Output::Channel(capacity);
        self
    }

    /// Records are handed to `f` on the worker threads instead of a channel.
    pub fn on_record(mut self, f: impl Fn(L7Record) + Send + Sync + 'static) -> Self {
        self.output = Output::Callback(Arc::new(f));
        self
    }

    /// What to do when a queue is full (default: block).
    pub fn backpressure(mut self, b: Backpressure) -> Self {
        self.backpressure = b;
        self
    }

    /// Runs the plugins of `host` on every record before it is handed out (HTTP hooks) and
    /// lets them claim custom protocols (payload hooks). Plugins can be loaded, unloaded and
    /// reloaded on `host` while the engine runs.
    pub fn plugins(mut self, host: PluginHost) -> Self {
        self.plugins = Some(host);
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Engine, EngineError> {
        if self.workers == 0 || self.workers > 256 {
            return Err(EngineError::Config(format!(
                "workers must be 1..=256, not {}",
                self.workers
            )));
        }
        if self.config.max_message_bytes < 64 {
            return Err(EngineError::Config(
                "max_message_bytes must be at least 64".into(),
            ));
        }
        if self.queue_capacity == 0 {
            return Err(EngineError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        let mut parsers: Vec<Arc<dyn Parser>> = match &self.protocols {
            None => protocols::default_parsers(),
            Some(list) => protocols::parsers_for(list).map_err(EngineError::Config)?,
        };
        if let Some(h) = self.http1.clone() {
            for p in parsers.iter_mut() {
                if p.protocol() == Protocol::Http1 {
                    *p = Arc::new(protocols::Http1Parser::new(h.clone()));
                }
            }
        }
        parsers.extend(self.extra_parsers.iter().cloned());
        if let Some(host) = &self.plugins {
            // Plugin protocols come last: they claim what no built-in parser recognised.
            parsers.push(Arc::new(l7tap_wasm_host::WasmParser::new(host.clone())));
        }
        if parsers.len() > l7tap_core::counters_capacity() {
            return Err(EngineError::Config("too many parsers".into()));
        }
        let protocol_names: Vec<String> = parsers
            .iter()
            .map(|p| p.protocol().name().to_string())
            .collect();
        let parsers: Arc<[Arc<dyn Parser>]> = parsers.into();
        let mut config = self.config.clone();
        config.max_flows_per_worker = (config.max_flows_per_worker / self.workers).max(1);

        let (out_tx, out_rx) = match &self.output {
            Output::Channel(cap) => {
                let (tx, rx) = bounded((*cap).max(1));
                (Some(tx), Some(rx))
            }
            Output::Callback(_) => (None, None),
        };
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        let mut counters = Vec::new();
        for i in 0..self.workers {
            let (tx, rx) = bounded::<Work>(self.queue_capacity);
            let c = Arc::new(Counters::default());
            let sink = match (&self.output, &out_tx) {
                (Output::Callback(f), _) => Sink::Callback(Arc::clone(f)),
                (_, Some(tx)) => Sink::Channel(tx.clone(), self.backpressure),
                (_, None) => return Err(EngineError::Config("no output".into())),
            };
            let proc = FlowProcessor::new(Arc::clone(&parsers), config.clone(), Arc::clone(&c));
            let plugins = self.plugins.clone();
            let h = std::thread::Builder::new()
                .name(format!("l7tap-worker-{i}"))
                .spawn(move || worker(rx, proc, sink, plugins))
                .map_err(|e| EngineError::Config(format!("cannot start worker thread: {e}")))?;
            txs.push(tx);
            handles.push(h);
            counters.push(c);
        }
        Ok(Engine {
            txs,
            handles,
            counters,
            records: parking_lot::Mutex::new(out_rx),
            protocol_names,
            backpressure: self.backpressure,
            input_drops: AtomicU64::new(0),
            output_drops: AtomicU64::new(0),
            batches: (0..self.workers).map(|_| Vec::new()).collect(),
            source_stats: StatsSnapshot::default(),
        })
    }
}

enum Work {
    Batch(Vec<Segment>),
    Flush(Sender<()>),
}

enum Sink {
    Channel(Sender<L7Record>, Backpressure),
    Callback(Callback),
}

fn worker(rx: Receiver<Work>, mut proc: FlowProcessor, sink: Sink, plugins: Option<PluginHost>) {
    let counters = Arc::clone(proc.counters());
    let mut emit = |mut rec: L7Record| {
        // Hooks reach the record before any sink sees it.
        if let Some(host) = &plugins {
            host.on_http_record(&mut rec);
        }
        deliver(&sink, &counters, rec)
    };
    worker_loop(rx, &mut proc, &mut emit);
}

fn deliver(sink: &Sink, counters: &Counters, rec: L7Record) {
    match sink {
        Sink::Callback(f) => f(rec),
        Sink::Channel(tx, Backpressure::Block) => {
            // The receiver went away: nobody wants records any more; keep counting them.
            if tx.send(rec).is_err() {
                counters.count_drop(DropReason::OutputQueueFull, 1);
            }
        }
        Sink::Channel(tx, Backpressure::Drop) => {
            if tx.try_send(rec).is_err() {
                counters.count_drop(DropReason::OutputQueueFull, 1);
            }
        }
    }
}

/// Runs `f` on the processor; a panic in it (a bug in l7tap or in a parser or callback given
/// to the engine: the default hook has printed it on stderr) is contained: the worker
/// forgets its flows, counts it (`internal_errors`, `drop_flows_reset_after_panic`) and goes
/// on with the next segment, instead of its thread dying and its flows going silent.
fn contained(
    proc: &mut FlowProcessor,
    emit: &mut dyn FnMut(L7Record),
    f: impl FnOnce(&mut FlowProcessor, &mut dyn FnMut(L7Record)),
) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut *proc, &mut *emit)));
    if run.is_err() {
        proc.reset_after_panic();
    }
}

fn worker_loop(rx: Receiver<Work>, proc: &mut FlowProcessor, emit: &mut dyn FnMut(L7Record)) {
    for work in rx.iter() {
        match work {
            Work::Batch(segs) => {
                for s in segs {
                    contained(proc, emit, |p, e| p.process(s, e));
                }
            }
            Work::Flush(ack) => {
                contained(proc, emit, |p, e| p.flush_all(e));
                let _ = ack.send(());
            }
        }
    }
    contained(proc, emit, |p, e| p.flush_all(e));
}

/// Segments per batch handed to a worker by [`Engine::run`].
const BATCH: usize = 64;

/// The running pipeline. Dropping it stops the workers (after they finish their queues).
pub struct Engine {
    txs: Vec<Sender<Work>>,
    handles: Vec<JoinHandle<()>>,
    counters: Vec<Arc<Counters>>,
    /// The record channel's receiver until [`Engine::records`] hands it out.
    records: parking_lot::Mutex<Option<Receiver<L7Record>>>,
    protocol_names: Vec<String>,
    backpressure: Backpressure,
    input_drops: AtomicU64,
    /// Records of a channel never handed out, dropped at shutdown.
    output_drops: AtomicU64,
    batches: Vec<Vec<Segment>>,
    source_stats: StatsSnapshot,
}

impl Engine {
    /// A builder with the defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The record channel, unless records go to a callback. The first call hands it out
    /// (clone it for more readers); later calls return `None`. Iterating it ends once
    /// [`Engine::finish`] has run and every record was read. The engine keeps no receiver
    /// of its own: once every receiver is dropped, records are counted as
    /// `drop_output_queue_full` instead of blocking the workers on a channel nobody reads.
    pub fn records(&self) -> Option<Receiver<L7Record>> {
        self.records.lock().take()
    }

    fn worker_of(&self, seg: &Segment) -> usize {
        (seg.flow.shard_hash() % self.txs.len() as u64) as usize
    }

    fn send(&self, w: usize, work: Work) {
        let n = match &work {
            Work::Batch(v) => v.len() as u64,
            Work::Flush(_) => 0,
        };
        let Some(tx) = self.txs.get(w) else { return };
        match self.backpressure {
            Backpressure::Block => {
                if tx.send(work).is_err() {
                    self.input_drops.fetch_add(n, Ordering::Relaxed);
                }
            }
            Backpressure::Drop => match tx.try_send(work) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.input_drops.fetch_add(n, Ordering::Relaxed);
                }
            },
        }
    }

    /// Hands one segment to its flow's worker at once (for hosts that capture themselves).
    pub fn feed(&self, seg: Segment) {
        let w = self.worker_of(&seg);
        self.send(w, Work::Batch(vec![seg]));
    }

    /// Queues a segment in its worker's batch; batches go out when full or on
    /// [`Engine::flush_input`]. Cheaper than [`Engine::feed`] per segment.
    pub fn feed_batched(&mut self, seg: Segment) {
        let w = self.worker_of(&seg);
        self.batches[w].push(seg);
        if self.batches[w].len() >= BATCH {
            let b = std::mem::replace(&mut self.batches[w], Vec::with_capacity(BATCH));
            self.send(w, Work::Batch(b));
        }
    }

    /// Sends out the partly filled batches of [`Engine::feed_batched`].
    pub fn flush_input(&mut self) {
        for w in 0..self.batches.len() {
            if !self.batches[w].is_empty() {
                let b = std::mem::take(&mut self.batches[w]);
                self.send(w, Work::Batch(b));
            }
        }
    }

    /// Reads `source` to its end. Its counters are added to [`Engine::stats`]. On a source
    /// error, what was read before it has been processed.
    pub fn run(&mut self, source: &mut dyn Source) -> Result<(), EngineError> {
        let me = std::cell::RefCell::new(&mut *self);
        let res = source.run_live(
            &mut |seg| {
                me.borrow_mut().feed_batched(seg);
                true
            },
            &mut || me.borrow_mut().flush_input(),
        );
        self.flush_input();
        self.source_stats.merge(&source.stats());
        res.map_err(EngineError::from)
    }

    /// Ends every flow now (what is buffered is parsed as final, waiting requests flushed as
    /// unpaired) and waits until the workers did so. The engine stays usable.
    pub fn flush(&mut self) {
        self.flush_input();
        let mut acks = Vec::new();
        for w in 0..self.txs.len() {
            let (tx, rx) = bounded(1);
            self.send(w, Work::Flush(tx));
            acks.push(rx);
        }
        for rx in acks {
            let _ = rx.recv();
        }
    }

    /// Counters of every stage, summed over the workers, plus the sources run so far.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot::default();
        for c in &self.counters {
            s.merge(&c.snapshot(&self.protocol_names));
        }
        s.merge(&StatsSnapshot(vec![
            (
                DropReason::InputQueueFull.name().to_string(),
                self.input_drops.load(Ordering::Relaxed),
            ),
            (
                DropReason::OutputQueueFull.name().to_string(),
                self.output_drops.load(Ordering::Relaxed),
            ),
        ]));
        s.merge(&self.source_stats);
        s
    }

    /// Ends all flows, stops the workers and returns the final counters. The record channel
    /// closes once its last record is read. With channel output and blocking backpressure,
    /// read the channel from another thread (or drop the receiver) while this runs: the
    /// workers wait for room to hand out the records of the flows they end.
    pub fn finish(mut self) -> StatsSnapshot {
        self.flush_input();
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.txs.clear();
        // A record channel never handed out has no reader: its records are taken here and
        // counted as dropped, so the workers ending their flows never wait for room.
        let unread = self.records.lock().take();
        let discard = |rx: &Receiver<L7Record>| {
            let n = rx.try_iter().count() as u64;
            if n > 0 {
                self.output_drops.fetch_add(n, Ordering::Relaxed);
            }
        };
        for h in std::mem::take(&mut self.handles) {
            if let Some(rx) = &unread {
                while !h.is_finished() {
                    discard(rx);
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            let _ = h.join();
        }
        if let Some(rx) = &unread {
            discard(rx);
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.flush_input();
        self.shutdown();
    }
}

/// The README's Rust examples, compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
