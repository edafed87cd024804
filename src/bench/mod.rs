//! Benchmark support, shared by `cargo bench` and the `bench` subcommand: a device stopwatch,
//! the copy kernel that serves as the roofline, and the measurement of one case.
//!
//! Throughput counts the bytes an operation must move at least ([`Case::bytes`]): one read
//! of the logits and one write of the output for the forward operations and cross-entropy
//! with its gradient, two reads and a write for the backward ones. The copy kernel moves the
//! same number of bytes (half read, half written), and the two are timed in alternation so
//! that a machine's drift cancels out of their ratio.

mod verify;

use std::time::{Duration, Instant};

use crate::dtype::DType;
use crate::engine::{capture_errors, Engine};
use crate::error::{Error, Result};
use crate::options::{CrossEntropyOptions, Forward, Shape, SoftmaxOptions, Variant};
use crate::oracle;
use crate::params::CopyParams;
use crate::record::{bind, ChunkBinding, ForwardArgs, TensorRef};
use crate::shader::{slot, CopyKey, PipelineKey};
use crate::training::{CrossEntropyArgs, GradOutput};

/// The word the copy kernel moves with each load and store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyWord {
    /// 16 bytes (`vec4<u32>`), on every adapter.
    Bytes16,
    /// 32 bytes (`vec4<u64>`), where the device has SHADER_INT64: on lavapipe 1.35 to 1.8
    /// times as fast as 16-byte words (Mesa loads and stores every component separately).
    Bytes32,
}

impl CopyWord {
    /// Bytes per word.
    pub fn bytes(self) -> u64 {
        match self {
            CopyWord::Bytes16 => 16,
            CopyWord::Bytes32 => 32,
        }
    }

    /// The WGSL type of a word.
    pub(crate) fn wgsl_type(self) -> &'static str {
        match self {
            CopyWord::Bytes16 => "vec4<u32>",
            CopyWord::Bytes32 => "vec4<u64>",
        }
    }

    /// Words per invocation: 128 bytes either way.
    pub(crate) fn per_thread(self) -> u32 {
        (128 / self.bytes()) as u32
    }
}

/// What the copy kernel does with the words it moves: the roofline, or one of the exp
/// ceilings, which do the least arithmetic any kernel of the family must (shaders/copy.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyKind {
    /// A plain copy: the roofline.
    Copy = 0,
    /// Every element replaced by its exponential: one read, one exp, one write per element
    /// (and the conversions of 16-bit elements), the least a softmax does.
    Exp = 1,
    /// Every element read and its exponential summed (nothing written): the least a
    /// logsumexp does.
    ExpSum = 2,
}

impl std::fmt::Display for CopyWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyWord::Bytes16 => "16-byte words",
            CopyWord::Bytes32 => "32-byte words",
        })
    }
}

/// Where a [`Stopwatch`] reads its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamps written before and after the recorded work (TIMESTAMP_QUERY).
    GpuTimestamps,
    /// Wall time around submit and wait (adapters without TIMESTAMP_QUERY).
    WallClock,
}

impl std::fmt::Display for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Clock::GpuTimestamps => "gpu-timestamps",
            Clock::WallClock => "wall-clock",
        })
    }
}

/// Times recorded GPU work: two timestamps around it where the device has TIMESTAMP_QUERY,
/// wall time around submit and wait otherwise.
pub struct Stopwatch {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    period_ns: f64,
}

impl Stopwatch {
    /// A stopwatch for `engine`'s device.
    pub fn new(engine: &Engine) -> Self {
        let device = engine.device();
        let queries = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("softmax-wgpu stopwatch"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                });
                let buffer = |usage| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("softmax-wgpu stopwatch"),
                        size: 16,
                        usage,
                        mapped_at_creation: false,
                    })
                };
                let resolve =
                    buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
                let read = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
                (set, resolve, read)
            });
        Stopwatch {
            queries,
            period_ns: f64::from(engine.queue().get_timestamp_period()),
        }
    }

    /// A stopwatch that reads wall time around submit and wait, whatever the device has.
    pub fn wall_clock() -> Self {
        Stopwatch {
            queries: None,
            period_ns: 1.0,
        }
    }

    /// The clock in use.
    pub fn clock(&self) -> Clock {
        match self.queries {
            Some(_) => Clock::GpuTimestamps,
            None => Clock::WallClock,
        }
    }

    /// Records `work` into a fresh encoder between two timestamps, submits, waits and
    /// returns the time between them.
    pub fn time(
        &self,
        engine: &Engine,
        work: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
    ) -> Result<Duration> {
        engine.guarded(|| {
            let device = engine.device();
            let mut encoder = device.create_command_encoder(&Default::default());
            let mark = |encoder: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet, index: u32| {
                // An empty pass whose only job is its timestamp.
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("softmax-wgpu stopwatch"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(index),
                        end_of_pass_write_index: None,
                    }),
                });
            };
            if let Some((set, _, _)) = &self.queries {
                mark(&mut encoder, set, 0);
            }
            work(&mut encoder)?;
            if let Some((set, resolve, read)) = &self.queries {
                mark(&mut encoder, set, 1);
                encoder.resolve_query_set(set, 0..2, resolve, 0);
                encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
            }
            let commands = capture_errors(device, || encoder.finish())?;
            let start = Instant::now();
            engine.queue().submit([commands]);
            device.poll(wgpu::PollType::wait_indefinitely())?;
            let wall = start.elapsed();
            engine.check_alive()?;
            let Some((_, _, read)) = &self.queries else {
                return Ok(wall);
            };
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            device.poll(wgpu::PollType::wait_indefinitely())?;
            pollster::block_on(rx.receive())
                .ok_or_else(|| Error::DeviceLost("map callback dropped".into()))??;
            let ticks: [u64; 2] = {
                let view = read
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Validation(e.to_string()))?;
                bytemuck::pod_read_unaligned(&view[..16])
            };
            read.unmap();
            let ns = ticks[1].saturating_sub(ticks[0]) as f64 * self.period_ns;
            Ok(Duration::from_secs_f64(ns * 1e-9))
        })
    }
}

