//! Shapes and options of the operations.

use crate::error::{Error, Result};

/// A row-major `[rows, cols]` batch of logits; every operation works along `cols`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of rows (batch). At least 1.
    pub rows: usize,
    /// Length of each row (the vocabulary). At least 1.
    pub cols: usize,
}

impl Shape {
    /// A `[rows, cols]` shape.
    pub const fn new(rows: usize, cols: usize) -> Self {
        Shape { rows, cols }
    }

    /// `rows * cols`.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// True when either dimension is zero.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 || self.cols == 0
    }

    /// Refuses zero dimensions and counts that overflow.
    pub(crate) fn validate(&self) -> Result<()> {
        let err = |reason| Error::InvalidShape {
            rows: self.rows,
            cols: self.cols,
            reason,
        };
        if self.is_empty() {
            return Err(err("rows and cols must both be at least 1"));
        }
        if self.rows.checked_mul(self.cols).is_none() || self.cols > u32::MAX as usize {
            return Err(err("the element count overflows"));
        }
        Ok(())
    }

    /// Checks that `got` elements fill the shape.
    pub(crate) fn expect_len(&self, what: &'static str, got: usize) -> Result<()> {
        self.validate()?;
        if got != self.len() {
            return Err(Error::ShapeMismatch {
                what,
                got,
                expected: self.len(),
                rows: self.rows,
                cols: self.cols,
            });
        }
        Ok(())
    }
}

/// The forward operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Forward {
    /// `exp((z_i - m)/T) / sum_j exp((z_j - m)/T)`.
    Softmax,
    /// `(z_i - m)/T - log(sum_j exp((z_j - m)/T))`.
    LogSoftmax,
    /// One value per row: `m/T + log(sum_j exp((z_j - m)/T))`.
    LogSumExp,
}

/// What rows that are entirely `-inf` produce in softmax and log_softmax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MaskedRows {
    /// NaN, as PyTorch.
    #[default]
    Nan,
    /// Zeros, as attention code wants for fully masked rows. logsumexp stays `-inf`.
    Zeros,
}

/// The kernel variant of a forward operation. Every variant gives results under the same
/// accuracy contract and edge-case rules; they differ in speed only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Chosen from the operation, the shape and the adapter ([`crate::Engine::forward_variant`]
    /// tells which).
    #[default]
    Auto,
    /// One workgroup per row, the row held in registers: one read, one write. For rows up
    /// to [`crate::Engine::resident_cols`] long.
    Resident,
    /// One workgroup per row, a running (max, sum) over one read, then a second read to
    /// write: any row length.
    Online,
    /// Each row cut into pieces over many workgroups, whose partial (max, sum) merge: for a
    /// few long rows, so that one row uses the whole GPU.
    SplitRow,
    /// Several rows per workgroup (one subgroup, a slice of the workgroup, or on CPU
    /// adapters one lane per row, or several whole rows per lane), each held in
    /// registers: for short rows. On CPU adapters, rows too long for a subgroup's
    /// registers (up to 8192 logits) take a lane each and are read twice, as online.
    MultiRow,
}

impl Variant {
    /// Every variant that names a kernel (all but `Auto`).
    pub const KERNELS: [Variant; 4] = [
        Variant::Resident,
        Variant::Online,
        Variant::SplitRow,
        Variant::MultiRow,
    ];

    /// The variant's name as the command-line tool and the benchmarks print it.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Auto => "auto",
            Variant::Resident => "resident",
            Variant::Online => "online",
            Variant::SplitRow => "split-row",
            Variant::MultiRow => "multi-row",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Variant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Variant::Auto]
            .into_iter()
            .chain(Variant::KERNELS)
            .find(|v| v.name() == s)
            .ok_or_else(|| Error::InvalidOption {
                name: "variant",
                value: s.to_string(),
                reason: "must be auto, resident, online, split-row or multi-row",
            })
    }
}

/// Options of the forward operations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftmaxOptions {
    /// Divides the logits before the exponential. Finite, normal and > 0; default 1.
    pub temperature: f32,
    /// Output of fully masked (all `-inf`) rows.
    pub masked_rows: MaskedRows,
    /// The kernel variant; [`Variant::Auto`] by default.
    pub variant: Variant,
}

impl Default for SoftmaxOptions {
    fn default() -> Self {
        SoftmaxOptions {
            temperature: 1.0,
            masked_rows: MaskedRows::Nan,
            variant: Variant::Auto,
        }
    }
}

impl SoftmaxOptions {
    /// Options with this temperature.
    pub fn with_temperature(temperature: f32) -> Self {
        SoftmaxOptions {
            temperature,
            ..Default::default()
        }
    }

    /// The same options with the kernel variant forced.
    pub fn with_variant(self, variant: Variant) -> Self {
        SoftmaxOptions { variant, ..self }
    }

    /// `1 / temperature`, after checking that the temperature is usable.
    pub(crate) fn inv_temperature(&self) -> Result<f32> {
        validate_temperature(self.temperature)
    }
}

/// Checks a temperature and returns its reciprocal, which is then finite.
pub(crate) fn validate_temperature(t: f32) -> Result<f32> {
    // Subnormal temperatures are refused: some adapters flush them to zero, and 1/T overflows.
    if !t.is_finite() || t < f32::MIN_POSITIVE {
        return Err(Error::InvalidTemperature { value: t });
    }
    Ok(1.0 / t)
}

