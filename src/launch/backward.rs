//! The launch of softmax / log_softmax backward (shaders/backward.wgsl): `dx` from `y` and
//! `dy`, row-wise. `Engine::record_backward` (src/training/backward.rs) executes it.

use super::{chunk_at, packed_cols, row_dispatches, Binding, ChunkBinding, Pass, TensorAt};
use crate::error::Result;
use crate::options::Shape;
use crate::params::BackwardParams;
use crate::profile::DeviceProfile;
use crate::shader::{slot, BackwardKey, PipelineKey, SplitEntry, BACKWARD_PARTIAL_BYTES};
use crate::tuning::BACKWARD_ROW_PER_LANE_MAX_COLS_CPU;

/// A backward call as the planner sees it (arguments already checked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BackwardCall {
    /// Log_softmax backward (`dx = dy - exp(y) sum dy`) rather than softmax backward.
    pub log: bool,
    pub shape: Shape,
    pub y: TensorAt,
    pub dy: TensorAt,
    pub dx: TensorAt,
}

/// One dispatch of a backward launch: its rows, pipeline, bindings and uniforms.
#[derive(Clone, Debug)]
pub(crate) struct BackwardDispatch {
    pub key: BackwardKey,
    pub y: ChunkBinding,
    pub dy: ChunkBinding,
    pub dx: ChunkBinding,
    pub params: BackwardParams,
    /// Workgroups along x and y.
    pub groups: (u32, u32),
}

/// Everything a backward call launches.
#[derive(Clone, Debug)]
pub(crate) struct BackwardLaunch {
    pub dispatches: Vec<BackwardDispatch>,
    /// The entry points each dispatch runs, in order.
    pub entries: &'static [SplitEntry],
    /// Bytes per element of the vector views of `y` and `dy`, and of `dx`.
    pub y_view: u64,
    pub dx_view: u64,
    /// Split-row scratch: each piece's partial sum, one f32 (0 without split-row).
    pub scratch_bytes: u64,
}

impl DeviceProfile {
    /// The launch of a checked backward call on this device.
    pub(crate) fn launch_backward(&self, call: &BackwardCall) -> Result<BackwardLaunch> {
        let (rows, cols) = (call.shape.rows as u64, call.shape.cols as u64);
        let (mut rows_per_chunk, align, max_groups) =
            self.chunking(cols * call.y.dtype.size().max(call.dx.dtype.size()))?;
        // Batch-invariant mode: by the row length alone, the rows summed by their columns in
        // their order (blocks for the stores only, no runs of rows; see `invariant_plan` in
        // src/plan.rs).
        let invariant = self.batch_invariant;
        let row_per_lane = self.row_per_lane(rows, cols, BACKWARD_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        let wide = self.wide_words();
        let (y_view, dx_view) = (
            self.view_bytes(call.y.dtype, wide),
            self.view_bytes(call.dx.dtype, wide),
        );
        // The bindings of rows [row0, row0 + nrows): y, dy, dx.
        let bound = |row0: u64, nrows: u64| {
            let (first, count) = (row0 * cols, nrows * cols);
            (
                chunk_at(call.y, first, count, align),
                chunk_at(call.dy, first, count, align),
                chunk_at(call.dx, first, count, align),
            )
        };
        // Blocks of 8 where all three sit at the same offset modulo 8 and hold at least one
        // vector (no stand-in bound twice, read and written); a row per lane (`backward_run`)
        // only with contiguous shares, and with dx starting on a block.
        let blocks_in = |row0: u64, nrows: u64| {
            let (yb, db, xb) = bound(row0, nrows);
            !(invariant && row_per_lane)
                && yb.size >= y_view
                && db.size >= y_view
                && xb.size >= dx_view
                && yb.block_phase() == xb.block_phase()
                && db.block_phase() == xb.block_phase()
                && (!row_per_lane || (self.contiguous() && xb.block_phase() == 0))
        };
        // Split-row: each row's pieces' partial sums (one f32 each) merged by every piece.
        let pieces = self.training_pieces(call.shape, 2, row_per_lane);
        // Split-row dispatches sized to the cache take the rows that fit it (y and dy).
        if let (Some(_), Some(fit)) = (pieces, self.cache_rows(call.shape, 2)) {
            rows_per_chunk = rows_per_chunk.min(fit);
        }
        let runs = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        let workgroup = self.workgroup_for("softmax backward", cols)?;
        let dispatches = runs
            .iter()
            .map(|d| {
                let key = BackwardKey {
                    log: call.log,
                    input: self.storage(call.y.dtype),
                    output: self.storage(call.dx.dtype),
                    contiguous: self.contiguous(),
                    workgroup,
                    half_builtins: self.half_builtins,
                    row_loop: rows_per_chunk.min(rows) > max_groups,
                    blocks: d.blocks,
                    columns: invariant,
                    wide_words: wide,
                    row_per_lane,
                    packed_cols: packed_cols(row_per_lane, d.blocks, cols),
                    split: pieces.is_some(),
                };
                let (y, dy, dx) = bound(d.row0, d.rows);
                let params = BackwardParams {
                    rows: d.rows as u32,
                    cols: cols as u32,
                    x_base: y.base,
                    y_base: dx.base,
                    dy_base: dy.base,
                    chunks: pieces.unwrap_or(1) as u32,
                    _pad: [0; 2],
                };
                let groups = match pieces {
                    Some(p) => (p as u32, d.rows.min(max_groups) as u32),
                    None => (key.groups(d.rows, run).min(max_groups) as u32, 1),
                };
                BackwardDispatch {
                    key,
                    y,
                    dy,
                    dx,
                    params,
                    groups,
                }
            })
            .collect();
        Ok(BackwardLaunch {
            dispatches,
            entries: if pieces.is_some() {
                &[SplitEntry::Partials, SplitEntry::Finish]
            } else {
                &[SplitEntry::Main]
            },
            y_view,
            dx_view,
            scratch_bytes: pieces
                .map_or(0, |p| rows_per_chunk.min(rows) * p * BACKWARD_PARTIAL_BYTES),
        })
    }
}

impl BackwardLaunch {
    /// The passes, for buffers `[y, dy, dx]`.
    pub(crate) fn passes(&self) -> Vec<Pass> {
        let (y, dy, dx) = (0, 1, 2);
        let mut out = Vec::new();
        for d in &self.dispatches {
            let bind = |at: u32| {
                Some(match at {
                    slot::X => Binding::Chunk { arg: y, chunk: d.y },
                    slot::Y => Binding::Chunk {
                        arg: dx,
                        chunk: d.dx,
                    },
                    slot::TARGETS_OR_DY => Binding::Chunk {
                        arg: dy,
                        chunk: d.dy,
                    },
                    slot::X_VEC => Binding::Vectors {
                        arg: y,
                        chunk: d.y,
                        view: self.y_view,
                    },
                    slot::Y_VEC => Binding::Vectors {
                        arg: dx,
                        chunk: d.dx,
                        view: self.dx_view,
                    },
                    slot::DY_VEC => Binding::Vectors {
                        arg: dy,
                        chunk: d.dy,
                        view: self.y_view,
                    },
                    slot::PARTIALS => Binding::Scratch { size: None },
                    _ => return None,
                })
            };
            for &entry in self.entries {
                let key = PipelineKey::Backward(d.key, entry);
                out.push(Pass::new(key, &d.params, d.groups, bind));
            }
        }
        out
    }
}