impl Engine {
    /// The words the copy kernel can move on this device: 16 bytes everywhere, 32 where the
    /// device has SHADER_INT64. [`measure`] times each and divides by the faster.
    pub fn copy_words(&self) -> Vec<CopyWord> {
        let mut words = vec![CopyWord::Bytes16];
        if self
            .device()
            .features()
            .contains(wgpu::Features::SHADER_INT64)
        {
            words.push(CopyWord::Bytes32);
        }
        words
    }

    /// Records a copy of `bytes` (a multiple of the word) from the start of `src` to the
    /// start of `dst` with the plain copy kernel, the roofline the benchmarks compare
    /// against, moving `word`s (one of [`Engine::copy_words`]).
    pub fn record_copy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
        word: CopyWord,
    ) -> Result<()> {
        self.record_copy_kind(encoder, src, dst, bytes, word, CopyKind::Copy, DType::F32)
    }

    /// [`Engine::record_copy`] doing `kind` with the words, read as elements of `element`:
    /// with [`CopyKind::Exp`], `dst` receives the exponential of every element of `src`,
    /// rounded to `element` (f16 as the kernels round probabilities: exact for results below
    /// 65520); with [`CopyKind::ExpSum`], `dst` is left as it was. A plain copy ignores
    /// `element`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_copy_kind(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
        word: CopyWord,
        kind: CopyKind,
        element: DType,
    ) -> Result<()> {
        self.check_alive()?;
        let w = word.bytes();
        if !self.copy_words().contains(&word) {
            return Err(Error::InvalidBuffer {
                what: "copy",
                reason: format!("copies in {word} need SHADER_INT64, which this device lacks"),
            });
        }
        if bytes == 0 || !bytes.is_multiple_of(w) || bytes > src.size() || bytes > dst.size() {
            return Err(Error::InvalidBuffer {
                what: "copy",
                reason: format!(
                    "{bytes} bytes must be a non-zero multiple of {w} within both buffers"
                ),
            });
        }
        // 256 lanes of 128 bytes each: the fastest plain copy on both lavapipe and GPUs.
        let workgroup = self.largest_workgroup(256);
        let key = PipelineKey::Copy(CopyKey {
            contiguous: self.contiguous(),
            workgroup,
            word,
            kind,
            element: if kind == CopyKind::Copy {
                DType::F32
            } else {
                element
            },
            half_builtins: kind != CopyKind::Copy && element == DType::F16 && self.half_builtins(),
        });
        let kernel = self.pipelines.get(&self.device, &key)?;
        let limits = &self.info.limits;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        // Chunks start at multiples of 256 bytes, a valid offset on every adapter.
        let chunk = (max_binding / 256 * 256).max(256);
        let max_groups = u64::from(limits.max_compute_workgroups_per_dimension);
        let words_per_group = u64::from(workgroup) * u64::from(word.per_thread());
        capture_errors(&self.device, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("softmax-wgpu copy"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&kernel.pipeline);
            let mut start = 0;
            while start < bytes {
                let size = chunk.min(bytes - start);
                let words = size / w;
                let groups = words.div_ceil(words_per_group);
                let groups_x = groups.min(max_groups);
                let params = CopyParams {
                    words: words as u32,
                    groups_x: groups_x as u32,
                    sentinel: f32::NAN.to_bits(),
                    _pad: 0,
                };
                let uniform = self.uniforms.get(&self.device, bytemuck::bytes_of(&params));
                let chunk = ChunkBinding {
                    offset: start,
                    size,
                    base: 0,
                };
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("softmax-wgpu copy"),
                    layout: &kernel.layout,
                    entries: &[
                        wgpu::BindGroupEntry {
                            binding: slot::PARAMS,
                            resource: uniform.as_entire_binding(),
                        },
                        bind(slot::X, &TensorRef::new(src, DType::F32), &chunk),
                        bind(slot::Y, &TensorRef::new(dst, DType::F32), &chunk),
                    ],
                });
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups_x as u32, groups.div_ceil(groups_x) as u32, 1);
                start += size;
            }
        })
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
}

