//! A forward call's launch: from a [`ForwardCall`] (the operation, shape, dtypes and byte
//! offsets of its tensors) to a [`ForwardLaunch`]: the plan of each pipeline (unpacked,
//! packed), its key, and each dispatch's rows, uniforms, binding ranges and workgroup counts.
//! `Engine::record_forward` (src/record.rs) executes it; `Engine::explain_forward` prints it.

use crate::error::Result;
use crate::options::{Forward, MaskedRows, Shape, Variant};
use crate::params::ForwardParams;
use crate::plan::Plan;
use crate::profile::DeviceProfile;
use crate::shader::{slot, KernelKey, PipelineKey, SplitEntry, FORWARD_PARTIAL_BYTES};
use crate::tuning::MAX_SPLIT_PARTIALS;

use super::{chunk_at, row_chunks, Binding, ChunkBinding, Pass, TensorAt};

/// A forward call as the planner sees it (arguments already checked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ForwardCall {
    pub op: Forward,
    pub shape: Shape,
    pub input: TensorAt,
    /// The output: the input's place where in place, none for logsumexp.
    pub output: Option<TensorAt>,
    pub in_place: bool,
    pub lse: Option<TensorAt>,
    pub variant: Variant,
    pub inv_t: f32,
    pub masked_rows: MaskedRows,
}

/// One dispatch of a forward launch: its rows, whether they run packed (see
/// `Layout::packed_cols`), where each tensor's chunk of them is bound, and its uniforms.
#[derive(Clone, Debug)]
pub(crate) struct Dispatch {
    pub rows: u64,
    pub packed: bool,
    pub x: ChunkBinding,
    pub y: Option<ChunkBinding>,
    pub lse: Option<ChunkBinding>,
    pub params: ForwardParams,
}

/// Everything a forward call launches (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct ForwardLaunch {
    /// The plan of the unpacked and of the packed pipeline.
    pub plans: [Plan; 2],
    /// Their keys, where a dispatch runs them.
    pub keys: [Option<KernelKey>; 2],
    /// The entry points each pipeline runs, in order, per dispatch.
    pub entries: &'static [SplitEntry],
    pub dispatches: Vec<Dispatch>,
    /// Bytes per element of the input's and the output's vector views.
    pub x_view: u64,
    pub y_view: u64,
    /// Split-row: partial states per dispatch row (`plans[..].chunks`), `FORWARD_PARTIAL_BYTES` each.
    pub split_rows: Option<u64>,
    /// The adapter's workgroups per dispatch dimension.
    pub max_groups: u64,
}

impl ForwardLaunch {
    /// Workgroups of dispatch `d` as `(x, y)`: split-row pieces go along x and rows along y;
    /// otherwise groups of rows along x, at most one dimension's worth (workgroups then loop
    /// over rows).
    pub(crate) fn groups(&self, d: &Dispatch) -> (u32, u32) {
        let plan = &self.plans[usize::from(d.packed)];
        let rows = groups_of(plan, d.rows).min(self.max_groups) as u32;
        if plan.layout.split {
            (plan.chunks, rows)
        } else {
            (rows, 1)
        }
    }

    /// Bytes of split-row scratch the launch needs.
    pub(crate) fn scratch_bytes(&self) -> u64 {
        self.split_rows.map_or(0, |rows| {
            rows * u64::from(self.plans[1].chunks) * FORWARD_PARTIAL_BYTES
        })
    }
}

/// Workgroups a dispatch of `rows` rows needs along its row dimension.
fn groups_of(plan: &Plan, rows: u64) -> u64 {
    if plan.layout.split {
        rows
    } else {
        rows.div_ceil(u64::from(plan.rows_per_group))
    }
}

