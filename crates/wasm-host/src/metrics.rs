//! Per-plugin metrics.

use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The guest hit the linear-memory cap.
    Memory,
    /// The hook returned a code the ABI does not define.
    BadReturn,
    /// The plugin could not be instantiated on a worker.
    Instantiate,
}

impl FailureKind {
    /// Every kind, in counter order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Trap,
        FailureKind::Budget,
        FailureKind::Memory,
        FailureKind::BadReturn,
        FailureKind::Instantiate,
    ];

    /// Counter name.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Budget => "budget",
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

/// Counters of one plugin, shared by every worker's instance of it.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    calls: [AtomicU64; 5],
    failures: [AtomicU64; 5],
    /// Results the host rejected as malformed (blob or string that does not decode).
    pub bad_results: AtomicU64,
    /// Guest pointers out of its memory passed to an import (answered with 0).
    pub bad_pointers: AtomicU64,
    /// Records the plugin changed.
    pub records_modified: AtomicU64,
    /// Total execution time, ns.
    pub total_ns: AtomicU64,
    /// Longest single call, ns.
    pub max_ns: AtomicU64,
    /// Linear memory size after the last call, bytes.
    pub memory_bytes: AtomicU64,
}

impl PluginMetrics {
    pub(crate) fn call(&self, hook: Hook, ns: u64) {
        self.calls[hook.index()].fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(crate) fn fail(&self, kind: FailureKind) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Calls of a hook.
    pub fn calls(&self, hook: Hook) -> u64 {
        self.calls[hook.index()].load(Ordering::Relaxed)
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
        v.push(("total_ns".into(), ld(&self.total_ns)));
        v.push(("max_ns".into(), ld(&self.max_ns)));
        v.push(("memory_bytes".into(), ld(&self.memory_bytes)));
        v
    }
}
