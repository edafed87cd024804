//! The crate's one error type.

/// Everything that can go wrong in this crate. No public function panics on bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter matched the request; the message says what to install or set.
    #[error("no GPU adapter found{detail}: install a Vulkan, Metal, DX12 or GL driver (on Debian without a GPU: `apt-get install mesa-vulkan-drivers libvulkan1` for lavapipe, `libegl1 libegl-mesa0 libgl1-mesa-dri` for llvmpipe GL)")]
    NoAdapter {
        /// What was asked for (backend or adapter name), or empty.
        detail: String,
    },
    /// The adapter refused to create a device.
    #[error("the adapter could not create a device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// One of several adapters failed ([`crate::Engine::all`]); names which.
    #[error("adapter {adapter}: {source}")]
    Adapter {
        /// The adapter's name and backend.
        adapter: String,
        /// What went wrong.
        source: Box<Error>,
    },
    /// A shape with a zero dimension, or one whose element count overflows.
    #[error("invalid shape [{rows}, {cols}]: {reason}")]
    InvalidShape {
        /// Rows asked for.
        rows: usize,
        /// Columns asked for.
        cols: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The data does not have the length the shape needs.
    #[error("{what} has {got} elements but shape [{rows}, {cols}] needs {expected}")]
    ShapeMismatch {
        /// Which argument.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length the shape needs.
        expected: usize,
        /// Rows of the shape.
        rows: usize,
        /// Columns of the shape.
        cols: usize,
    },
    /// The temperature is not a finite, normal (not subnormal), positive number.
    #[error("temperature must be finite and > 0 (and at least {min:e}), got {value}", min = f32::MIN_POSITIVE)]
    InvalidTemperature {
        /// The value given.
        value: f32,
    },
    /// A sampling parameter (or a caller's uniform) outside its domain.
    #[error("row {row}: invalid {name} = {value}: {reason}")]
    InvalidSampling {
        /// The row whose parameter it is.
        row: usize,
        /// The parameter.
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
    /// An option outside its domain.
    #[error("invalid option {name} = {value}: {reason}")]
    InvalidOption {
        /// Option name.
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },
    /// A row is too long for one workgroup of a CPU adapter: Mesa's lavapipe and llvmpipe
    /// end any shader loop after 65535 iterations per invocation, silently.
    #[error(
        "{what}: {items} items per row exceed the {limit} that one workgroup of this CPU \
         adapter can loop over (Mesa ends shader loops after 65535 iterations)"
    )]
    RowTooLong {
        /// The operation.
        what: &'static str,
        /// Items (logits, blocks or rows) one workgroup would loop over.
        items: u64,
        /// The most it can.
        limit: u64,
    },
    /// A forced kernel variant cannot run this shape on this adapter.
    #[error("the {variant} kernel variant cannot run this operation: {reason}")]
    UnsupportedVariant {
        /// The variant asked for.
        variant: &'static str,
        /// Why not, and the limit.
        reason: String,
    },
    /// The problem exceeds a limit of the adapter.
    #[error("{what} needs {needed} bytes, past the adapter's {limit_name} of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Bytes needed.
        needed: u64,
        /// Which limit.
        limit_name: &'static str,
        /// The limit's value.
        limit: u64,
    },
    /// A caller's buffer cannot serve as the argument it was passed for.
    #[error("buffer argument `{what}`: {reason}")]
    InvalidBuffer {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The dtype is not supported for this argument or on this device.
    #[error("dtype {dtype:?} is not supported here: {reason}")]
    UnsupportedDType {
        /// The dtype asked for.
        dtype: crate::DType,
        /// Why.
        reason: &'static str,
    },
    /// A cross-entropy target outside `[0, cols)` that is not `ignore_index`.
    #[error("target {target} of row {row} is outside [0, {cols}) and is not ignore_index")]
    InvalidTarget {
        /// The first offending row.
        row: usize,
        /// Its target.
        target: i64,
        /// The number of classes.
        cols: usize,
    },
    /// The GPU ran out of memory.
    #[error("the GPU is out of memory: {0}")]
    OutOfMemory(String),
    /// wgpu reported a validation error (a bug in this crate or in the caller's buffers).
    #[error("wgpu validation error: {0}")]
    Validation(String),
    /// A benchmark's output disagreed with the f64 oracle (`bench::Prepared::verify`, with the `cli` feature).
    #[error("{what} came out wrong: {detail}")]
    WrongResult {
        /// The case.
        what: String,
        /// The first disagreement.
        detail: String,
    },
    /// The device was lost (driver reset, removed GPU); create a new `Engine`.
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    /// Waiting on the device failed.
    #[error("waiting for the GPU failed: {0}")]
    Poll(#[from] wgpu::PollError),
    /// Reading results back failed.
    #[error("reading results back from the GPU failed: {0}")]
    Readback(#[from] wgpu::BufferAsyncError),
}

impl From<wgpu::Error> for Error {
    fn from(e: wgpu::Error) -> Self {
        match e {
            wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(e.to_string()),
            other => Error::Validation(other.to_string()),
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The error for a target outside `[0, cols)` that is not `ignore_index`.
    pub(crate) fn invalid_target(row: usize, target: i64, cols: usize) -> Self {
        Error::InvalidTarget { row, target, cols }
    }
}
