//! The launch of cross-entropy (shaders/cross_entropy.wgsl): `prepare` (the class-weight
//! sum), the loss and gradient over the rows (`main`, or split-row's `partials` and
//! `finish`), then `reduce` (the reduced loss), in one compute pass.
//! `Engine::record_cross_entropy` (src/training/cross_entropy.rs) executes it.

use super::{chunk_at, packed_cols, row_dispatches, Binding, ChunkBinding, Pass, TensorAt};
use crate::error::Result;
use crate::options::Shape;
use crate::params::CeParams;
use crate::profile::DeviceProfile;
use crate::shader::{slot, CeEntry, CeKey, PipelineKey, BLOCK, CE_PARTIAL_BYTES};
use crate::tuning::CE_ROW_PER_LANE_MAX_COLS_CPU;

/// A cross-entropy call as the planner sees it (arguments and options already checked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct CrossEntropyCall {
    pub shape: Shape,
    pub logits: TensorAt,
    /// The gradient: the logits' place where in place, none without a gradient.
    pub grad: Option<TensorAt>,
    pub in_place: bool,
    /// Per-row targets (i32), losses and logsumexps, and per-class weights (f32): places of
    /// 4-byte elements, bound whole.
    pub targets: TensorAt,
    pub loss: TensorAt,
    pub lse: TensorAt,
    pub weight: Option<TensorAt>,
    /// The options' uniforms: `rows`, `cols`, the bases and `chunks` are the launch's.
    pub options: CeParams,
}

/// Where one dispatch binds the logits and the gradient, and whether it loads blocks of 8.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CeRange {
    pub x: ChunkBinding,
    pub y: Option<ChunkBinding>,
    pub blocks: bool,
}

/// One dispatch of the rows' pass: its bindings, uniforms, and per entry point its key and
/// workgroups along x and y.
#[derive(Clone, Debug)]
pub(crate) struct CeDispatch {
    pub range: CeRange,
    pub params: CeParams,
    pub passes: Vec<(CeKey, (u32, u32))>,
}

/// Everything a cross-entropy call launches.
#[derive(Clone, Debug)]
pub(crate) struct CrossEntropyLaunch {
    /// `prepare` and `reduce`: one workgroup each, with the whole batch's uniforms and the
    /// first dispatch's bindings (they read no logits).
    pub prepare: CeKey,
    pub reduce: CeKey,
    pub whole_batch: CeParams,
    pub first: CeRange,
    /// The entry points of the rows' pass, in order.
    pub entries: &'static [CeEntry],
    pub dispatches: Vec<CeDispatch>,
    /// The small per-row and per-class arrays, bound whole.
    pub targets: ChunkBinding,
    pub loss: ChunkBinding,
    pub lse: ChunkBinding,
    pub weight: Option<ChunkBinding>,
    /// Bytes per element of the logits' and the gradient's vector views.
    pub x_view: u64,
    pub y_view: u64,
    /// Split-row scratch: two words of 16 bytes per piece (0 without split-row).
    pub scratch_bytes: u64,
}