impl BenchOp {
    /// Every operation, in the order reports list them.
    pub const ALL: [BenchOp; 6] = [
        BenchOp::Forward(Forward::Softmax),
        BenchOp::Forward(Forward::LogSoftmax),
        BenchOp::Forward(Forward::LogSumExp),
        BenchOp::CrossEntropy,
        BenchOp::Backward { log: false },
        BenchOp::Backward { log: true },
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
    /// (`y`, `dy`) and one write (`dx`).
    pub fn bytes(&self) -> u64 {
        let n = self.shape.len() as u64 * self.dtype.size();
        let rows = self.shape.rows as u64;
        match self.op {
            BenchOp::Forward(Forward::LogSumExp) => n + 4 * rows,
            BenchOp::Forward(_) => 2 * n,
            BenchOp::CrossEntropy => 2 * n + 12 * rows,
            BenchOp::Backward { .. } => 3 * n,
        }
    }

    /// The exp ceiling of the case ([`CopyKind`]): forward operations and cross-entropy,
    /// whose least work is an exponential per logit; none for the backward operations.
    fn ceiling_kind(&self) -> Option<CopyKind> {
        match self.op {
            BenchOp::Forward(Forward::LogSumExp) => Some(CopyKind::ExpSum),
            BenchOp::Forward(_) | BenchOp::CrossEntropy => Some(CopyKind::Exp),
            BenchOp::Backward { .. } => None,
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

/// A case's device buffers, filled with [`bench_logits`]: what [`measure`] and `cargo
/// bench` record the operation, the copy and the ceiling over.
pub struct Prepared<'e> {
    engine: &'e Engine,
    case: Case,
    /// The logits (the backward operations' `y`); large enough for the copy too.
    x: wgpu::Buffer,
    /// The output (the gradient, `dx`); the copy's destination.
    y: wgpu::Buffer,
    /// The backward operations' `dy`.
    dy: wgpu::Buffer,
    lse: wgpu::Buffer,
    targets: wgpu::Buffer,
    loss: wgpu::Buffer,
    meta: wgpu::Buffer,
    logits: Vec<f32>,
    targets_host: Vec<i64>,
    copy_bytes: u64,
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
        };
        let raw = upload_bytes(&prepared.logits, case.dtype);
        let queue = engine.queue();
        queue.write_buffer(&prepared.x, 0, &raw);
        if dy_bytes > 16 {
            queue.write_buffer(&prepared.dy, 0, &raw);
        }
        let targets: Vec<i32> = prepared.targets_host.iter().map(|&t| t as i32).collect();
        queue.write_buffer(&prepared.targets, 0, bytemuck::cast_slice(&targets));
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
        }
    }

    /// Records the copy kernel over [`Prepared::copy_bytes`], in `word`s.
    pub fn record_copy(&self, encoder: &mut wgpu::CommandEncoder, word: CopyWord) -> Result<()> {
        self.engine
            .record_copy(encoder, &self.x, &self.y, self.copy_bytes, word)
    }

    /// Records the exp ceiling `kind` over the logits, in their dtype, in `word`s.
    fn record_ceiling(
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
            .record_copy_kind(encoder, &self.x, &self.y, bytes, word, kind, dtype)
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
    fn time_cpu(&self) -> f64 {
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
        }
        start.elapsed().as_secs_f64()
    }
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// What [`measure`] found for one case.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The case.
    pub case: Case,
    /// The forward kernel variant that ran (`None` for the other operations).
    pub variant: Option<Variant>,
    /// Where the times come from.
    pub clock: Clock,
    /// Median seconds of the operation.
    pub seconds: f64,
    /// The copy kernel's word: the faster of [`Engine::copy_words`] over the warm-up.
    pub copy_word: CopyWord,
    /// Median seconds of the copy kernel over the same bytes.
    pub copy_seconds: f64,
    /// [`Case::bytes`] over `seconds`, in GB/s (1e9 bytes).
    pub gbps: f64,
    /// The same bytes over `copy_seconds`, in GB/s.
    pub copy_gbps: f64,
    /// Median over runs of copy time / operation time, each pair timed back to back.
    pub ratio_to_copy: f64,
    /// Every case but the backward ones: median seconds of the exp ceiling over the same
    /// logits, in their dtype ([`CopyKind::Exp`] into the output, or [`CopyKind::ExpSum`] for logsumexp).
    pub ceiling_seconds: Option<f64>,
    /// The same cases: median over runs of copy time / exp ceiling time, timed beside each pair:
    /// the ratio to copy that the least arithmetic of the operation reaches on this adapter
    /// without any reduction or second read.
    pub ceiling: Option<f64>,
    /// Median seconds of the f64 CPU oracle on the same logits, where it was timed.
    pub cpu_seconds: Option<f64>,
}