/// How per-row losses reduce to one value, as `reduction` of `F.cross_entropy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// No reduction: the per-row losses are the result.
    None,
    /// Sum divided by the sum of the target weights of the rows not ignored (their count
    /// without weights). NaN when every row is ignored.
    #[default]
    Mean,
    /// Sum.
    Sum,
}

impl Reduction {
    pub(crate) fn index(self) -> u32 {
        match self {
            Reduction::None => 0,
            Reduction::Mean => 1,
            Reduction::Sum => 2,
        }
    }
}

/// Options of cross-entropy, as `torch.nn.functional.cross_entropy` plus a temperature and
/// a z-loss.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOptions {
    /// Rows whose target equals this give loss 0 and gradient 0 and do not count in the mean.
    pub ignore_index: i32,
    /// Label smoothing in [0, 1].
    pub label_smoothing: f32,
    /// The reduction.
    pub reduction: Reduction,
    /// Per-class weights (`cols` values), or none.
    pub weight: Option<Vec<f32>>,
    /// Logits are divided by it. Finite, normal and > 0.
    pub temperature: f32,
    /// Adds `z_loss * lse^2` to each counted row's loss (PaLM). 0 by default.
    pub z_loss: f32,
    /// Multiplies the gradient (the upstream gradient of the loss). 1 by default.
    pub grad_scale: f32,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            weight: None,
            temperature: 1.0,
            z_loss: 0.0,
            grad_scale: 1.0,
        }
    }
}

impl CrossEntropyOptions {
    /// Checks every option against `cols`; returns `1 / temperature`.
    pub(crate) fn validate(&self, cols: usize) -> Result<f32> {
        let bad = |name, value: f32, reason| {
            Err(Error::InvalidOption {
                name,
                value: value.to_string(),
                reason,
            })
        };
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return bad("label_smoothing", self.label_smoothing, "must be in [0, 1]");
        }
        if !self.z_loss.is_finite() || self.z_loss < 0.0 {
            return bad("z_loss", self.z_loss, "must be finite and >= 0");
        }
        if !self.grad_scale.is_finite() {
            return bad("grad_scale", self.grad_scale, "must be finite");
        }
        if let Some(w) = &self.weight {
            if w.len() != cols {
                return Err(Error::ShapeMismatch {
                    what: "weight",
                    got: w.len(),
                    expected: cols,
                    rows: 1,
                    cols,
                });
            }
        }
        validate_temperature(self.temperature)
    }
}

/// Which f16 kernel path to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HalfPath {
    /// Native `f16` storage where the device has SHADER_F16, packed pairs elsewhere;
    /// conversions by WGSL's `pack2x16float`/`unpack2x16float` where a probe at start-up
    /// finds them exact on the adapter, by bit manipulation elsewhere.
    #[default]
    Auto,
    /// Always packed pairs in `u32`, even where SHADER_F16 is available, and conversions by
    /// bit manipulation even where the adapter's conversion builtins are exact.
    Portable,
}

/// How invocations of a workgroup split a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessPattern {
    /// Contiguous on CPU adapters, strided elsewhere.
    #[default]
    Auto,
    /// Each invocation owns one contiguous chunk (fast where lanes run one after another).
    Contiguous,
    /// Invocation `i` takes elements `i, i + WG, ...` (coalesced on GPUs).
    Strided,
}

/// Which kind of adapter the kernels are tuned for: workgroup size, access pattern, how much
/// of a row a lane holds in registers and how many workgroups keep the adapter busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// CPU tuning on CPU adapters (lavapipe, llvmpipe), GPU tuning elsewhere.
    #[default]
    Auto,
    /// Small workgroups, one contiguous chunk per invocation, long register-resident rows.
    Cpu,
    /// 256-invocation workgroups, strided (coalesced) access, short register-resident rows.
    /// Forcing it on a CPU adapter lets CI run the GPU code paths.
    Gpu,
}

/// How an [`Engine`](crate::Engine) is set up. `Default` picks the best adapter, honouring `WGPU_BACKEND`
/// and `WGPU_ADAPTER_NAME`.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Backends to consider; `None` reads `WGPU_BACKEND`, else all.
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive); `None` reads
    /// `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// The f16 kernel path.
    pub half_path: HalfPath,
    /// The access pattern of the kernels (`Auto` follows the tuning).
    pub access: AccessPattern,
    /// What the kernels are tuned for.
    pub tuning: Tuning,
    /// Batch-invariant results: a row's bits depend on its logits and length only, never
    /// on the batch around it, its place in it or the variant (docs/batch_invariance.md).
    /// Every operation then sums each row in one order fixed by the row length, and forced
    /// variants run that order too; off by default, since it gives up the resident and
    /// multi-row layouts (measured cost in the README).
    pub batch_invariant: bool,
    /// Bytes of the device's cache (a GPU's L2) that split-row dispatches may fill, so that
    /// each row's second read finds it there: batches of rows of 4096 logits or more whose
    /// f32 logits exceed it (for the backward operations, `y` and `dy` together) run
    /// split-row, in dispatches of as many rows as fit it. Softmax, log-softmax,
    /// cross-entropy and the backward operations; not logsumexp, which reads once; GPU
    /// tuning outside the batch-invariant mode. 0, the default, turns it off: it has not
    /// been measured on a GPU yet (docs/tuning.md#cache-sized-split-row-dispatches).
    pub cache_bytes: u64,
}
