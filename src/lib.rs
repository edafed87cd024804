//! Numerically stable softmax, log_softmax and logsumexp over batched logits on any GPU,
//! in WGSL compute shaders through wgpu.
//!
//! Every kernel shifts by the row maximum, so no input overflows or underflows needlessly:
//! `softmax(z)_i = exp((z_i - m)/T) / sum_j exp((z_j - m)/T)` with `m = max_j z_j`.
//! Edge cases (NaN, `+inf`, all `-inf` rows) behave as PyTorch's. Results are checked
//! against an f64 CPU [`oracle`] within the contract of [`accuracy`].
//!
//! Two layers:
//! - host slices: [`Engine::softmax_async`], [`Engine::log_softmax_async`],
//!   [`Engine::logsumexp_async`], [`Engine::forward_async`] and the training operations,
//!   with blocking twins on native targets ([`Engine::softmax`], ...). In a browser
//!   (`wasm32-unknown-unknown`, wgpu's WebGPU backend) only the `async` forms exist: nothing
//!   there may block; `web/` wraps them for JavaScript;
//! - device level, for embedding: [`Engine::from_device`] wraps the caller's device and
//!   [`Engine::record_forward`] records into the caller's command encoder.
//!
//! ```no_run
//! use softmax_wgpu::{Engine, EngineOptions, Shape, SoftmaxOptions};
//! let engine = Engine::new_blocking(EngineOptions::default())?;
//! let p = engine.softmax(&[1000.0f32, 1001.0, 999.0], Shape::new(1, 3), &SoftmaxOptions::default())?;
//! assert!((p[1] - 0.665_241).abs() < 1e-6);
//! # Ok::<(), softmax_wgpu::Error>(())
//! ```

#![deny(missing_docs)]

pub mod accuracy;
#[cfg(feature = "cli")]
pub mod bench;
mod copy;
mod dtype;
mod engine;
mod error;
mod execute;
mod explain;
mod half_probe;
#[doc(hidden)]
pub use half_probe::{bit_conversions_are_exact, unit_conversions_are_exact};
mod host;
mod launch;
mod options;
pub mod oracle;
mod params;
mod pipeline;
mod plan;
mod pool;
mod profile;
mod record;
pub mod sampling;
mod scope;
#[doc(hidden)]
pub use scope::scoped;
#[doc(hidden)]
pub mod shader;
#[cfg(test)]
mod snapshot;
mod stopwatch;
mod training;
mod tuning;
pub mod vocab_parallel;

pub use copy::{CopyKind, CopyWord};
pub use dtype::{DType, Element};
pub use engine::{adapters, quiet_headless_vulkan, Engine, WANTED_FEATURES};
pub use error::{Error, Result};
pub use explain::Explanation;
pub use host::ForwardResult;
pub use options::{
    AccessPattern, CrossEntropyOptions, EngineOptions, Forward, HalfPath, MaskedRows, Reduction,
    Shape, SoftmaxOptions, Tuning, Variant,
};
pub use profile::EngineInfo;
pub use record::{ForwardArgs, TensorRef};
pub use stopwatch::median;
#[cfg(not(target_arch = "wasm32"))]
pub use stopwatch::{Clock, Stopwatch};
pub use training::{CrossEntropyArgs, CrossEntropyResult, GradOutput};
pub use {half, wgpu};

/// The README's code blocks, compiled by `cargo test --doc` so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