impl DeviceProfile {
    /// The launch of a checked cross-entropy call on this device.
    pub(crate) fn launch_cross_entropy(
        &self,
        call: &CrossEntropyCall,
    ) -> Result<CrossEntropyLaunch> {
        let (rows, cols) = (call.shape.rows as u64, call.shape.cols as u64);
        let row_bytes = [
            cols * call.logits.dtype.size(),
            call.grad.map_or(0, |g| cols * g.dtype.size()),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let (mut rows_per_chunk, align, max_groups) = self.chunking(row_bytes)?;
        // Batch-invariant mode: by the row length alone, the rows summed by their columns in
        // their order (blocks for the gradient's stores only, no runs of rows; see
        // `invariant_plan` in src/plan.rs).
        let invariant = self.batch_invariant;
        let row_per_lane = self.row_per_lane(rows, cols, CE_ROW_PER_LANE_MAX_COLS_CPU);
        let run = crate::shader::rows_filling_blocks(cols);
        let wide = self.wide_words();
        let x_view = self.view_bytes(call.logits.dtype, wide);
        let y_view = call.grad.map_or(16, |g| self.view_bytes(g.dtype, wide));
        let range_of = |row0: u64, nrows: u64| {
            let (first, n) = (row0 * cols, nrows * cols);
            (
                chunk_at(call.logits, first, n, align),
                call.grad.map(|g| chunk_at(g, first, n, align)),
            )
        };
        // Lanes loop over a row's logits (main) and over the rows (prepare, reduce); a
        // batch-invariant row's lanes by its length alone.
        let workgroup = self.workgroup_for("cross-entropy", rows.max(cols))?;
        let row_workgroup = if invariant {
            self.workgroup_for("cross-entropy", cols)?
        } else {
            workgroup
        };
        let pieces = self.training_pieces(call.shape, 1, row_per_lane);
        // Split-row dispatches sized to the cache take the rows that fit it.
        if let (Some(_), Some(fit)) = (pieces, self.cache_rows(call.shape, 1)) {
            rows_per_chunk = rows_per_chunk.min(fit);
        }
        let key = |blocks: bool, entry: CeEntry| CeKey {
            input: self.storage(call.logits.dtype),
            grad: call.grad.map(|g| self.storage(g.dtype)),
            in_place: call.in_place,
            weight: call.weight.is_some(),
            contiguous: self.contiguous(),
            workgroup: match entry {
                CeEntry::Prepare | CeEntry::Reduce => workgroup,
                _ => row_workgroup,
            },
            half_builtins: self.half_builtins,
            row_loop: rows_per_chunk.min(rows) > max_groups,
            blocks,
            columns: invariant,
            wide_words: wide,
            row_per_lane,
            packed_cols: if entry == CeEntry::Main {
                packed_cols(row_per_lane, blocks, cols)
            } else {
                0
            },
            split: pieces.is_some(),
        };
        // The vector views bind two more storage buffers: only where the device has them
        // (WebGPU's default limits allow 8 per stage; with class weights and split-row the
        // blocks would need 10).
        let blocks_fit = PipelineKey::CrossEntropy(key(true, CeEntry::Main), CeEntry::Main)
            .storage_bindings()
            .len()
            <= self.limits.max_storage_buffers_per_shader_stage as usize;
        // Blocks of 8 where the gradient (if any) sits at the logits' offset modulo 8, both
        // holding at least one vector (no stand-in bound twice, read and written), the blocks
        // following the logits without a gradient; a row per lane (`loss_and_grad_run`) only
        // with contiguous shares, and with the blocks starting the dispatch; where they fit.
        let blocks_in = |row0: u64, nrows: u64| {
            let (x, y) = range_of(row0, nrows);
            let out_base = y.map_or(x.base, |y| y.base);
            !(invariant && row_per_lane)
                && blocks_fit
                && x.size >= x_view
                && y.is_none_or(|y| {
                    y.size >= y_view && (call.in_place || x.block_phase() == y.block_phase())
                })
                && (!row_per_lane
                    || (self.contiguous() && u64::from(out_base).is_multiple_of(BLOCK)))
        };
        let runs = row_dispatches(rows, cols, rows_per_chunk, row_per_lane, blocks_in);
        let entries: &'static [CeEntry] = if pieces.is_some() {
            &[CeEntry::Partials, CeEntry::Finish]
        } else {
            &[CeEntry::Main]
        };
        let whole_batch = CeParams {
            rows: rows as u32,
            cols: cols as u32,
            x_base: 0,
            y_base: 0,
            row0: 0,
            chunks: pieces.unwrap_or(1) as u32,
            ..call.options
        };
        let dispatches = runs
            .iter()
            .map(|d| {
                let (x, y) = range_of(d.row0, d.rows);
                let params = CeParams {
                    rows: d.rows as u32,
                    x_base: if call.in_place {
                        y.map_or(0, |y| y.base)
                    } else {
                        x.base
                    },
                    // Without a gradient, the blocks follow the logits.
                    y_base: y.map_or(x.base, |y| y.base),
                    row0: d.row0 as u32,
                    ..whole_batch
                };
                let passes = entries
                    .iter()
                    .map(|&entry| {
                        let key = key(d.blocks, entry);
                        let groups = match pieces {
                            Some(p) => (p as u32, d.rows.min(max_groups) as u32),
                            None => (key.groups(d.rows, run).min(max_groups) as u32, 1),
                        };
                        (key, groups)
                    })
                    .collect();
                CeDispatch {
                    range: CeRange {
                        x,
                        y,
                        blocks: d.blocks,
                    },
                    params,
                    passes,
                }
            })
            .collect::<Vec<_>>();
        // `prepare` and `reduce` read no logits: the first dispatch's layout serves.
        let first = dispatches[0].range;
        let whole = |t: TensorAt, n: u64| chunk_at(t, 0, n, align);
        Ok(CrossEntropyLaunch {
            prepare: key(first.blocks, CeEntry::Prepare),
            reduce: key(first.blocks, CeEntry::Reduce),
            whole_batch,
            first,
            entries,
            dispatches,
            targets: whole(call.targets, rows),
            loss: whole(call.loss, rows),
            lse: whole(call.lse, rows),
            weight: call.weight.map(|w| whole(w, cols)),
            x_view,
            y_view,
            // Two words of 16 bytes per piece (`store_ce_partial` in src/shader/mod.rs).
            scratch_bytes: pieces.map_or(0, |p| rows_per_chunk.min(rows) * p * CE_PARTIAL_BYTES),
        })
    }
}

