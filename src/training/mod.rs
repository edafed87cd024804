//! Training operations: fused cross-entropy with its gradient (`cross_entropy`), softmax and
//! log_softmax backward (`backward`), each recorded on the device and wrapped for host
//! slices. What both share lives here: whether rows go a lane each, the split-row layout,
//! and the dispatches of a tensor's rows.

mod backward;
mod cross_entropy;

pub use cross_entropy::{CrossEntropyArgs, CrossEntropyResult, GradOutput};

use crate::dtype::DType;
use crate::engine::Engine;
use crate::error::Result;
use crate::launch::row_chunks;
use crate::profile::DeviceProfile;
use crate::record::TensorRef;
use crate::tuning::{ROW_PER_LANE_MAX_COLS_GPU, ROW_PER_LANE_SHORT_COLS_CPU};

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

    /// Dispatches one pass of a training kernel over `rows` rows: with split-row, pieces
    /// along x and rows along y (rows in turns past one dimension's limit); otherwise the
    /// kernel's `groups` workgroups along x. At most `max_groups` along either.
    fn dispatch(
        split: &Option<Split>,
        pass: &mut wgpu::ComputePass<'_>,
        rows: u64,
        groups: u64,
        max_groups: u64,
    ) {
        match split {
            Some(sp) => pass.dispatch_workgroups(sp.pieces as u32, rows.min(max_groups) as u32, 1),
            None => pass.dispatch_workgroups(groups.min(max_groups) as u32, 1, 1),
        }
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

impl DeviceProfile {
    /// Whether a training kernel gives `rows` rows of `cols` a lane each: on CPU adapters
    /// up to `cpu_max` logits where the rows give every thread its workgroups (always up to
    /// `ROW_PER_LANE_SHORT_COLS_CPU`). A workgroup per row leaves most of its lanes idle on
    /// short rows and pays a reduction for a few logits (lavapipe, 1048576 x 10 f32, with a
    /// workgroup per row: cross-entropy with its gradient 0.002 of copy, softmax backward
    /// 0.008; a lane per row: 0.09 and 0.29).
    pub(crate) fn row_per_lane(&self, rows: u64, cols: u64, cpu_max: u64) -> bool {
        if !self.cpu_tuned() {
            return cols <= ROW_PER_LANE_MAX_COLS_GPU;
        }
        let busy = u64::from(self.parallel_groups()) * u64::from(self.workgroup_size());
        cols <= cpu_max.min(ROW_PER_LANE_SHORT_COLS_CPU) || (cols <= cpu_max && rows >= busy)
    }
}

impl Engine {
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
        let pieces = self.profile.split_pieces(rows, cols / 8);
        if row_per_lane || !self.profile.wants_split(rows, cols, pieces) {
            return Ok(None);
        }
        let scratch = self.split_scratch(rows_per_chunk.min(rows) * pieces * piece_bytes)?;
        Ok(Some(Split { pieces, scratch }))
    }
}
