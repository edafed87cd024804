//! What the benchmarks time: an operation on a shape and dtype ([`Case`]), with its buffers
//! allocated and filled ([`Prepared`]).

use std::time::Instant;

use super::{bench_logits, CopyKind, CopyMethod, CopyWord};
use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::Result;
use crate::options::{CrossEntropyOptions, Forward, Shape, SoftmaxOptions, Variant};
use crate::oracle;
use crate::record::{ForwardArgs, TensorRef};
use crate::sampling::{DeviceUniforms, SampleArgs, SamplingParams};
use crate::scope::capture_errors;
use crate::training::{CrossEntropyArgs, GradOutput};

/// The Philox key of the sampling cases (each row's offset is its index).
pub(super) const BENCH_SEED: u64 = 0x5eed;

/// The sampling cases' parameters: top-p 0.9, with top-k 50 where `top_k`.
pub(super) fn bench_sampling(top_k: bool) -> SamplingParams {
    SamplingParams {
        top_k: if top_k { 50 } else { 0 },
        top_p: 0.9,
        ..Default::default()
    }
}

/// An operation the benchmarks time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BenchOp {
    /// softmax, log_softmax or logsumexp ([`Engine::record_forward`]).
    Forward(Forward),
    /// Cross-entropy with the mean reduction, its gradient into a second tensor
    /// ([`Engine::record_cross_entropy`]).
    CrossEntropy,
    /// Softmax backward (`log = false`) or log_softmax backward ([`Engine::record_backward`]).
    Backward {
        /// log_softmax backward.
        log: bool,
    },
    /// A token per row ([`Engine::record_sample`]) with top-p 0.9, and top-k 50 where `top_k`,
    /// Philox uniforms.
    Sample {
        /// top-k 50 too.
        top_k: bool,
    },
}

impl BenchOp {
    /// Every operation, in the order reports list them.
    pub const ALL: [BenchOp; 8] = [
        BenchOp::Forward(Forward::Softmax),
        BenchOp::Forward(Forward::LogSoftmax),
        BenchOp::Forward(Forward::LogSumExp),
        BenchOp::CrossEntropy,
        BenchOp::Backward { log: false },
        BenchOp::Backward { log: true },
        BenchOp::Sample { top_k: true },
        BenchOp::Sample { top_k: false },
    ];

    /// The name the command line and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            BenchOp::Forward(Forward::Softmax) => "softmax",
            BenchOp::Forward(Forward::LogSoftmax) => "log-softmax",
            BenchOp::Forward(Forward::LogSumExp) => "logsumexp",
            BenchOp::CrossEntropy => "cross-entropy",
            BenchOp::Backward { log: false } => "softmax-backward",
            BenchOp::Backward { log: true } => "log-softmax-backward",
            BenchOp::Sample { top_k: true } => "sample",
            BenchOp::Sample { top_k: false } => "sample-top-p",
        }
    }

    /// The operation called `name` (see [`BenchOp::name`]).
    pub fn from_name(name: &str) -> Option<BenchOp> {
        BenchOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl From<Forward> for BenchOp {
    fn from(op: Forward) -> Self {
        BenchOp::Forward(op)
    }
}

/// One benchmark case: an operation on `[rows, cols]` logits of `dtype`, output in `dtype`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Case {
    /// The operation.
    pub op: BenchOp,
    /// Logits and output dtype.
    pub dtype: DType,
    /// The shape.
    pub shape: Shape,
    /// Options, including the kernel variant (automatic by default) of the forward
    /// operations; the other operations use their defaults.
    pub options: SoftmaxOptions,
}

impl Case {
    /// Bytes the operation moves at least: one read of the logits and one write of the
    /// output (`rows` f32 for logsumexp; for cross-entropy the gradient, plus a target read
    /// and a loss and a logsumexp written per row); for the backward operations two reads
    /// (`y`, `dy`) and one write (`dx`); for sampling one read of the logits and a result
    /// record of 16 bytes per row.
    pub fn bytes(&self) -> u64 {
        let n = self.shape.len() as u64 * self.dtype.size();
        let rows = self.shape.rows as u64;
        match self.op {
            BenchOp::Forward(Forward::LogSumExp) => n + 4 * rows,
            BenchOp::Forward(_) => 2 * n,
            BenchOp::CrossEntropy => 2 * n + 12 * rows,
            BenchOp::Backward { .. } => 3 * n,
            BenchOp::Sample { .. } => n + 16 * rows,
        }
    }

    /// The exp ceiling of the case ([`CopyKind`]): forward operations and cross-entropy,
    /// whose least work is an exponential per logit; none for the backward operations.
    pub(super) fn ceiling_kind(&self) -> Option<CopyKind> {
        match self.op {
            BenchOp::Forward(Forward::LogSumExp) => Some(CopyKind::ExpSum(self.dtype)),
            BenchOp::Forward(_) | BenchOp::CrossEntropy => Some(CopyKind::Exp(self.dtype)),
            BenchOp::Sample { .. } => Some(CopyKind::ExpSum(self.dtype)),
            BenchOp::Backward { .. } => None,
        }
    }

