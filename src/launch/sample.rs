//! The launch of sampling (shaders/sample.wgsl): a workgroup per row, rows past one dispatch
//! dimension along y, logits past one storage binding in chunks of rows.
//! `Engine::record_sample` (src/sampling/record.rs) executes it.

use super::{chunk_at, row_chunks, Binding, ChunkBinding, Pass, TensorAt};
use crate::error::{Error, Result};
use crate::options::Shape;
use crate::params::SampleParams;
use crate::profile::DeviceProfile;
use crate::shader::{slot, PipelineKey, SampleKey};
use crate::tuning::MAX_LANE_ITERATIONS;

/// Bytes of one row's parameters, uniform (or Philox offset) and result.
pub(crate) const PARAMS_BYTES: u64 = 16;
pub(crate) const UNIFORM_BYTES: u64 = 8;
pub(crate) const RESULT_BYTES: u64 = 16;

/// A sampling call as the planner sees it (arguments already checked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SampleCall {
    pub shape: Shape,
    pub logits: TensorAt,
    /// The Philox key where the uniforms are drawn; `None` where the caller gives them.
    pub philox_seed: Option<u64>,
    /// Where the filtered probabilities go (f32), instead of a token per row.
    pub probs: Option<TensorAt>,
}

/// One dispatch: its pipeline, its chunk of the logits and its uniforms.
#[derive(Clone, Debug)]
pub(crate) struct SampleDispatch {
    pub key: SampleKey,
    pub x: ChunkBinding,
    pub y: Option<ChunkBinding>,
    pub params: SampleParams,
    pub groups: (u32, u32),
}

/// Everything a sampling call launches.
#[derive(Clone, Debug)]
pub(crate) struct SampleLaunch {
    pub dispatches: Vec<SampleDispatch>,
    rows: u64,
}

/// Full passes over its share of the row one invocation makes at most: the maximum, the sum,
/// eight rounds of top-k, the kept mass and eight rounds of top-p, the draw and its walk.
const PASSES: u64 = 21;

/// Loop iterations one invocation runs at most for a row of `cols` in a workgroup of `wg`:
/// the passes over its share, 16 rounds of digit trees (`digit_totals`: per group of 64
/// lanes, 16 writes and 6 steps) and lane 0's walk over the lanes' sums.
fn iterations(cols: u64, wg: u64) -> u64 {
    PASSES * cols.div_ceil(wg) + 16 * (wg.div_ceil(64) * 22 + 16) + wg + 64
}

impl DeviceProfile {
    /// The sampling kernel's workgroup: the family's size on GPUs. Mesa's CPU drivers end a
    /// shader's loops after 65535 iterations of an invocation in all (measured: a row of
    /// 2^20 logits under top-k on lavapipe drew nothing with 64 lanes), so there 16 lanes up
    /// to 4096 logits and otherwise the smallest of 64, 256 and 1024 lanes within
    /// `MAX_LANE_ITERATIONS` (few sizes: each is a pipeline to compile, seconds on a CPU
    /// adapter); rows too long for the largest are refused.
    fn sample_workgroup(&self, cols: u64) -> Result<u32> {
        if !self.runs_on_cpu() {
            return Ok(self.workgroup_size());
        }
        let sizes = [16u32, 64, 256, 1024].map(|w| self.largest_workgroup(w));
        let fits = |wg: u32| iterations(cols, u64::from(wg)) <= MAX_LANE_ITERATIONS;
        if cols <= 4096 && fits(sizes[0]) {
            return Ok(sizes[0]);
        }
        if let Some(&wg) = sizes[1..].iter().find(|&&wg| fits(wg)) {
            return Ok(wg);
        }
        let largest = u64::from(sizes[3]);
        Err(Error::RowTooLong {
            what: "sampling",
            items: cols,
            limit: MAX_LANE_ITERATIONS.saturating_sub(iterations(0, largest)) / PASSES * largest,
        })
    }

    /// The launch of a checked sampling call on this device.
    pub(crate) fn launch_sample(&self, call: &SampleCall) -> Result<SampleLaunch> {
        let (rows, cols) = (call.shape.rows as u64, call.shape.cols as u64);
        let row_bytes = cols
            * call
                .logits
                .dtype
                .size()
                .max(if call.probs.is_some() { 4 } else { 0 });
        let (rows_per_chunk, align, max_groups) = self.chunking(row_bytes)?;
        let workgroup = self.sample_workgroup(cols)?;
        let seed = call.philox_seed.unwrap_or(0);
        let dispatches = row_chunks(rows, rows_per_chunk)
            .map(|(row0, n)| {
                let x = chunk_at(call.logits, row0 * cols, n * cols, align);
                let y = call
                    .probs
                    .map(|p| chunk_at(p, row0 * cols, n * cols, align));
                let groups_x = n.min(max_groups);
                SampleDispatch {
                    key: SampleKey {
                        input: self.storage(call.logits.dtype),
                        workgroup,
                        half_builtins: self.half_builtins,
                        philox: call.philox_seed.is_some(),
                        filtered: call.probs.is_some(),
                    },
                    x,
                    y,
                    params: SampleParams {
                        rows: n as u32,
                        cols: cols as u32,
                        x_base: x.base,
                        row0: row0 as u32,
                        seed_lo: seed as u32,
                        seed_hi: (seed >> 32) as u32,
                        groups_x: groups_x as u32,
                        y_base: y.map_or(0, |y| y.base),
                    },
                    groups: (groups_x as u32, n.div_ceil(groups_x) as u32),
                }
            })
            .collect();
        Ok(SampleLaunch { dispatches, rows })
    }
}

impl SampleLaunch {
    /// The passes, for buffers `[logits, parameters, uniforms, results]`, or with filtered
    /// probabilities `[logits, parameters, probabilities]`.
    pub(crate) fn passes(&self) -> Vec<Pass> {
        let rows = self.rows;
        self.dispatches
            .iter()
            .map(|d| {
                let bind = |at: u32| {
                    Some(match at {
                        slot::X => Binding::Chunk { arg: 0, chunk: d.x },
                        slot::Y => Binding::Chunk {
                            arg: 2,
                            chunk: d.y?,
                        },
                        slot::SAMPLE_PARAMS => Binding::Head {
                            arg: 1,
                            size: rows * PARAMS_BYTES,
                        },
                        slot::UNIFORMS => Binding::Head {
                            arg: 2,
                            size: rows * UNIFORM_BYTES,
                        },
                        slot::RESULTS => Binding::Head {
                            arg: 3,
                            size: rows * RESULT_BYTES,
                        },
                        _ => return None,
                    })
                };
                Pass::new(PipelineKey::Sample(d.key), &d.params, d.groups, bind)
            })
            .collect()
    }
}
