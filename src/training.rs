//! Training operations: fused cross-entropy with its gradient, softmax and log_softmax
//! backward. Device-level recording and host-slice wrappers.

use crate::dtype::{DType, Element};
use crate::engine::{capture_errors, Engine};
use crate::error::{Error, Result};
use crate::options::{CrossEntropyOptions, Shape};
use crate::params::{BackwardParams, CeParams};
use crate::record::{bind, bind_vectors, chunk_binding, row_chunks, TensorRef};
use crate::shader::{slot, BackwardKey, CeEntry, CeKey, PipelineKey, SplitEntry};

/// Where the cross-entropy gradient goes.
#[derive(Clone, Copy, Debug)]
pub enum GradOutput<'a> {
    /// No gradient.
    None,
    /// Over the logits (the training step then holds no second `[rows, cols]` tensor).
    InPlace,
    /// Into this tensor.
    To(TensorRef<'a>),
}

/// Arguments of [`Engine::record_cross_entropy`]. Every f32/i32 argument is a
/// [`TensorRef`] whose `dtype` is ignored.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyArgs<'a> {
    /// The logits' shape.
    pub shape: Shape,
    /// The logits.
    pub logits: TensorRef<'a>,
    /// `rows` class indices, i32.
    pub targets: TensorRef<'a>,
    /// `cols` class weights, f32, or none (options.weight is for the host API).
    pub weight: Option<TensorRef<'a>>,
    /// The gradient with respect to the logits.
    pub grad: GradOutput<'a>,
    /// `rows` per-row losses, f32.
    pub loss: TensorRef<'a>,
    /// `rows` per-row logsumexp of `logits / T`, f32.
    pub lse: TensorRef<'a>,
    /// Scratch of 16 bytes (STORAGE | COPY_SRC): `[denominator, first invalid row or
    /// u32::MAX, reduced loss, class-weight sum]` after the submission.
    pub meta: &'a wgpu::Buffer,
}

/// Result of [`Engine::cross_entropy`].
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyResult<T> {
    /// The reduced loss (the sum for `Reduction::None`).
    pub loss: f32,
    /// Loss of each row (0 for ignored rows).
    pub per_row: Vec<f32>,
    /// logsumexp of each row of `logits / T`.
    pub lse: Vec<f32>,
    /// The gradient with respect to the logits, where asked for.
    pub grad: Option<Vec<T>>,
}

/// The longest rows that cross-entropy gives a lane of their own on CPU adapters (see
/// `Engine::row_per_lane`; `loss_and_grad_run`: runs of rows in blocks of 8). Lavapipe, f32
/// cross-entropy with its gradient, ratio to copy of a lane per row against a workgroup per
/// row: 0.22-0.29 against 0.017-0.018 at 65536 x 100, 0.25-0.27 against 0.07 at 32768 x
/// 256, 0.27-0.51 against 0.15 at 8192 x 1024, 0.29-0.30 against 0.25-0.31 at 1024 x 8192,
/// 0.30-0.32 against 0.32-0.37 at 256 x 32000.
const CE_ROW_PER_LANE_MAX_COLS_CPU: u64 = 4096;
/// The same for the backward kernels (`backward_run`: runs of rows in blocks of 8), from
/// enough rows to give every CPU thread its workgroups. Lavapipe, f32 softmax / log-softmax
/// backward, a lane per row against a workgroup per row: 0.45-0.48 / 0.57-0.58 against
/// 0.22-0.27 / 0.24-0.25 at 32768 x 256, 0.49-0.53 / 0.55-0.63 against 0.31-0.35 /
/// 0.33-0.38 at 8192 x 1024, 0.47 / 0.54-0.57 against 0.42-0.43 / 0.46-0.53 at 512 x 16384,
/// but 0.32-0.39 / 0.37-0.43 against 0.44-0.45 / 0.43-0.47 at 256 x 32000.
const BACKWARD_ROW_PER_LANE_MAX_COLS_CPU: u64 = 16384;
/// Rows up to which a lane per row is taken whatever the row count: below it the work is
/// small anyway.
const ROW_PER_LANE_SHORT_COLS_CPU: u64 = 128;
/// The longest rows given a lane each on GPUs, where a lane per row reads rows apart from
/// its neighbours': rows of one 128-byte line of f32 (not measured on a GPU).
const ROW_PER_LANE_MAX_COLS_GPU: u64 = 32;

