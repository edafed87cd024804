//! The device-level API: records operations on the caller's buffers into the caller's
//! command encoder. Nothing is submitted here.

use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::{Forward, MaskedRows, Shape, SoftmaxOptions};
use crate::params::ForwardParams;
use crate::plan::Plan;
use crate::scope::capture_errors;
use crate::shader::{slot, KernelKey, PipelineKey, SplitEntry};

/// Most split-row partial states one dispatch uses (16 bytes each: 16 MiB of scratch).
const MAX_SPLIT_PARTIALS: u64 = 1 << 20;

/// A tensor in a caller's buffer: `dtype` elements starting `offset` bytes in.
///
/// The buffer needs `STORAGE` usage. `offset` must be a multiple of the element size; the
/// buffer must extend to the end of the tensor rounded up to a whole 4-byte word.
#[derive(Clone, Copy, Debug)]
pub struct TensorRef<'a> {
    /// The buffer.
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of the first element.
    pub offset: u64,
    /// Element type.
    pub dtype: DType,
}

impl<'a> TensorRef<'a> {
    /// The tensor at the start of `buffer`.
    pub fn new(buffer: &'a wgpu::Buffer, dtype: DType) -> Self {
        TensorRef {
            buffer,
            offset: 0,
            dtype,
        }
    }

    /// The same tensor `offset` bytes into the buffer.
    pub fn at(self, offset: u64) -> Self {
        TensorRef { offset, ..self }
    }

    /// Checks usage, alignment and bounds for `n` elements.
    pub(crate) fn check(&self, what: &'static str, n: u64) -> Result<()> {
        let fail = |reason: String| Err(Error::InvalidBuffer { what, reason });
        if !self.buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return fail(format!(
                "needs STORAGE usage, has {:?}",
                self.buffer.usage()
            ));
        }
        if !self.offset.is_multiple_of(self.dtype.size()) {
            return fail(format!(
                "offset {} is not a multiple of the {:?} element size",
                self.offset, self.dtype
            ));
        }
        let end = (self.offset + n * self.dtype.size()).div_ceil(4) * 4;
        if end > self.buffer.size() {
            return fail(format!(
                "{n} {:?} elements from offset {} need {end} bytes (rounded up to 4), buffer has {}",
                self.dtype,
                self.offset,
                self.buffer.size()
            ));
        }
        Ok(())
    }

    fn byte_range(&self, n: u64) -> std::ops::Range<u64> {
        self.offset..self.offset + n * self.dtype.size()
    }
}

/// Arguments of [`Engine::record_forward`].
#[derive(Clone, Copy, Debug)]
pub struct ForwardArgs<'a> {
    /// The operation.
    pub op: Forward,
    /// The logits' shape.
    pub shape: Shape,
    /// The logits.
    pub input: TensorRef<'a>,
    /// Where softmax and log_softmax write `[rows, cols]`; `None` overwrites the input in
    /// place. Must be `None` for logsumexp.
    pub output: Option<TensorRef<'a>>,
    /// Per-row logsumexp (f32, `rows` values): required for logsumexp, optional for the
    /// others, which then write it at no extra pass.
    pub lse: Option<TensorRef<'a>>,
    /// Temperature and masked-row behaviour.
    pub options: SoftmaxOptions,
}

