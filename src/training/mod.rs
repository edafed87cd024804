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
use crate::record::TensorRef;

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

fn f32_ref<'a>(t: TensorRef<'a>) -> TensorRef<'a> {
    TensorRef {
        dtype: DType::F32,
        ..t
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