/// A training kernel's split-row layout (`Engine::training_split`).
struct Split {
    /// Pieces per row.
    pieces: u64,
    /// The pieces' partials.
    scratch: wgpu::Buffer,
}

impl Split {
    /// The kernels' `params.chunks`: pieces per row, 1 without split-row.
    fn chunks(split: &Option<Split>) -> u32 {
        split.as_ref().map_or(1, |s| s.pieces as u32)
    }
}

/// One dispatch of a training kernel's `main`: its first row, its rows, and whether it loads
/// blocks of 8 (with a row per lane: runs of rows in blocks).
#[derive(Clone, Copy)]
struct RowDispatch {
    row0: u64,
    rows: u64,
    blocks: bool,
}

/// The dispatches of `rows` rows of `cols`, chunks of at most `rows_per_chunk` rows, each
/// loading blocks of 8 where `blocks_in(first row, rows)` allows it. With a row per lane the
/// chunks start on runs of rows that fill whole blocks (`shader::rows_filling_blocks`), and
/// a chunk with blocks goes as its whole runs, the rows left over in a dispatch of their own
/// by pairs. Otherwise every dispatch runs one pipeline, with blocks only where all allow
/// them.
fn row_dispatches(
    rows: u64,
    cols: u64,
    rows_per_chunk: u64,
    row_per_lane: bool,
    blocks_in: impl Fn(u64, u64) -> bool,
) -> Vec<RowDispatch> {
    let run = crate::shader::rows_filling_blocks(cols);
    let per_chunk = if row_per_lane && rows_per_chunk >= 8 {
        rows_per_chunk / 8 * 8
    } else {
        rows_per_chunk
    };
    let mut out = Vec::new();
    for (row0, n) in row_chunks(rows, per_chunk) {
        let blocks = blocks_in(row0, n);
        let whole = n / run * run;
        if row_per_lane && blocks && whole < n {
            if whole > 0 {
                out.push(RowDispatch {
                    row0,
                    rows: whole,
                    blocks: blocks_in(row0, whole),
                });
            }
            out.push(RowDispatch {
                row0: row0 + whole,
                rows: n - whole,
                blocks: false,
            });
        } else {
            out.push(RowDispatch {
                row0,
                rows: n,
                blocks,
            });
        }
    }
    if !row_per_lane {
        let all = out.iter().all(|d| d.blocks);
        out.iter_mut().for_each(|d| d.blocks = all);
    }
    out
}

/// `packed_cols` of a training kernel's `main` for a dispatch of rows of `cols`: `cols`
/// where a lane takes runs of rows in blocks and a run is generated code, unrolled or
/// windowed (`shader::packs_training_rows`, with the lavapipe figures that set its limits),
/// 0 where it loops.
fn packed_cols(row_per_lane: bool, blocks: bool, cols: u64) -> u32 {
    if row_per_lane && blocks && crate::shader::packs_training_rows(cols) {
        cols as u32
    } else {
        0
    }
}

fn f32_ref<'a>(t: TensorRef<'a>) -> TensorRef<'a> {
    TensorRef {
        dtype: DType::F32,
        ..t
    }
}

impl Engine {
    /// Whether a training kernel gives `rows` rows of `cols` a lane each: on CPU adapters
    /// up to `cpu_max` logits where the rows give every thread its workgroups (always up to
    /// `ROW_PER_LANE_SHORT_COLS_CPU`). A workgroup per row leaves most of its lanes idle on
    /// short rows and pays a reduction for a few logits (lavapipe, 1048576 x 10 f32, with a
    /// workgroup per row: cross-entropy with its gradient 0.002 of copy, softmax backward
    /// 0.008; a lane per row: 0.09 and 0.29).
    fn row_per_lane(&self, rows: u64, cols: u64, cpu_max: u64) -> bool {
        if !self.cpu_tuned() {
            return cols <= ROW_PER_LANE_MAX_COLS_GPU;
        }
        let busy = u64::from(self.parallel_groups()) * u64::from(self.workgroup_size());
        cols <= cpu_max.min(ROW_PER_LANE_SHORT_COLS_CPU) || (cols <= cpu_max && rows >= busy)
    }