impl<'a> ForwardArgs<'a> {
    /// Checks every tensor against the (validated) shape and the operation: the output
    /// (the input where in place, none for logsumexp) and whether it is in place.
    fn checked_output(&self) -> Result<(Option<TensorRef<'a>>, bool)> {
        let rows = self.shape.rows as u64;
        let n = rows * self.shape.cols as u64;
        self.input.check("input", n)?;
        if let Some(lse) = &self.lse {
            if lse.dtype != DType::F32 {
                return Err(Error::UnsupportedDType {
                    dtype: lse.dtype,
                    reason: "logsumexp outputs are f32",
                });
            }
            lse.check("lse", rows)?;
        }
        let mut in_place = false;
        let output = match (self.op, self.output) {
            (Forward::LogSumExp, Some(_)) => {
                return Err(Error::InvalidBuffer {
                    what: "output",
                    reason: "logsumexp writes only `lse`; pass output: None".into(),
                })
            }
            (Forward::LogSumExp, None) => {
                if self.lse.is_none() {
                    return Err(Error::InvalidBuffer {
                        what: "lse",
                        reason: "logsumexp needs an lse buffer".into(),
                    });
                }
                None
            }
            (_, None) => {
                in_place = true;
                Some(self.input)
            }
            (_, Some(out)) => {
                out.check("output", n)?;
                if out.buffer == self.input.buffer
                    && overlaps(&out.byte_range(n), &self.input.byte_range(n))
                {
                    if out.offset != self.input.offset || out.dtype != self.input.dtype {
                        return Err(Error::InvalidBuffer {
                            what: "output",
                            reason: "overlaps the input without being exactly in place".into(),
                        });
                    }
                    in_place = true;
                }
                Some(out)
            }
        };
        if let (Some(lse), Some(out)) = (&self.lse, &output) {
            if lse.buffer == out.buffer && overlaps(&lse.byte_range(rows), &out.byte_range(n)) {
                return Err(Error::InvalidBuffer {
                    what: "lse",
                    reason: "overlaps the output".into(),
                });
            }
        }
        Ok((output, in_place))
    }
}

/// Where one chunk of a tensor is bound: binding offset and size, and the element index of
/// the chunk's first element inside the binding.
pub(crate) struct ChunkBinding {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) base: u32,
}

/// One dispatch of a forward operation: its rows, whether they run packed (see
/// `Layout::packed_cols`), and where each tensor's chunk of them is bound.
struct Dispatch {
    rows: u64,
    packed: bool,
    x: ChunkBinding,
    y: Option<ChunkBinding>,
    lse: Option<ChunkBinding>,
}

/// The dispatches of `rows` rows, at most `rows_per_chunk` each: `(first row, rows)`.
pub(crate) fn row_chunks(rows: u64, rows_per_chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = rows_per_chunk.max(1);
    (0..rows)
        .step_by(step as usize)
        .map(move |row0| (row0, step.min(rows - row0)))
}

pub(crate) fn chunk_binding(t: &TensorRef, first: u64, n: u64, align: u64) -> ChunkBinding {
    let start = t.offset + first * t.dtype.size();
    let offset = start / align * align;
    let end = (start + n * t.dtype.size()).div_ceil(4) * 4;
    ChunkBinding {
        offset,
        size: end - offset,
        base: ((start - offset) / t.dtype.size()) as u32,
    }
}

pub(crate) fn bind<'a>(
    binding: u32,
    t: &TensorRef<'a>,
    c: &ChunkBinding,
) -> wgpu::BindGroupEntry<'a> {
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: t.buffer,
            offset: c.offset,
            size: std::num::NonZeroU64::new(c.size),
        }),
    }
}

/// The vector view of a chunk: the same offset, whole elements of `view_bytes` (16 or 32
/// bytes, see `shader::view_bytes`) only. A chunk too small to hold one has no block either;
/// `tiny` (32 bytes) stands in for it.
pub(crate) fn bind_vectors<'a>(
    binding: u32,
    t: &TensorRef<'a>,
    c: &ChunkBinding,
    view_bytes: u64,
    tiny: &'a wgpu::Buffer,
) -> wgpu::BindGroupEntry<'a> {
    let size = c.size / view_bytes * view_bytes;
    let (buffer, offset, size) = if size == 0 {
        (tiny, 0, view_bytes)
    } else {
        (t.buffer, c.offset, size)
    };
    wgpu::BindGroupEntry {
        binding,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer,
            offset,
            size: std::num::NonZeroU64::new(size),
        }),
    }
}

