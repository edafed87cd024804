//! Softmax and log_softmax backward (shaders/backward.wgsl): `dx` from the forward output
//! `y` and the upstream gradient `dy`, row-wise.

use super::{packed_cols, row_dispatches, Split};
use crate::dtype::Element;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::Shape;
use crate::params::BackwardParams;
use crate::record::{bind, bind_vectors, chunk_binding, TensorRef};
use crate::scope::capture_errors;
use crate::shader::{slot, BackwardKey, PipelineKey, SplitEntry};
use crate::tuning::BACKWARD_ROW_PER_LANE_MAX_COLS_CPU;

/// Checks the shape, the three tensors against it, their dtypes (`dy` as `y`) and that `dx`
/// is a buffer of its own.
fn check_tensors(shape: Shape, y: &TensorRef, dy: &TensorRef, dx: &TensorRef) -> Result<()> {
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
    Ok(())
}

impl Engine {
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
        check_tensors(shape, &y, &dy, &dx)?;
        let cols = shape.cols as u64;
        let rows = shape.rows as u64;
        let (rows_per_chunk, align, max_groups) = self
            .profile
            .chunking(cols * y.dtype.size().max(dx.dtype.size()))?;
        let row_per_lane =
            self.profile
                .row_per_lane(rows, cols, BACKWARD_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        let wide = self.profile.wide_words();
        let (y_view, dx_view) = (
            self.profile.view_bytes(y.dtype, wide),
            self.profile.view_bytes(dx.dtype, wide),
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
                && (!row_per_lane || (self.profile.contiguous() && xb.base.is_multiple_of(8)))
        };
        let dispatches = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        let workgroup = self.profile.workgroup_for("softmax backward", cols)?;
        // Split-row: each row's pieces' partial sums (one f32 each) merged by every piece.
        let split = self.training_split((rows, cols), row_per_lane, rows_per_chunk, 4)?;
        let key = |blocks: bool| BackwardKey {
            log,
            input: self.profile.storage(y.dtype),
            output: self.profile.storage(dx.dtype),
            contiguous: self.profile.contiguous(),
            workgroup,
            half_builtins: self.profile.half_builtins,
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
                    let groups = key.groups(d.rows, run);
                    Split::dispatch(&split, &mut pass, d.rows, groups, max_groups);
                }
            }
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
