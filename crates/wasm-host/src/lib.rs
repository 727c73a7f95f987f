//! placeholder while the build is measured
#![allow(missing_docs)]
pub use wasmer;
pub use wasmer_middlewares;