impl DeviceProfile {
    /// The launch of a checked forward call on this device.
    pub(crate) fn launch_forward(&self, call: &ForwardCall) -> Result<ForwardLaunch> {
        let (rows, cols) = (call.shape.rows as u64, call.shape.cols as u64);
        let plan = self.plan(call.op, call.shape, call.variant)?;
        let row_bytes = [
            cols * call.input.dtype.size(),
            call.output.map_or(0, |o| cols * o.dtype.size()),
            if call.lse.is_some() { 4 } else { 0 },
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let (mut rows_per_chunk, align, max_groups) = self.chunking(row_bytes)?;
        // Packed lanes take whole runs of rows: every dispatch of them starts one.
        let packed_rows = u64::from(plan.packed_rows());
        if rows_per_chunk >= packed_rows {
            rows_per_chunk = rows_per_chunk / packed_rows * packed_rows;
        }
        let split_rows = plan.layout.split.then(|| {
            // Each dispatch's partial states fit the scratch buffer, and its logits the
            // cache where dispatches are sized to it.
            let cache_rows = self.forward_cache_rows(call.op, call.shape);
            let cache_rows = cache_rows.unwrap_or(u64::MAX);
            rows_per_chunk = rows_per_chunk
                .min(MAX_SPLIT_PARTIALS / u64::from(plan.chunks))
                .min(cache_rows)
                .max(1);
            rows_per_chunk.min(rows)
        });
        let output = call.output;
        // The dispatches: first row, rows, whether packed, and where each tensor's chunk is
        // bound. With packed rows, the rows that do not fill a lane's run go in a dispatch
        // of their own, unpacked, so that the packed kernel has no partial run to mind.
        let dispatches_of = |packed: bool| -> Vec<(u64, u64, bool)> {
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
                .collect()
        };
        let bound = |row0: u64, nrows: u64| {
            (
                chunk_at(call.input, row0 * cols, nrows * cols, align),
                call.output
                    .map(|o| chunk_at(o, row0 * cols, nrows * cols, align)),
            )
        };
        // Blocks of 8 are aligned in the output; the input loads them as vectors where it
        // sits at the same element offset modulo 8 in every dispatch of the pipeline.
        // Logsumexp has no output: its blocks follow the input. In place, both are one.
        let wide = self.forward_wide_words();
        let x_view = self.view_bytes(call.input.dtype, wide);
        let y_view = output.map_or(16, |o| self.view_bytes(o.dtype, wide));
        // Each pipeline (unpacked, packed) is aligned where all its dispatches are.
        let aligned_in = |runs: &[(u64, u64, bool)], packed: bool| {
            call.in_place
                || runs
                    .iter()
                    .filter(|r| r.2 == packed)
                    .all(|&(row0, nrows, _)| {
                        let (x, y) = bound(row0, nrows);
                        x.size >= x_view
                            && y.is_none_or(|y| {
                                y.size >= y_view && x.block_phase() == y.block_phase()
                            })
                    })
        };
        let mut runs = dispatches_of(plan.layout.packed_cols > 0);
        // Packed rows load whole blocks from each dispatch's first row on; elsewhere the
        // rows run unpacked.
        let blocks_from_row_0 = runs.iter().filter(|r| r.2).all(|&(row0, nrows, _)| {
            let (x, y) = bound(row0, nrows);
            y.map_or(x, |y| y).block_phase() == 0
        });
        if plan.layout.packed_cols > 0 && !(aligned_in(&runs, true) && blocks_from_row_0) {
            runs = dispatches_of(false);
        }
        let aligned = [false, true].map(|packed| aligned_in(&runs, packed));
        let plans = [plan.unpacked(), plan];
        let masked_zeros = u32::from(call.masked_rows == MaskedRows::Zeros);
        let dispatches: Vec<Dispatch> = runs
            .iter()
            .map(|&(row0, nrows, packed)| {
                let (x, y) = bound(row0, nrows);
                let lse = call.lse.map(|t| chunk_at(t, row0, nrows, align));
                // Logsumexp has no output: its pairs follow the input.
                let y_base = y.map_or(x.base, |y| y.base);
                let params = ForwardParams {
                    rows: nrows as u32,
                    cols: cols as u32,
                    x_base: if call.in_place { y_base } else { x.base },
                    y_base,
                    lse_base: lse.map_or(0, |l| l.base),
                    masked_zeros,
                    inv_t: call.inv_t.to_bits(),
                    chunks: plans[usize::from(packed)].chunks,
                };
                Dispatch {
                    rows: nrows,
                    packed,
                    x,
                    y,
                    lse,
                    params,
                }
            })
            .collect();
        let keys = [0, 1].map(|k| {
            let plan = &plans[k];
            let mut mine = dispatches.iter().filter(|d| usize::from(d.packed) == k);
            mine.clone().next()?;
            Some(KernelKey {
                op: call.op,
                input: self.storage(call.input.dtype),
                output: output.map(|o| self.storage(o.dtype)),
                in_place: call.in_place,
                lse: call.lse.is_some(),
                contiguous: self.contiguous(),
                workgroup: plan.workgroup,
                layout: plan.layout,
                half_builtins: self.half_builtins,
                // Groups of rows per dispatch past one dimension's limit: workgroups loop.
                row_loop: mine.any(|d| groups_of(plan, d.rows) > max_groups),
                aligned: aligned[k],
                wide_words: wide,
            })
        });
        let entries: &'static [SplitEntry] = if plan.layout.split {
            &[SplitEntry::Partials, SplitEntry::Finish]
        } else {
            &[SplitEntry::Main]
        };
        Ok(ForwardLaunch {
            plans,
            keys,
            entries,
            dispatches,
            x_view,
            y_view,
            split_rows,
            max_groups,
        })
    }
}

impl ForwardLaunch {
    /// The passes, for buffers `[input, output (the input where in place), lse]` (the last
    /// two where the call has them).
    pub(crate) fn passes(&self) -> Vec<Pass> {
        let (input, output, lse) = (0, 1, 2);
        let mut out = Vec::new();
        for d in &self.dispatches {
            let k = usize::from(d.packed);
            let Some(key) = self.keys[k] else { continue };
            let bind = |at: u32| match at {
                slot::X => Some(Binding::Chunk {
                    arg: input,
                    chunk: d.x,
                }),
                slot::X_VEC => Some(Binding::Vectors {
                    arg: input,
                    chunk: d.x,
                    view: self.x_view,
                }),
                slot::Y => d.y.map(|chunk| Binding::Chunk { arg: output, chunk }),
                slot::Y_VEC => d.y.map(|chunk| Binding::Vectors {
                    arg: output,
                    chunk,
                    view: self.y_view,
                }),
                slot::LSE => d.lse.map(|chunk| Binding::Chunk { arg: lse, chunk }),
                slot::PARTIALS => Some(Binding::Scratch {
                    size: Some(d.rows * u64::from(self.plans[k].chunks) * FORWARD_PARTIAL_BYTES),
                }),
                _ => None,
            };
            for &entry in self.entries {
                let key = PipelineKey::Forward(key, entry);
                out.push(Pass::new(key, &d.params, self.groups(d), bind));
            }
        }
        out
    }
}
