//! l7tap-wasm-host: runs DeepFlow-ABI Wasm plugins on wasmer.
#![deny(missing_docs)]

pub mod abi;
pub mod imports;
pub mod metrics;
pub mod result;
pub mod limits;
pub mod host;

pub use host::{LoadError, Plugin, PluginHost, stderr_log};
pub use imports::{LogLevel, LogSink};
pub use limits::PluginLimits;
pub use metrics::{FailureKind, Hook, PluginMetrics};
pub mod dispatch;
