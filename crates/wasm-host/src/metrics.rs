//! Per-plugin metrics.

use crate::imports::{LogLevel, LogSink};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The hooks, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `check_payload`.
    CheckPayload,
    /// `parse_payload`.
    ParsePayload,
    /// `on_http_req`.
    HttpReq,
    /// `on_http_resp`.
    HttpResp,
    /// `on_custom_message`.
    CustomMessage,
}

impl Hook {
    /// Every hook, in counter order.
    pub const ALL: [Hook; 5] = [
        Hook::CheckPayload,
        Hook::ParsePayload,
        Hook::HttpReq,
        Hook::HttpResp,
        Hook::CustomMessage,
    ];

    /// The export's name.
    pub fn export(self) -> &'static str {
        match self {
            Hook::CheckPayload => "check_payload",
            Hook::ParsePayload => "parse_payload",
            Hook::HttpReq => "on_http_req",
            Hook::HttpResp => "on_http_resp",
            Hook::CustomMessage => "on_custom_message",
        }
    }

    fn index(self) -> usize {
        Hook::ALL.iter().position(|h| *h == self).unwrap_or(0)
    }
}

/// Why a plugin call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...).
    Trap,
    /// The per-call instruction budget ran out (an endless loop).
    Budget,
    /// The call ran past its wall-clock deadline (`PluginLimits::max_call_time`).
    Deadline,
    /// The guest hit the linear-memory cap.
    Memory,
    /// The hook returned a code the ABI does not define.
    BadReturn,
    /// The plugin could not be instantiated on a worker.
    Instantiate,
}

impl FailureKind {
    /// Every kind, in counter order.
    pub const ALL: [FailureKind; 6] = [
        FailureKind::Trap,
        FailureKind::Budget,
        FailureKind::Deadline,
        FailureKind::Memory,
        FailureKind::BadReturn,
        FailureKind::Instantiate,
    ];

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Budget => "budget",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::BadReturn => "bad_return",
            FailureKind::Instantiate => "instantiate",
        }
    }

    fn index(self) -> usize {
        FailureKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(0)
    }
}

/// The per-call counters of one plugin on one worker thread. Only that thread writes them
/// (a plain load and store each, no locked instruction on the call path: the locked adds of
/// shared counters were ~20 ns of every call here); readers sum every thread's.
#[derive(Debug, Default)]
pub(crate) struct CallStats {
    calls: [AtomicU64; 5],
    ticks: AtomicU64,
    max_ticks: AtomicU64,
    instructions: AtomicU64,
}

impl CallStats {
    /// Counts one call. Only the owning thread calls this.
    #[inline]
    pub(crate) fn record(&self, hook: Hook, ticks: u64, instructions: u64) {
        let bump = |a: &AtomicU64, by: u64| {
            a.store(
                a.load(Ordering::Relaxed).wrapping_add(by),
                Ordering::Relaxed,
            )
        };
        bump(&self.calls[hook.index()], 1);
        bump(&self.ticks, ticks);
        bump(&self.instructions, instructions);
        if ticks > self.max_ticks.load(Ordering::Relaxed) {
            self.max_ticks.store(ticks, Ordering::Relaxed);
        }
    }

    /// Adds `other` into these counters (locked adds: `self` is shared).
    fn absorb(&self, other: &CallStats) {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (a, b) in self.calls.iter().zip(&other.calls) {
            a.fetch_add(ld(b), Ordering::Relaxed);
        }
        self.ticks.fetch_add(ld(&other.ticks), Ordering::Relaxed);
        self.instructions
            .fetch_add(ld(&other.instructions), Ordering::Relaxed);
        self.max_ticks
            .fetch_max(ld(&other.max_ticks), Ordering::Relaxed);
    }
}

/// Counters of one plugin, shared by every worker's instance of it.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    failures: [AtomicU64; FailureKind::ALL.len()],
    /// Results the host rejected as malformed (blob or string that does not decode).
    pub bad_results: AtomicU64,
    /// Guest pointers out of its memory passed to an import (answered with 0).
    pub bad_pointers: AtomicU64,
    /// Records the plugin changed.
    pub records_modified: AtomicU64,
    /// Linear memory size after the last call, bytes.
    pub memory_bytes: AtomicU64,
    /// Log lines about this plugin (its own, and the host's) dropped by the rate limit
    /// (`PluginLimits::max_log_lines_per_sec`).
    pub log_dropped: AtomicU64,
    /// The rate limit's window: the second it counts, the lines passed and dropped in it.
    log_second: AtomicU64,
    log_passed: AtomicU64,
    log_window_dropped: AtomicU64,
    /// Calls, time and operators: one set per live instance (its thread writes it alone)...
    shards: Mutex<Vec<Arc<CallStats>>>,
    /// ...and the sum of those whose instance is gone. At most one shard per live instance
    /// is kept: a new one folds the dead ones in here.
    retired: CallStats,
}

impl PluginMetrics {
    /// A fresh set of call counters for one instance, counted in this plugin's totals.
    pub(crate) fn shard(&self) -> Arc<CallStats> {
        let mut shards = self.shards.lock();
        shards.retain_mut(|s| {
            // Unique: its instance (and thread's writes, ordered by the Arc drop) are done.
            let dead = Arc::get_mut(s).is_some();
            if dead {
                self.retired.absorb(s);
            }
            !dead
        });
        let s = Arc::new(CallStats::default());
        shards.push(Arc::clone(&s));
        s
    }

    /// One counter over every instance's shard and the retired ones, combined by `join`.
    fn fold(&self, f: impl Fn(&CallStats) -> &AtomicU64, join: fn(u64, u64) -> u64) -> u64 {
        let ld = |s: &CallStats| f(s).load(Ordering::Relaxed);
        let shards = self.shards.lock();
        shards.iter().fold(ld(&self.retired), |a, s| join(a, ld(s)))
    }