    /// The ceiling of a first pass over the logits, logsumexp's ([`CopyKind::ExpSum`]),
    /// where the operation's kernels may read each row twice (softmax, log-softmax,
    /// cross-entropy): added to the exp ceiling, the ceiling of a kernel that reads each
    /// row twice.
    pub(super) fn first_pass_kind(&self) -> Option<CopyKind> {
        match self.op {
            BenchOp::Forward(Forward::Softmax | Forward::LogSoftmax) | BenchOp::CrossEntropy => {
                Some(CopyKind::ExpSum(self.dtype))
            }
            _ => None,
        }
    }
}

/// `x` rounded to `dtype`, as the bytes of an upload: whole 4-byte words, an odd count of
/// 16-bit values padded with a zero half.
fn upload_bytes(x: &[f32], dtype: DType) -> Vec<u8> {
    fn words<T: crate::Element>(x: &[f32]) -> Vec<u8> {
        let v: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
        let mut bytes = bytemuck::cast_slice::<T, u8>(&v).to_vec();
        bytes.resize(bytes.len().next_multiple_of(4), 0);
        bytes
    }
    match dtype {
        DType::F32 => words::<f32>(x),
        DType::F16 => words::<half::f16>(x),
        DType::BF16 => words::<half::bf16>(x),
    }
}

/// A case's device buffers, filled with [`bench_logits`]: what [`measure`](super::measure) and `cargo
/// bench` record the operation, the copy and the ceiling over.
pub struct Prepared<'e> {
    pub(super) engine: &'e Engine,
    pub(super) case: Case,
    /// The logits (the backward operations' `y`); large enough for the copy too.
    pub(super) x: wgpu::Buffer,
    /// The output (the gradient, `dx`); the copy's destination.
    pub(super) y: wgpu::Buffer,
    /// The backward operations' `dy`.
    pub(super) dy: wgpu::Buffer,
    pub(super) lse: wgpu::Buffer,
    pub(super) targets: wgpu::Buffer,
    pub(super) loss: wgpu::Buffer,
    pub(super) meta: wgpu::Buffer,
    pub(super) logits: Vec<f32>,
    pub(super) targets_host: Vec<i64>,
    pub(super) copy_bytes: u64,
    /// Sampling: each row's parameters, Philox offset and result.
    pub(super) sample_params: wgpu::Buffer,
    pub(super) offsets: wgpu::Buffer,
    pub(super) results: wgpu::Buffer,
}