    /// The split-row layout of a training kernel, if it takes one: each of `rows` rows of
    /// `cols` cut into pieces over many workgroups, with scratch for `piece_bytes` of
    /// partials per piece of the `rows_per_chunk` rows of a dispatch. Where the forward
    /// kernels would split (`Engine::wants_split`): on CPU adapters only single long rows,
    /// since with rows enough for the threads a workgroup per row finds its second pass in
    /// its core's cache (lavapipe, f32, 4 x 128256: softmax backward / log-softmax backward
    /// 0.32 / 0.32-0.35 of copy split against 0.48-0.49 / 0.51-0.60, cross-entropy 0.25-0.31
    /// against 0.33-0.39; one row: see `SPLIT_MIN_COLS_CPU` in src/plan.rs).
    fn training_split(
        &self,
        (rows, cols): (u64, u64),
        row_per_lane: bool,
        rows_per_chunk: u64,
        piece_bytes: u64,
    ) -> Result<Option<Split>> {
        let pieces = self.split_pieces(rows, cols / 8);
        if row_per_lane || !self.wants_split(rows, cols, pieces) {
            return Ok(None);
        }
        let scratch = self.split_scratch(rows_per_chunk.min(rows) * pieces * piece_bytes)?;
        Ok(Some(Split { pieces, scratch }))
    }