    fn sum(&self, f: impl Fn(&CallStats) -> &AtomicU64) -> u64 {
        self.fold(f, u64::wrapping_add)
    }

    /// Total execution time of every call, ns.
    pub fn total_ns(&self) -> u64 {
        clock::to_ns(self.sum(|s| &s.ticks))
    }

    /// The longest single call, ns.
    pub fn max_ns(&self) -> u64 {
        clock::to_ns(self.fold(|s| &s.max_ticks, u64::max))
    }

    /// Wasm operators executed by every call (metered; deterministic, unlike time).
    pub fn instructions(&self) -> u64 {
        self.sum(|s| &s.instructions)
    }

    /// Hands `msg` to `sink` unless `per_sec` lines of this plugin were logged this second
    /// already (then it is counted in `log_dropped`). The first line of the next second that
    /// passes is preceded by one saying how many were dropped. A plugin that logs on every
    /// record, or fails on every other one (never disabled), cannot flood the host's log.
    pub(crate) fn log(
        &self,
        sink: &LogSink,
        plugin: &str,
        level: LogLevel,
        msg: &str,
        per_sec: u32,
    ) {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let second = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs()
            + 1;
        let seen = self.log_second.load(Ordering::Relaxed);
        if seen != second
            && self
                .log_second
                .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.log_passed.store(0, Ordering::Relaxed);
            let dropped = self.log_window_dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                sink(
                    plugin,
                    LogLevel::Warn,
                    &format!("{dropped} log lines dropped (limit: {per_sec} per second)"),
                );
            }
        }
        if self.log_passed.fetch_add(1, Ordering::Relaxed) < u64::from(per_sec) {
            sink(plugin, level, msg);
        } else {
            self.log_window_dropped.fetch_add(1, Ordering::Relaxed);
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fail(&self, kind: FailureKind) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of a hook.
    pub fn calls(&self, hook: Hook) -> u64 {
        self.sum(|s| &s.calls[hook.index()])
    }

    /// Failures of a kind.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind.index()].load(Ordering::Relaxed)
    }

    /// Every counter by name (`calls_on_http_resp`, `failures_trap`, ...).
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for h in Hook::ALL {
            v.push((format!("calls_{}", h.export()), self.calls(h)));
        }
        for k in FailureKind::ALL {
            v.push((format!("failures_{}", k.name()), self.failures(k)));
        }
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        v.push(("bad_results".into(), ld(&self.bad_results)));
        v.push(("bad_pointers".into(), ld(&self.bad_pointers)));
        v.push(("records_modified".into(), ld(&self.records_modified)));
        v.push(("total_ns".into(), self.total_ns()));
        v.push(("max_ns".into(), self.max_ns()));
        v.push(("instructions".into(), self.instructions()));
        v.push(("memory_bytes".into(), ld(&self.memory_bytes)));
        v.push(("log_dropped".into(), ld(&self.log_dropped)));
        v
    }
}

/// The clock of the per-call time metrics. Two reads per hook call: `Instant::now()` costs
/// ~43 ns here (vDSO clock_gettime in a VM), the time-stamp counter ~23 ns (a few ns on bare
/// metal). Ticks are turned into ns when read, against `Instant` over the process's lifetime
/// (calibrated for 2 ms at the first use, then ever more precise). Needs a constant-rate
/// TSC (`constant_tsc`, every x86_64 CPU of the last 15 years); elsewhere ticks are ns.
pub mod clock {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// (Instant, ticks) at the first use, and the ns per tick measured then.
    static START: OnceLock<(Instant, u64, f64)> = OnceLock::new();

    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    fn raw() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU and has no memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn raw() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }

    fn start() -> &'static (Instant, u64, f64) {
        START.get_or_init(|| {
            let (i0, t0) = (Instant::now(), raw());
            let mut dt = i0.elapsed();
            while dt < Duration::from_millis(2) {
                std::hint::spin_loop();
                dt = i0.elapsed();
            }
            let ticks = raw().wrapping_sub(t0).max(1);
            (i0, t0, dt.as_nanos() as f64 / ticks as f64)
        })
    }

    /// Starts the calibration (done by the host when it is created, off the hot path).
    pub fn init() {
        start();
    }

    /// The current tick.
    #[inline]
    pub fn now() -> u64 {
        raw()
    }

    /// ns as ticks (at the rate measured at the first use: for deadlines, not metrics).
    pub fn from_ns(ns: u64) -> u64 {
        let (_, _, first) = *start();
        if cfg!(not(target_arch = "x86_64")) {
            return ns;
        }
        (ns as f64 / first) as u64
    }

    /// Ticks as ns.
    pub fn to_ns(ticks: u64) -> u64 {
        let (i0, t0, first) = *start();
        if cfg!(not(target_arch = "x86_64")) {
            return ticks;
        }
        let dt = i0.elapsed();
        let dticks = raw().wrapping_sub(t0);
        let per_tick = if dt > Duration::from_millis(100) && dticks > 0 {
            dt.as_nanos() as f64 / dticks as f64
        } else {
            first
        };
        (ticks as f64 * per_tick) as u64
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn ticks_convert_to_about_the_elapsed_time() {
            let t0 = super::now();
            let i0 = std::time::Instant::now();
            std::thread::sleep(std::time::Duration::from_millis(20));
            let ns = super::to_ns(super::now() - t0);
            let real = i0.elapsed().as_nanos() as u64;
            // Within 10 % of what Instant measured over the same span.
            assert!(ns.abs_diff(real) < real / 10, "{ns} vs {real}");
        }
    }
}