impl<'e> Prepared<'e> {
    /// Allocates and fills the buffers of `case` on `engine`.
    pub fn new(engine: &'e Engine, case: &Case) -> Result<Self> {
        case.shape.validate()?;
        let device = engine.device();
        let n = case.shape.len() as u64;
        let rows = case.shape.rows as u64;
        // The copy moves the same bytes as the operation: half read, half written (rounded
        // up to whole 32-byte words).
        let copy_bytes = (case.bytes() / 2).div_ceil(32) * 32;
        let in_bytes = case.dtype.buffer_bytes(n).div_ceil(32) * 32;
        let big = in_bytes.max(copy_bytes);
        // COPY_SRC: `verify` reads rows back.
        let storage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        let buffer = |label, size: u64, usage| {
            capture_errors(device, || {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: size.max(16),
                    usage,
                    mapped_at_creation: false,
                })
            })
        };
        let dy_bytes = if matches!(case.op, BenchOp::Backward { .. }) {
            in_bytes
        } else {
            16
        };
        let logits = bench_logits(case.shape.len());
        let targets_host: Vec<i64> = (0..rows)
            .map(|r| (r * 7919 % case.shape.cols as u64) as i64)
            .collect();
        let prepared = Prepared {
            engine,
            case: *case,
            x: buffer("softmax-wgpu bench logits", big, storage)?,
            y: buffer("softmax-wgpu bench output", big, storage)?,
            dy: buffer("softmax-wgpu bench dy", dy_bytes, storage)?,
            lse: buffer("softmax-wgpu bench lse", 4 * rows, storage)?,
            targets: buffer("softmax-wgpu bench targets", 4 * rows, storage)?,
            loss: buffer("softmax-wgpu bench loss", 4 * rows, storage)?,
            meta: buffer("softmax-wgpu bench meta", 16, storage)?,
            logits,
            targets_host,
            copy_bytes,
            sample_params: buffer("softmax-wgpu bench sampling parameters", 16 * rows, storage)?,
            offsets: buffer("softmax-wgpu bench offsets", 8 * rows, storage)?,
            results: buffer("softmax-wgpu bench tokens", 16 * rows, storage)?,
        };
        let raw = upload_bytes(&prepared.logits, case.dtype);
        let queue = engine.queue();
        queue.write_buffer(&prepared.x, 0, &raw);
        if dy_bytes > 16 {
            queue.write_buffer(&prepared.dy, 0, &raw);
        }
        let targets: Vec<i32> = prepared.targets_host.iter().map(|&t| t as i32).collect();
        queue.write_buffer(&prepared.targets, 0, bytemuck::cast_slice(&targets));
        if let BenchOp::Sample { top_k } = case.op {
            let words = vec![bench_sampling(top_k).to_words(); rows as usize];
            queue.write_buffer(&prepared.sample_params, 0, bytemuck::cast_slice(&words));
            let offsets: Vec<[u32; 2]> = (0..rows as u32).map(|r| [r, 0]).collect();
            queue.write_buffer(&prepared.offsets, 0, bytemuck::cast_slice(&offsets));
        }
        Ok(prepared)
    }

    /// Bytes the copy kernel moves for this case (half of [`Case::bytes`], in whole 32-byte
    /// words).
    pub fn copy_bytes(&self) -> u64 {
        self.copy_bytes
    }

    /// Records the operation.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        let (e, c) = (self.engine, &self.case);
        let x = TensorRef::new(&self.x, c.dtype);
        let out = TensorRef::new(&self.y, c.dtype);
        let f32s = |b| TensorRef::new(b, DType::F32);
        match c.op {
            BenchOp::Forward(op) => e.record_forward(
                encoder,
                &ForwardArgs {
                    op,
                    shape: c.shape,
                    input: x,
                    output: (op != Forward::LogSumExp).then_some(out),
                    lse: (op == Forward::LogSumExp).then(|| f32s(&self.lse)),
                    options: c.options,
                },
            ),
            BenchOp::CrossEntropy => e.record_cross_entropy(
                encoder,
                &CrossEntropyArgs {
                    shape: c.shape,
                    logits: x,
                    targets: TensorRef::new(&self.targets, DType::F32),
                    weight: None,
                    grad: GradOutput::To(out),
                    loss: f32s(&self.loss),
                    lse: f32s(&self.lse),
                    meta: &self.meta,
                },
                &CrossEntropyOptions::default(),
            ),
            BenchOp::Backward { log } => e.record_backward(
                encoder,
                log,
                c.shape,
                x,
                TensorRef::new(&self.dy, c.dtype),
                out,
            ),
            BenchOp::Sample { .. } => e.record_sample(
                encoder,
                &SampleArgs {
                    shape: c.shape,
                    logits: x,
                    params: &self.sample_params,
                    uniforms: DeviceUniforms::Philox {
                        seed: BENCH_SEED,
                        offsets: &self.offsets,
                    },
                    results: &self.results,
                },
            ),
        }
    }

    /// Records a copy of [`Prepared::copy_bytes`] by `method`.
    pub fn record_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        method: CopyMethod,
    ) -> Result<()> {
        method.record(self.engine, encoder, &self.x, &self.y, self.copy_bytes)
    }

    /// Records the exp ceiling `kind` over the logits, in their dtype, in `word`s.
    pub(super) fn record_ceiling(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        word: CopyWord,
        kind: CopyKind,
    ) -> Result<()> {
        let dtype = self.case.dtype;
        let bytes = dtype
            .buffer_bytes(self.case.shape.len() as u64)
            .div_ceil(32)
            * 32;
        self.engine
            .record_copy_kind(encoder, &self.x, &self.y, bytes, word, kind)
    }

    /// The forward kernel variant that runs (`None` for the other operations).
    pub fn variant(&self) -> Result<Option<Variant>> {
        match self.case.op {
            BenchOp::Forward(op) => self
                .engine
                .forward_variant(op, self.case.shape, &self.case.options)
                .map(Some),
            _ => Ok(None),
        }
    }

    /// Runs the f64 CPU oracle of the operation on the same logits once; its wall time.
    pub(super) fn time_cpu(&self) -> f64 {
        let (c, x) = (&self.case, &self.logits);
        let start = Instant::now();
        match c.op {
            BenchOp::Forward(Forward::Softmax) => {
                std::hint::black_box(oracle::softmax(x, c.shape, &c.options));
            }
            BenchOp::Forward(Forward::LogSoftmax) => {
                std::hint::black_box(oracle::log_softmax(x, c.shape, &c.options));
            }
            BenchOp::Forward(Forward::LogSumExp) => {
                std::hint::black_box(oracle::logsumexp(x, c.shape, &c.options));
            }
            BenchOp::CrossEntropy => {
                std::hint::black_box(oracle::cross_entropy(
                    x,
                    &self.targets_host,
                    c.shape,
                    &CrossEntropyOptions::default(),
                ));
            }
            BenchOp::Backward { log } => {
                std::hint::black_box(oracle::softmax_backward(log, x, x, c.shape));
            }
            BenchOp::Sample { top_k } => {
                let u: Vec<f32> = (0..c.shape.rows as u64)
                    .map(|r| crate::sampling::uniform(BENCH_SEED, r))
                    .collect();
                let p = [bench_sampling(top_k)];
                let params: Vec<_> = p.iter().cycle().take(c.shape.rows).copied().collect();
                std::hint::black_box(oracle::sample(x, c.shape, &params, &u));
            }
        }
        start.elapsed().as_secs_f64()
    }
}