impl CrossEntropyLaunch {
    /// The passes, for buffers `[logits, grad (the logits where in place), lse, targets,
    /// weight, loss, meta]` (the gradient and the weights where the call has them).
    pub(crate) fn passes(&self) -> Vec<Pass> {
        let (logits, grad, lse, targets, weight, loss, meta) = (0, 1, 2, 3, 4, 5, 6);
        let bind = |r: &CeRange, at: u32| {
            Some(match at {
                slot::X => Binding::Chunk {
                    arg: logits,
                    chunk: r.x,
                },
                slot::X_VEC => Binding::Vectors {
                    arg: logits,
                    chunk: r.x,
                    view: self.x_view,
                },
                slot::Y => Binding::Chunk {
                    arg: grad,
                    chunk: r.y?,
                },
                slot::Y_VEC => Binding::Vectors {
                    arg: grad,
                    chunk: r.y?,
                    view: self.y_view,
                },
                slot::LSE => Binding::Chunk {
                    arg: lse,
                    chunk: self.lse,
                },
                slot::TARGETS_OR_DY => Binding::Chunk {
                    arg: targets,
                    chunk: self.targets,
                },
                slot::WEIGHT => Binding::Chunk {
                    arg: weight,
                    chunk: self.weight?,
                },
                slot::LOSS => Binding::Chunk {
                    arg: loss,
                    chunk: self.loss,
                },
                slot::META => Binding::Head {
                    arg: meta,
                    size: 16,
                },
                slot::PARTIALS => Binding::Scratch { size: None },
                _ => return None,
            })
        };
        // `prepare` and `reduce` read no logits: the first dispatch's bindings serve.
        let once = |key: CeKey, entry: CeEntry| {
            let key = PipelineKey::CrossEntropy(key, entry);
            Pass::new(key, &self.whole_batch, (1, 1), |at| bind(&self.first, at))
        };
        let mut out = vec![once(self.prepare, CeEntry::Prepare)];
        for d in &self.dispatches {
            for (&(key, groups), &entry) in d.passes.iter().zip(self.entries) {
                let key = PipelineKey::CrossEntropy(key, entry);
                out.push(Pass::new(key, &d.params, groups, |at| bind(&d.range, at)));
            }
        }
        out.push(once(self.reduce, CeEntry::Reduce));
        out
    }
}