    /// Records cross-entropy (loss, logsumexp and, where asked, the gradient) into `encoder`:
    /// three dispatches in one compute pass. A target outside `[0, cols)` never indexes
    /// memory: its row's loss is NaN, its gradient 0, and `meta[1]` names the first such row.
    pub fn record_cross_entropy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &CrossEntropyArgs,
        options: &CrossEntropyOptions,
    ) -> Result<()> {
        self.check_alive()?;
        let shape = args.shape;
        shape.validate()?;
        let inv_t = options.validate(shape.cols)?;
        let (rows, cols) = (shape.rows as u64, shape.cols as u64);
        args.logits.check("logits", rows * cols)?;
        let targets = f32_ref(args.targets);
        targets.check("targets", rows)?;
        let loss = f32_ref(args.loss);
        loss.check("loss", rows)?;
        let lse = f32_ref(args.lse);
        lse.check("lse", rows)?;
        if let Some(w) = args.weight {
            f32_ref(w).check("weight", cols)?;
        }
        if args.meta.size() < 16 || !args.meta.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidBuffer {
                what: "meta",
                reason: "needs 16 bytes and STORAGE usage".into(),
            });
        }
        let (grad, in_place) = match args.grad {
            GradOutput::None => (None, false),
            GradOutput::InPlace => (Some(args.logits), true),
            GradOutput::To(g) => {
                g.check("grad", rows * cols)?;
                (Some(g), false)
            }
        };
        let row_bytes = [
            cols * args.logits.dtype.size(),
            grad.map_or(0, |g| cols * g.dtype.size()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let (rows_per_chunk, align, max_groups) = self.chunking(row_bytes)?;
        let row_per_lane = self.row_per_lane(rows, cols, CE_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        // Blocks of 8 where the gradient (if any) sits at the logits' offset modulo 8, both
        // holding at least one vector (no stand-in bound twice, read and written), the blocks
        // following the logits without a gradient; a row per lane (`loss_and_grad_run`) only
        // with contiguous shares, and with the blocks starting the dispatch.
        let wide = self.wide_words();
        let x_view = self.view_bytes(args.logits.dtype, wide);
        let y_view = grad.map_or(16, |g| self.view_bytes(g.dtype, wide));
        let blocks_in = |row0: u64, nrows: u64| {
            let (first, n) = (row0 * cols, nrows * cols);
            let x = chunk_binding(&args.logits, first, n, align);
            let out_base = grad.map_or(x.base, |g| chunk_binding(&g, first, n, align).base);
            x.size >= x_view
                && grad.is_none_or(|g| {
                    let y = chunk_binding(&g, first, n, align);
                    y.size >= y_view && (in_place || x.base % 8 == y.base % 8)
                })
                && (!row_per_lane || (self.contiguous() && out_base.is_multiple_of(8)))
        };
        let dispatches = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        // Lanes loop over a row's logits (main) and over the rows (prepare, reduce).
        let workgroup = self.workgroup_for("cross-entropy", rows.max(cols))?;
        // Two words of 16 bytes per piece (`store_ce_partial` in src/shader/mod.rs).
        let split = self.training_split((rows, cols), row_per_lane, rows_per_chunk, 32)?;
        let kernel = |blocks: bool, entry: CeEntry| {
            let key = CeKey {
                input: self.storage(args.logits.dtype),
                grad: grad.map(|g| self.storage(g.dtype)),
                in_place,
                weight: args.weight.is_some(),
                contiguous: self.contiguous(),
                workgroup,
                half_builtins: self.half_builtins,
                row_loop: rows_per_chunk.min(rows) > max_groups,
                blocks,
                wide_words: wide,
                row_per_lane,
                packed_cols: if entry == CeEntry::Main {
                    packed_cols(row_per_lane, blocks, cols)
                } else {
                    0
                },
                split: split.is_some(),
            };
            self.pipelines
                .get(&self.device, &PipelineKey::CrossEntropy(key, entry))
                .map(|k| (key, k))
        };
        let tiny = self.tiny_buffer()?;
        // `prepare` and `reduce` read no logits: the first dispatch's layout serves.
        let blocks0 = dispatches[0].blocks;
        let (_, prepare) = kernel(blocks0, CeEntry::Prepare)?;
        let (_, reduce) = kernel(blocks0, CeEntry::Reduce)?;
        let entries: &[CeEntry] = if split.is_some() {
            &[CeEntry::Partials, CeEntry::Finish]
        } else {
            &[CeEntry::Main]
        };
        let mains = dispatches
            .iter()
            .map(|d| {
                entries
                    .iter()
                    .map(|&e| kernel(d.blocks, e))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        // The small per-row and per-class arrays are bound whole.
        let whole = |t: &TensorRef<'_>, n: u64| chunk_binding(t, 0, n, align);
        let base = CeParams {
            rows: rows as u32,
            cols: cols as u32,
            x_base: 0,
            y_base: 0,
            row0: 0,
            ignore_index: options.ignore_index,
            reduction: options.reduction.index(),
            chunks: Split::chunks(&split),
            inv_t,
            smoothing: options.label_smoothing,
            z_loss: options.z_loss,
            grad_scale: options.grad_scale,
            _pad1: [0; 4],
        };
        capture_errors(&self.device, || {
            let group = |kernel: &crate::pipeline::Kernel,
                         params: &CeParams,
                         (first, n): (u64, u64),
                         blocks: bool| {
                let uniform = self.uniforms.get(&self.device, bytemuck::bytes_of(params));
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: slot::PARAMS,
                    resource: uniform.as_entire_binding(),
                }];
                let x = chunk_binding(&args.logits, first, n, align);
                if !in_place {
                    entries.push(bind(slot::X, &args.logits, &x));
                    if blocks {
                        entries.push(bind_vectors(slot::X_VEC, &args.logits, &x, x_view, &tiny));
                    }
                }
                if let Some(g) = &grad {
                    let y = chunk_binding(g, first, n, align);
                    entries.push(bind(slot::Y, g, &y));
                    if blocks {
                        entries.push(bind_vectors(slot::Y_VEC, g, &y, y_view, &tiny));
                    }
                }
                entries.push(bind(slot::LSE, &lse, &whole(&lse, rows)));
                entries.push(bind(slot::TARGETS_OR_DY, &targets, &whole(&targets, rows)));
                if let Some(w) = args.weight {
                    let w = f32_ref(w);
                    entries.push(bind(slot::WEIGHT, &w, &whole(&w, cols)));
                }
                entries.push(bind(slot::LOSS, &loss, &whole(&loss, rows)));
                entries.push(wgpu::BindGroupEntry {
                    binding: slot::META,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: args.meta,
                        offset: 0,
                        size: std::num::NonZeroU64::new(16),
                    }),
                });
                if let Some(p) = &split {
                    entries.push(wgpu::BindGroupEntry {
                        binding: slot::PARTIALS,
                        resource: p.scratch.as_entire_binding(),
                    });
                }
                self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("softmax-wgpu cross-entropy"),
                    layout: &kernel.layout,
                    entries: &entries,
                })
            };
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("softmax-wgpu cross-entropy"),
                timestamp_writes: None,
            });
            // `prepare` and `reduce` bind the first dispatch's logits (unused).
            let first = (dispatches[0].row0 * cols, dispatches[0].rows * cols);
            pass.set_pipeline(&prepare.pipeline);
            pass.set_bind_group(0, &group(&prepare, &base, first, blocks0), &[]);
            pass.dispatch_workgroups(1, 1, 1);
            for (d, passes) in dispatches.iter().zip(&mains) {
                let (row0, nrows, blocks) = (d.row0, d.rows, d.blocks);
                let range = (row0 * cols, nrows * cols);
                let x = chunk_binding(&args.logits, range.0, range.1, align);
                let y = grad.map(|g| chunk_binding(&g, range.0, range.1, align));
                let params = CeParams {
                    rows: nrows as u32,
                    x_base: if in_place {
                        y.as_ref().map_or(0, |y| y.base)
                    } else {
                        x.base
                    },
                    // Without a gradient, the blocks follow the logits.
                    y_base: y.as_ref().map_or(x.base, |y| y.base),
                    row0: row0 as u32,
                    ..base
                };
                for (key, kernel) in passes {
                    pass.set_pipeline(&kernel.pipeline);
                    pass.set_bind_group(0, &group(kernel, &params, range, blocks), &[]);
                    if let Some(sp) = &split {
                        // Pieces along x, rows along y (in turns past one dimension's limit).
                        let rows = nrows.min(max_groups) as u32;
                        pass.dispatch_workgroups(sp.pieces as u32, rows, 1);
                    } else {
                        let groups = key.groups(nrows, run).min(max_groups);
                        pass.dispatch_workgroups(groups as u32, 1, 1);
                    }
                }
            }
            pass.set_pipeline(&reduce.pipeline);
            pass.set_bind_group(0, &group(&reduce, &base, first, blocks0), &[]);
            pass.dispatch_workgroups(1, 1, 1);
        })
    }

    /// Records `dx = y * (dy - sum(dy * y))` (softmax backward, `log = false`) or
    /// `dx = dy - exp(y) * sum(dy)` (log_softmax backward, `log = true`), row-wise. `y` and
    /// `dy` share a dtype; `dx` may differ.
    pub fn record_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        log: bool,
        shape: Shape,
        y: TensorRef,
        dy: TensorRef,
        dx: TensorRef,
    ) -> Result<()> {
        self.check_alive()?;
        shape.validate()?;
        let n = shape.len() as u64;
        y.check("y", n)?;
        dy.check("dy", n)?;
        dx.check("dx", n)?;
        if dy.dtype != y.dtype {
            return Err(Error::UnsupportedDType {
                dtype: dy.dtype,
                reason: "dy must have y's dtype",
            });
        }
        if dx.buffer == y.buffer || dx.buffer == dy.buffer {
            return Err(Error::InvalidBuffer {
                what: "dx",
                reason: "must be a different buffer from y and dy".into(),
            });
        }
        let cols = shape.cols as u64;
        let rows = shape.rows as u64;
        let (rows_per_chunk, align, max_groups) =
            self.chunking(cols * y.dtype.size().max(dx.dtype.size()))?;
        let row_per_lane = self.row_per_lane(rows, cols, BACKWARD_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        let wide = self.wide_words();
        let (y_view, dx_view) = (
            self.view_bytes(y.dtype, wide),
            self.view_bytes(dx.dtype, wide),
        );
        // The bindings of rows [row0, row0 + nrows): y, dy, dx.
        let bound = |row0: u64, nrows: u64| {
            let (first, count) = (row0 * cols, nrows * cols);
            (
                chunk_binding(&y, first, count, align),
                chunk_binding(&dy, first, count, align),
                chunk_binding(&dx, first, count, align),
            )
        };
        // Blocks of 8 where all three sit at the same offset modulo 8 and hold at least one
        // vector (no stand-in bound twice, read and written); a row per lane (`backward_run`)
        // only with contiguous shares, and with dx starting on a block.
        let blocks_in = |row0: u64, nrows: u64| {
            let (yb, db, xb) = bound(row0, nrows);
            yb.size >= y_view
                && db.size >= y_view
                && xb.size >= dx_view
                && yb.base % 8 == xb.base % 8
                && db.base % 8 == xb.base % 8
                && (!row_per_lane || (self.contiguous() && xb.base.is_multiple_of(8)))
        };
        let dispatches = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        let workgroup = self.workgroup_for("softmax backward", cols)?;
        // Split-row: each row's pieces' partial sums (one f32 each) merged by every piece.
        let split = self.training_split((rows, cols), row_per_lane, rows_per_chunk, 4)?;
        let key = |blocks: bool| BackwardKey {
            log,
            input: self.storage(y.dtype),
            output: self.storage(dx.dtype),
            contiguous: self.contiguous(),
            workgroup,
            half_builtins: self.half_builtins,
            row_loop: rows_per_chunk.min(rows) > max_groups,
            blocks,
            wide_words: wide,
            row_per_lane,
            packed_cols: packed_cols(row_per_lane, blocks, cols),
            split: split.is_some(),
        };
        let entries: &[SplitEntry] = if split.is_some() {
            &[SplitEntry::Partials, SplitEntry::Finish]
        } else {
            &[SplitEntry::Main]
        };
        let mut kernels = Vec::new();
        for d in &dispatches {
            let key = key(d.blocks);
            let passes = entries
                .iter()
                .map(|&e| {
                    self.pipelines
                        .get(&self.device, &PipelineKey::Backward(key, e))
                })
                .collect::<Result<Vec<_>>>()?;
            kernels.push((key, passes));
        }
        let tiny = self.tiny_buffer()?;
        capture_errors(&self.device, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("softmax-wgpu backward"),
                timestamp_writes: None,
            });
            for (d, (key, passes)) in dispatches.iter().zip(&kernels) {
                let (yb, db, xb) = &bound(d.row0, d.rows);
                let params = BackwardParams {
                    rows: d.rows as u32,
                    cols: cols as u32,
                    x_base: yb.base,
                    y_base: xb.base,
                    dy_base: db.base,
                    chunks: Split::chunks(&split),
                    _pad: [0; 2],
                };
                let uniform = self.uniforms.get(&self.device, bytemuck::bytes_of(&params));
                let mut entries = vec![
                    wgpu::BindGroupEntry {
                        binding: slot::PARAMS,
                        resource: uniform.as_entire_binding(),
                    },
                    bind(slot::X, &y, yb),
                    bind(slot::Y, &dx, xb),
                    bind(slot::TARGETS_OR_DY, &dy, db),
                ];
                if d.blocks {
                    entries.extend([
                        bind_vectors(slot::X_VEC, &y, yb, y_view, &tiny),
                        bind_vectors(slot::Y_VEC, &dx, xb, dx_view, &tiny),
                        bind_vectors(slot::DY_VEC, &dy, db, y_view, &tiny),
                    ]);
                }
                if let Some(p) = &split {
                    entries.push(wgpu::BindGroupEntry {
                        binding: slot::PARTIALS,
                        resource: p.scratch.as_entire_binding(),
                    });
                }
                for kernel in passes {
                    let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("softmax-wgpu backward"),
                        layout: &kernel.layout,
                        entries: &entries,
                    });
                    pass.set_pipeline(&kernel.pipeline);
                    pass.set_bind_group(0, &bg, &[]);
                    if let Some(sp) = &split {
                        // Pieces along x, rows along y (in turns past one dimension's limit).
                        let rows = d.rows.min(max_groups) as u32;
                        pass.dispatch_workgroups(sp.pieces as u32, rows, 1);
                    } else {
                        let groups = key.groups(d.rows, run);
                        pass.dispatch_workgroups(groups.min(max_groups) as u32, 1, 1);
                    }
                }
            }
        })
    }

    /// Cross-entropy of `logits` against `targets` (class indices), with the gradient with
    /// respect to the logits when `with_grad` is set. Blocking.
    pub fn cross_entropy<T: Element>(
        &self,
        logits: &[T],
        targets: &[i64],
        shape: Shape,
        options: &CrossEntropyOptions,
        with_grad: bool,
    ) -> Result<CrossEntropyResult<T>> {
        self.host_op(|| {
            shape.expect_len("logits", logits.len())?;
            if targets.len() != shape.rows {
                return Err(Error::ShapeMismatch {
                    what: "targets",
                    got: targets.len(),
                    expected: shape.rows,
                    rows: shape.rows,
                    cols: 1,
                });
            }
            options.validate(shape.cols)?;
            let ignore = i64::from(options.ignore_index);
            let mut t32 = Vec::with_capacity(targets.len());
            for (row, &t) in targets.iter().enumerate() {
                if t != ignore && !(0..shape.cols as i64).contains(&t) {
                    return Err(Error::invalid_target(row, t, shape.cols));
                }
                t32.push(t as i32);
            }
            let n = logits.len() as u64;
            let rows = shape.rows as u64;
            let out_usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let x = self.upload(logits)?;
            let tb = self.upload(&t32)?;
            let wb = options
                .weight
                .as_deref()
                .map(|w| self.upload(w))
                .transpose()?;
            let grad = match with_grad {
                true => Some(
                    self.pool
                        .take(&self.device, out_usage, T::DTYPE.buffer_bytes(n))?,
                ),
                false => None,
            };
            let loss = self.pool.take(&self.device, out_usage, 4 * rows)?;
            let lse = self.pool.take(&self.device, out_usage, 4 * rows)?;
            let meta = self.pool.take(&self.device, out_usage, 16)?;
            let mut encoder = self.device.create_command_encoder(&Default::default());
            self.record_cross_entropy(
                &mut encoder,
                &CrossEntropyArgs {
                    shape,
                    logits: TensorRef::new(&x, T::DTYPE),
                    targets: TensorRef::new(&tb, DType::F32),
                    weight: wb.as_ref().map(|w| TensorRef::new(w, DType::F32)),
                    grad: grad.as_ref().map_or(GradOutput::None, |g| {
                        GradOutput::To(TensorRef::new(g, T::DTYPE))
                    }),
                    loss: TensorRef::new(&loss, DType::F32),
                    lse: TensorRef::new(&lse, DType::F32),
                    meta: &meta,
                },
                options,
            )?;
            let mut reads = vec![(&*loss, 4 * rows), (&*lse, 4 * rows), (&*meta, 16)];
            if let Some(g) = &grad {
                reads.push((&**g, T::DTYPE.buffer_bytes(n)));
            }
            let out = self.submit_and_read(encoder, &reads)?;
            let f32s =
                |b: &[u8], n: usize| -> Vec<f32> { bytemuck::pod_collect_to_vec(&b[..4 * n]) };
            let meta = f32s(&out[2], 4);
            Ok(CrossEntropyResult {
                loss: meta[2],
                per_row: f32s(&out[0], shape.rows),
                lse: f32s(&out[1], shape.rows),
                grad: grad.map(|_| {
                    bytemuck::pod_collect_to_vec(&out[3][..std::mem::size_of_val(logits)])
                }),
            })
        })
    }

    /// Softmax backward (`log = false`) or log_softmax backward (`log = true`) of host
    /// slices: `y` the forward output, `dy` the upstream gradient. Blocking.
    pub fn softmax_backward<T: Element>(
        &self,
        log: bool,
        y: &[T],
        dy: &[T],
        shape: Shape,
    ) -> Result<Vec<T>> {
        self.host_op(|| {
            shape.expect_len("y", y.len())?;
            shape.expect_len("dy", dy.len())?;
            let n = y.len() as u64;
            let yb = self.upload(y)?;
            let db = self.upload(dy)?;
            let out = self.pool.take(
                &self.device,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                T::DTYPE.buffer_bytes(n),
            )?;
            let mut encoder = self.device.create_command_encoder(&Default::default());
            self.record_backward(
                &mut encoder,
                log,
                shape,
                TensorRef::new(&yb, T::DTYPE),
                TensorRef::new(&db, T::DTYPE),
                TensorRef::new(&out, T::DTYPE),
            )?;
            let bytes = self.submit_and_read(encoder, &[(&out, T::DTYPE.buffer_bytes(n))])?;
            Ok(bytemuck::pod_collect_to_vec(
                &bytes[0][..std::mem::size_of_val(y)],
            ))
        })
    }
}