fn overlaps(a: &std::ops::Range<u64>, b: &std::ops::Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

impl Engine {
    /// Records a forward operation into `encoder`. The caller submits.
    ///
    /// Rows are split into as many dispatches as the adapter's binding-size and
    /// dispatch limits need; all go into one compute pass.
    pub fn record_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &ForwardArgs,
    ) -> Result<()> {
        self.check_alive()?;
        let shape = args.shape;
        shape.validate()?;
        let inv_t = args.options.inv_temperature()?;
        let (output, in_place) = args.checked_output()?;
        let (rows, cols) = (shape.rows as u64, shape.cols as u64);

        let plan = self.profile.plan(args.op, shape, args.options.variant)?;
        let row_bytes = [
            cols * args.input.dtype.size(),
            output.map_or(0, |o| cols * o.dtype.size()),
            if args.lse.is_some() { 4 } else { 0 },
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let (mut rows_per_chunk, align, max_groups) = self.profile.chunking(row_bytes)?;
        // Packed lanes take whole runs of rows: every dispatch of them starts one.
        let packed_rows = u64::from(plan.packed_rows());
        if rows_per_chunk >= packed_rows {
            rows_per_chunk = rows_per_chunk / packed_rows * packed_rows;
        }
        let chunks = u64::from(plan.chunks);
        let partials = if plan.layout.split {
            // Each dispatch's partial states fit the scratch buffer (16 bytes each).
            rows_per_chunk = rows_per_chunk.min(MAX_SPLIT_PARTIALS / chunks).max(1);
            Some(self.split_scratch(rows_per_chunk.min(rows) * chunks * 16)?)
        } else {
            None
        };
        // The dispatches: first row, rows, whether packed, and where each tensor's chunk is
        // bound. With packed rows, the rows that do not fill a lane's run go in a dispatch
        // of their own, unpacked, so that the packed kernel has no partial run to mind.
        let dispatches_of = |packed: bool| -> Vec<Dispatch> {
            row_chunks(rows, rows_per_chunk)
                .flat_map(|(row0, nrows)| {
                    let whole = if packed {
                        nrows / packed_rows * packed_rows
                    } else {
                        nrows
                    };
                    [(row0, whole, packed), (row0 + whole, nrows - whole, false)]
                })
                .filter(|&(_, nrows, _)| nrows > 0)
                .map(|(row0, nrows, packed)| Dispatch {
                    rows: nrows,
                    packed,
                    x: chunk_binding(&args.input, row0 * cols, nrows * cols, align),
                    y: output.map(|o| chunk_binding(&o, row0 * cols, nrows * cols, align)),
                    lse: args.lse.map(|t| chunk_binding(&t, row0, nrows, align)),
                })
                .collect()
        };
        // Blocks of 8 are aligned in the output; the input loads them as vectors where it
        // sits at the same element offset modulo 8 in every dispatch of the pipeline.
        // Logsumexp has no output: its blocks follow the input. In place, both are one.
        let wide = self.profile.forward_wide_words();
        let x_view = self.profile.view_bytes(args.input.dtype, wide);
        let y_view = output.map_or(16, |o| self.profile.view_bytes(o.dtype, wide));
        // Each pipeline (unpacked, packed) is aligned where all its dispatches are.
        let aligned_in = |dispatches: &[Dispatch], packed: bool| {
            in_place
                || dispatches.iter().filter(|d| d.packed == packed).all(|d| {
                    d.x.size >= x_view
                        && d.y
                            .as_ref()
                            .is_none_or(|y| y.size >= y_view && d.x.base % 8 == y.base % 8)
                })
        };
        let mut dispatches = dispatches_of(plan.layout.packed_cols > 0);
        // Packed rows load whole blocks from each dispatch's first row on; elsewhere the
        // rows run unpacked.
        let blocks_from_row_0 = dispatches
            .iter()
            .filter(|d| d.packed)
            .all(|d| d.y.as_ref().map_or(d.x.base, |y| y.base) % 8 == 0);
        if plan.layout.packed_cols > 0 && !(aligned_in(&dispatches, true) && blocks_from_row_0) {
            dispatches = dispatches_of(false);
        }
        let aligned = [false, true].map(|packed| aligned_in(&dispatches, packed));
        let plans = [plan.unpacked(), plan];
        // Workgroups a dispatch of `nrows` rows needs along its row dimension (split-row
        // pieces go along another).
        let groups_of = |plan: &Plan, nrows: u64| {
            if plan.layout.split {
                nrows
            } else {
                nrows.div_ceil(u64::from(plan.rows_per_group))
            }
        };
        // The pipelines of the unpacked and the packed plan, where a dispatch runs them.
        let mut kernels: [Vec<std::sync::Arc<crate::pipeline::Kernel>>; 2] = Default::default();
        for (k, plan) in plans.iter().enumerate() {
            let mut runs = dispatches.iter().filter(|d| usize::from(d.packed) == k);
            if runs.clone().next().is_none() {
                continue;
            }
            let key = KernelKey {
                op: args.op,
                input: self.profile.storage(args.input.dtype),
                output: output.map(|o| self.profile.storage(o.dtype)),
                in_place,
                lse: args.lse.is_some(),
                contiguous: self.profile.contiguous(),
                workgroup: plan.workgroup,
                layout: plan.layout,
                half_builtins: self.profile.half_builtins,
                // Groups of rows per dispatch past one dimension's limit: workgroups loop.
                row_loop: runs.any(|d| groups_of(plan, d.rows) > max_groups),
                aligned: aligned[k],
                wide_words: wide,
            };
            let entries: &[SplitEntry] = if plan.layout.split {
                &[SplitEntry::Partials, SplitEntry::Finish]
            } else {
                &[SplitEntry::Main]
            };
            for &entry in entries {
                kernels[k].push(
                    self.pipelines
                        .get(&self.device, &PipelineKey::Forward(key, entry))?,
                );
            }
        }
        let tiny = self.tiny_buffer()?;
        let masked_zeros = u32::from(args.options.masked_rows == MaskedRows::Zeros);

        capture_errors(&self.device, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("softmax-wgpu forward"),
                timestamp_writes: None,
            });
            for d in &dispatches {
                let (nrows, x, y, l) = (d.rows, &d.x, &d.y, &d.lse);
                let plan = &plans[usize::from(d.packed)];
                let kernels = &kernels[usize::from(d.packed)];
                // Logsumexp has no output: its pairs follow the input.
                let y_base = y.as_ref().map_or(x.base, |y| y.base);
                let params = ForwardParams {
                    rows: nrows as u32,
                    cols: cols as u32,
                    x_base: if in_place { y_base } else { x.base },
                    y_base,
                    lse_base: l.as_ref().map_or(0, |l| l.base),
                    masked_zeros,
                    inv_t: inv_t.to_bits(),
                    chunks: plan.chunks,
                };
                let uniform = self.uniforms.get(&self.device, bytemuck::bytes_of(&params));
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: slot::PARAMS,
                    resource: uniform.as_entire_binding(),
                }];
                if !in_place {
                    entries.push(bind(slot::X, &args.input, x));
                    if aligned[usize::from(d.packed)] {
                        entries.push(bind_vectors(slot::X_VEC, &args.input, x, x_view, &tiny));
                    }
                }
                if let (Some(o), Some(y)) = (&output, y) {
                    entries.push(bind(slot::Y, o, y));
                    entries.push(bind_vectors(slot::Y_VEC, o, y, y_view, &tiny));
                }
                if let (Some(t), Some(l)) = (&args.lse, l) {
                    entries.push(bind(slot::LSE, t, l));
                }
                if let Some(p) = &partials {
                    entries.push(wgpu::BindGroupEntry {
                        binding: slot::PARTIALS,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: p,
                            offset: 0,
                            size: std::num::NonZeroU64::new(nrows * chunks * 16),
                        }),
                    });
                }
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("softmax-wgpu forward"),
                    layout: &kernels[0].layout,
                    entries: &entries,
                });
                pass.set_bind_group(0, &bind_group, &[]);
                for kernel in kernels {
                    pass.set_pipeline(&kernel.pipeline);
                    let groups = groups_of(plan, nrows).min(max_groups) as u32;
                    if plan.layout.split {
                        pass.dispatch_workgroups(plan.chunks, groups, 1);
                    } else {
                        pass.dispatch_workgroups(groups, 1, 1);
                    }
                }
            }
        })
    }
}