impl Measurement {
    /// How many times faster than the CPU oracle.
    pub fn speedup_over_cpu(&self) -> Option<f64> {
        self.cpu_seconds.map(|c| c / self.seconds)
    }

    /// Logits per second.
    pub fn logits_per_second(&self) -> f64 {
        self.case.shape.len() as f64 / self.seconds
    }
}

/// How [`measure`] runs.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Untimed runs first (compilation, caches, clocks).
    pub warmup: usize,
    /// Untimed runs go on until this much wall time has passed too, so that a GPU left
    /// idle while the host prepared the case has raised its clocks again (on an H100, two
    /// warm-up runs left some cases three times slower than the same case run on its own).
    pub warmup_seconds: f64,
    /// Timed pairs of (copy, operation).
    pub runs: usize,
    /// Also time the f64 CPU oracle this many times (0: not at all).
    pub cpu_runs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warmup: 2,
            warmup_seconds: 0.25,
            runs: 7,
            cpu_runs: 1,
        }
    }
}

/// Deterministic logits in [-8, 8) (a xorshift generator), for benchmarks.
pub fn bench_logits(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
        })
        .collect()
}

/// Times `case` and the copy kernel over the same bytes in alternation on `engine`.
pub fn measure(engine: &Engine, case: &Case, settings: &Settings) -> Result<Measurement> {
    let prepared = Prepared::new(engine, case)?;
    let copy_bytes = prepared.copy_bytes();
    let stopwatch = Stopwatch::new(engine);
    let run_op = || stopwatch.time(engine, |e| prepared.record(e));
    let run_copy = |word| stopwatch.time(engine, |e| prepared.record_copy(e, word));
    let ceiling_kind = case.ceiling_kind();
    let run_ceiling =
        |word, kind| stopwatch.time(engine, |e| prepared.record_ceiling(e, word, kind));
    // The warm-up also times every copy word; the faster (median) is the roofline.
    let words = engine.copy_words();
    let mut warm_copies = vec![Vec::new(); words.len()];
    let warm_start = Instant::now();
    let mut warm_runs = 0;
    while warm_runs < settings.warmup.max(3)
        || warm_start.elapsed().as_secs_f64() < settings.warmup_seconds
    {
        for (times, &word) in warm_copies.iter_mut().zip(&words) {
            times.push(run_copy(word)?.as_secs_f64());
        }
        run_op()?;
        warm_runs += 1;
    }
    let copy_word = words
        .iter()
        .zip(&warm_copies)
        .map(|(&word, times)| (median(times), word))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(CopyWord::Bytes16, |(_, word)| word);
    if let Some(kind) = ceiling_kind {
        // Compiled and warm before it is timed.
        run_ceiling(copy_word, kind)?;
    }
    let (mut op_s, mut copy_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ceiling_s, mut ceiling_ratios) = (Vec::new(), Vec::new());
    for _ in 0..settings.runs.max(1) {
        let c = run_copy(copy_word)?.as_secs_f64();
        if let Some(kind) = ceiling_kind {
            let e = run_ceiling(copy_word, kind)?.as_secs_f64();
            ceiling_s.push(e);
            ceiling_ratios.push(c / e);
        }
        let o = run_op()?.as_secs_f64();
        copy_s.push(c);
        op_s.push(o);
        ratios.push(c / o);
    }
    let cpu_seconds = (settings.cpu_runs > 0).then(|| {
        let times: Vec<f64> = (0..settings.cpu_runs)
            .map(|_| prepared.time_cpu())
            .collect();
        median(&times)
    });
    // The copy and the ceiling wrote over the output: the operation runs once more.
    prepared.verify()?;
    let seconds = median(&op_s);
    let copy_seconds = median(&copy_s);
    Ok(Measurement {
        case: *case,
        variant: prepared.variant()?,
        clock: stopwatch.clock(),
        copy_word,
        seconds,
        copy_seconds,
        gbps: case.bytes() as f64 / seconds / 1e9,
        copy_gbps: (2 * copy_bytes) as f64 / copy_seconds / 1e9,
        ratio_to_copy: median(&ratios),
        ceiling_seconds: ceiling_kind.map(|_| median(&ceiling_s)),
        ceiling: ceiling_kind.map(|_| median(&ceiling_ratios)),
        cpu_seconds,
    })
}
