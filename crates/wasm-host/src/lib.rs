//! l7tap-wasm-host: runs DeepFlow-ABI Wasm plugins on wasmer.
#![deny(missing_docs)]

pub mod abi;
pub mod host;
pub mod imports;
pub mod limits;
pub mod metrics;
pub mod result;
mod watchdog;

pub use host::{stderr_log, LoadError, Plugin, PluginHost};
pub use imports::{LogLevel, LogSink};
pub use limits::PluginLimits;
pub use metrics::{FailureKind, Hook, PluginMetrics};
pub mod dispatch;
pub mod sample;

/// Turns WebAssembly text into a module (for `.wat` plugins and tests).
pub fn wat_to_wasm(text: &[u8]) -> Result<Vec<u8>, String> {
    wasmer::wat2wasm(text)
        .map(|c| c.into_owned())
        .map_err(|e| e.to_string())
}
pub mod parser;
pub use parser::WasmParser;
