//! Limits and timeouts of the pipeline.

/// Limits and timeouts; every table and buffer of the core is bounded by one of these.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest message kept whole; longer messages are cut and the record flagged `truncated`.
    pub max_message_bytes: usize,
    /// Most flows one worker tracks; beyond, the least recently seen flow is evicted (counted).
    pub max_flows_per_worker: usize,
    /// A flow unseen for this long (capture time) is removed and its pending requests flushed.
    pub flow_idle_timeout_ns: u64,
    /// A request unanswered for this long is flushed with status `timeout`.
    pub request_timeout_ns: u64,
    /// Most requests waiting for a response on one flow.
    pub max_pending_requests: usize,
    /// Payload segments tried for inference before a flow is given up as unparseable.
    pub max_inference_attempts: u32,
    /// Consecutive parse errors before a flow stops being parsed.
    pub max_parse_errors_per_flow: u32,
    /// Entries of the per-server inference cache.
    pub inference_cache_entries: usize,
    /// How often (capture time) timeouts are swept.
    pub sweep_interval_ns: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: 64 * 1024,
            max_flows_per_worker: 65_536,
            flow_idle_timeout_ns: 120 * 1_000_000_000,
            request_timeout_ns: 30 * 1_000_000_000,
            max_pending_requests: 256,
            max_inference_attempts: 8,
            max_parse_errors_per_flow: 8,
            inference_cache_entries: 16_384,
            sweep_interval_ns: 1_000_000_000,
        }
    }
}
