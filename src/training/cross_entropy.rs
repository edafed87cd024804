//! Cross-entropy with its gradient over the logits (shaders/cross_entropy.wgsl): PyTorch's
//! `F.cross_entropy` plus a temperature and a z-loss, in one pass over the logits.

use super::{f32_ref, Split};
use crate::dtype::{DType, Element};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{packed_cols, row_dispatches};
use crate::options::{CrossEntropyOptions, Shape};
use crate::params::CeParams;
use crate::record::{bind, bind_vectors, chunk_binding, TensorRef};
use crate::scope::capture_errors;
use crate::shader::{slot, CeEntry, CeKey, PipelineKey};
use crate::tuning::CE_ROW_PER_LANE_MAX_COLS_CPU;

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

impl<'a> CrossEntropyArgs<'a> {
    /// Checks every tensor against the (validated) shape; the gradient's tensor, if any,
    /// and whether it is the logits (in place).
    fn checked_grad(&self) -> Result<(Option<TensorRef<'a>>, bool)> {
        let (rows, cols) = (self.shape.rows as u64, self.shape.cols as u64);
        self.logits.check("logits", rows * cols)?;
        f32_ref(self.targets).check("targets", rows)?;
        f32_ref(self.loss).check("loss", rows)?;
        f32_ref(self.lse).check("lse", rows)?;
        if let Some(w) = self.weight {
            f32_ref(w).check("weight", cols)?;
        }
        if self.meta.size() < 16 || !self.meta.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidBuffer {
                what: "meta",
                reason: "needs 16 bytes and STORAGE usage".into(),
            });
        }
        Ok(match self.grad {
            GradOutput::None => (None, false),
            GradOutput::InPlace => (Some(self.logits), true),
            GradOutput::To(g) => {
                g.check("grad", rows * cols)?;
                (Some(g), false)
            }
        })
    }
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

impl Engine {
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
        let (grad, in_place) = args.checked_grad()?;
        let (rows, cols) = (shape.rows as u64, shape.cols as u64);
        let (targets, loss, lse) = (f32_ref(args.targets), f32_ref(args.loss), f32_ref(args.lse));
        let row_bytes = [
            cols * args.logits.dtype.size(),
            grad.map_or(0, |g| cols * g.dtype.size()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let (rows_per_chunk, align, max_groups) = self.profile.chunking(row_bytes)?;
        let row_per_lane = self
            .profile
            .row_per_lane(rows, cols, CE_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        // Blocks of 8 where the gradient (if any) sits at the logits' offset modulo 8, both
        // holding at least one vector (no stand-in bound twice, read and written), the blocks
        // following the logits without a gradient; a row per lane (`loss_and_grad_run`) only
        // with contiguous shares, and with the blocks starting the dispatch.
        let wide = self.profile.wide_words();
        let x_view = self.profile.view_bytes(args.logits.dtype, wide);
        let y_view = grad.map_or(16, |g| self.profile.view_bytes(g.dtype, wide));
        let blocks_in = |row0: u64, nrows: u64| {
            let (first, n) = (row0 * cols, nrows * cols);
            let x = chunk_binding(&args.logits, first, n, align);
            let out_base = grad.map_or(x.base, |g| chunk_binding(&g, first, n, align).base);
            x.size >= x_view
                && grad.is_none_or(|g| {
                    let y = chunk_binding(&g, first, n, align);
                    y.size >= y_view && (in_place || x.base % 8 == y.base % 8)
                })
                && (!row_per_lane || (self.profile.contiguous() && out_base.is_multiple_of(8)))
        };
        let dispatches = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        // Lanes loop over a row's logits (main) and over the rows (prepare, reduce).
        let workgroup = self
            .profile
            .workgroup_for("cross-entropy", rows.max(cols))?;
        // Two words of 16 bytes per piece (`store_ce_partial` in src/shader/mod.rs).
        let split = self.training_split((rows, cols), row_per_lane, rows_per_chunk, 32)?;
        let kernel = |blocks: bool, entry: CeEntry| {
            let key = CeKey {
                input: self.profile.storage(args.logits.dtype),
                grad: grad.map(|g| self.profile.storage(g.dtype)),
                in_place,
                weight: args.weight.is_some(),
                contiguous: self.profile.contiguous(),
                workgroup,
                half_builtins: self.profile.half_builtins,
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
                    let groups = key.groups(nrows, run);
                    Split::dispatch(&split, &mut pass, nrows, groups, max_groups);
                }
            }
            pass.set_pipeline(&reduce.pipeline);
            pass.set_bind_group(0, &group(&reduce, &base, first, blocks0), &[]);
            pass.dispatch_workgroups(1, 1, 1);
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
}
