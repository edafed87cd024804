//! The launch of sampling (shaders/sample.wgsl): each row cut into pieces, a number fixed by
//! the row's length alone, and a fixed sequence of stages, one dispatch each, over chunks
//! of rows whose scratch fits `SAMPLE_SCRATCH_BYTES` (and whose logits fit one storage
//! binding). `Engine::record_sample` (src/sampling/record.rs) executes it.

use super::{chunk_at, row_chunks, Binding, ChunkBinding, Pass, TensorAt};
use crate::error::{Error, Result};
use crate::options::Shape;
use crate::params::SampleParams;
use crate::profile::DeviceProfile;
use crate::shader::{slot, PipelineKey, SampleKey};
use crate::tuning::{MAX_SAMPLE_PIECES, SAMPLE_PIECE_CPU, SAMPLE_PIECE_GPU, SAMPLE_SCRATCH_BYTES};

/// Bytes of one row's parameters, uniform (or Philox offset) and result.
pub(crate) const PARAMS_BYTES: u64 = 16;
pub(crate) const UNIFORM_BYTES: u64 = 8;
pub(crate) const RESULT_BYTES: u64 = 16;

/// Words of a row's state in the scratch. WGSL side: `STATE_WORDS` in shaders/sample.wgsl.
const STATE_WORDS: u64 = 16;
/// Words of a piece's partial record. WGSL side: `PARTIAL_WORDS`.
const PARTIAL_WORDS: u64 = 260;
/// The most tokens top-k may keep for the candidates' path (two words each). WGSL side:
/// `CAP`.
const CANDIDATES: u64 = 256;

/// The kernel's stages. WGSL side: `STAGE_*` in shaders/sample.wgsl.
mod stage {
    pub const STATS: u32 = 0;
    pub const MERGE_STATS: u32 = 1;
    pub const COUNT: u32 = 2;
    pub const MERGE_COUNT: u32 = 3;
    pub const GATHER: u32 = 4;
    pub const CANDIDATES: u32 = 5;
    pub const MASS: u32 = 6;
    pub const MERGE_MASS: u32 = 7;
    pub const SUMS: u32 = 8;
    pub const MERGE_SUMS: u32 = 9;
    pub const FINISH: u32 = 10;
    /// Every stage in turn in one workgroup per row, for rows of one piece.
    pub const ALL: u32 = 11;
    pub const GROUP_GATHER: u32 = 12;
    pub const GROUP: u32 = 13;
}

/// The stages a call records, in order, as `(stage, round)`: top-k's four rounds of 8-bit
/// digits and top-p's eight of 4-bit digits among them, each select's early end after them.
fn stages() -> Vec<(u32, u32)> {
    use stage::*;
    let mut s = vec![(STATS, 0), (MERGE_STATS, 0)];
    for round in 0..4 {
        s.extend([(COUNT, round), (MERGE_COUNT, round)]);
    }
    s.extend([(GATHER, 0), (CANDIDATES, 0)]);
    for round in 0..8 {
        s.extend([(MASS, round), (MERGE_MASS, round)]);
    }
    s.extend([(GROUP_GATHER, 0), (GROUP, 0)]);
    s.extend([(SUMS, 0), (MERGE_SUMS, 0), (FINISH, 0)]);
    s
}

/// Whether a stage runs a workgroup per piece and row (else one per row).
fn per_piece(s: u32) -> bool {
    use stage::*;
    matches!(
        s,
        STATS | COUNT | GATHER | MASS | GROUP_GATHER | SUMS | FINISH
    )
}

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

/// One chunk of rows: its logits, probabilities and uniforms (the stage's aside).
#[derive(Clone, Debug)]
pub(crate) struct SampleDispatch {
    pub x: ChunkBinding,
    pub y: Option<ChunkBinding>,
    pub params: SampleParams,
}

/// Everything a sampling call launches.
#[derive(Clone, Debug)]
pub(crate) struct SampleLaunch {
    pub key: SampleKey,
    pub dispatches: Vec<SampleDispatch>,
    /// Bytes of scratch the largest chunk of rows uses.
    pub scratch_bytes: u64,
    rows: u64,
}

/// How a row of `cols` is cut: `(pieces, logits per piece)`.
pub(crate) fn pieces(cols: u64, target: u64) -> (u64, u64) {
    let n = cols.div_ceil(target).clamp(1, MAX_SAMPLE_PIECES);
    let len = cols.div_ceil(n);
    (cols.div_ceil(len), len)
}

impl DeviceProfile {
    /// The sampling kernel's workgroup and its pieces' target length: with CPU tuning 16
    /// lanes (as the forward kernels: CPU adapters pay for each batch of lanes at every
    /// barrier) over pieces of `SAMPLE_PIECE_CPU`; with GPU tuning 64 lanes up to rows of 512
    /// and up to 256 (the digits' count) beyond, 8 logits a lane, over `SAMPLE_PIECE_GPU`.
    /// Both depend on the row's length alone, so that a row's sums do not change with its
    /// batch.
    fn sample_geometry(&self, cols: u64) -> (u32, u64) {
        if self.cpu_tuned() {
            (self.largest_workgroup(16), SAMPLE_PIECE_CPU)
        } else {
            let lanes = cols.div_ceil(8).next_power_of_two().clamp(64, 256);
            (self.largest_workgroup(lanes as u32), SAMPLE_PIECE_GPU)
        }
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
        let (workgroup, target) = self.sample_geometry(cols);
        let (chunks, chunk_len) = pieces(cols, target);
        let row_words = STATE_WORDS + chunks * PARTIAL_WORDS + 2 * CANDIDATES;
        let scratch_limit = SAMPLE_SCRATCH_BYTES.min(self.limits.max_storage_buffer_binding_size);
        if chunks > max_groups || 4 * row_words > scratch_limit {
            return Err(Error::TooLarge {
                what: "one sampled row's scratch",
                needed: 4 * row_words,
                limit_name: "max_storage_buffer_binding_size",
                limit: scratch_limit,
            });
        }
        let rows_per_chunk = rows_per_chunk
            .min(max_groups)
            .min(scratch_limit / (4 * row_words))
            .max(1);
        let seed = call.philox_seed.unwrap_or(0);
        let key = SampleKey {
            input: self.storage(call.logits.dtype),
            workgroup,
            half_builtins: self.half_builtins,
            philox: call.philox_seed.is_some(),
            filtered: call.probs.is_some(),
        };
        let dispatches = row_chunks(rows, rows_per_chunk)
            .map(|(row0, n)| {
                let x = chunk_at(call.logits, row0 * cols, n * cols, align);
                let y = call
                    .probs
                    .map(|p| chunk_at(p, row0 * cols, n * cols, align));
                SampleDispatch {
                    x,
                    y,
                    params: SampleParams {
                        rows: n as u32,
                        cols: cols as u32,
                        x_base: x.base,
                        row0: row0 as u32,
                        seed_lo: seed as u32,
                        seed_hi: (seed >> 32) as u32,
                        y_base: y.map_or(0, |y| y.base),
                        stage: 0,
                        round: 0,
                        chunks: chunks as u32,
                        chunk_len: chunk_len as u32,
                        row_words: row_words as u32,
                    },
                }
            })
            .collect();
        Ok(SampleLaunch {
            key,
            dispatches,
            scratch_bytes: 4 * row_words * rows_per_chunk.min(rows),
            rows,
        })
    }
}

impl SampleLaunch {
    /// The passes, for buffers `[logits, parameters, uniforms, results]`, or with filtered
    /// probabilities `[logits, parameters, probabilities]`: every stage of every chunk of
    /// rows, in order; rows of one piece run them all in one dispatch.
    pub(crate) fn passes(&self) -> Vec<Pass> {
        let rows = self.rows;
        let mut out = Vec::new();
        for d in &self.dispatches {
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
                    slot::PARTIALS => Binding::Scratch {
                        size: Some(self.scratch_bytes),
                    },
                    _ => return None,
                })
            };
            let stages = if d.params.chunks == 1 {
                vec![(stage::ALL, 0)]
            } else {
                stages()
            };
            for (stage, round) in stages {
                let params = SampleParams {
                    stage,
                    round,
                    ..d.params
                };
                let x = if per_piece(stage) { params.chunks } else { 1 };
                out.push(Pass::new(
                    PipelineKey::Sample(self.key),
                    &params,
                    (x, params.rows),
                    bind,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stages' numbers are the kernel's, and the scratch layout's sizes too.
    #[test]
    fn stages_and_sizes_match_the_kernel() {
        let wgsl = include_str!("../../shaders/sample.wgsl");
        let value = |name: &str| -> u64 {
            let decl = format!("const {name}: u32 = ");
            let at = wgsl
                .find(&decl)
                .unwrap_or_else(|| panic!("{name} in sample.wgsl"));
            let rest = &wgsl[at + decl.len()..];
            rest[..rest.find('u').unwrap()].parse().unwrap()
        };
        use stage::*;
        for (name, v) in [
            ("STAGE_STATS", STATS),
            ("STAGE_MERGE_STATS", MERGE_STATS),
            ("STAGE_COUNT", COUNT),
            ("STAGE_MERGE_COUNT", MERGE_COUNT),
            ("STAGE_GATHER", GATHER),
            ("STAGE_CANDIDATES", CANDIDATES),
            ("STAGE_MASS", MASS),
            ("STAGE_MERGE_MASS", MERGE_MASS),
            ("STAGE_SUMS", SUMS),
            ("STAGE_MERGE_SUMS", MERGE_SUMS),
            ("STAGE_FINISH", FINISH),
            ("STAGE_ALL", ALL),
            ("STAGE_GROUP_GATHER", GROUP_GATHER),
            ("STAGE_GROUP", GROUP),
        ] {
            assert_eq!(value(name), u64::from(v), "{name}");
        }
        assert_eq!(value("STATE_WORDS"), STATE_WORDS);
        assert_eq!(value("PARTIAL_WORDS"), PARTIAL_WORDS);
        assert_eq!(value("CAP"), super::CANDIDATES);
        assert_eq!(value("COUNT_ROUNDS"), 4);
        assert_eq!(value("MASS_ROUNDS"), 8);
    }

    /// Pieces cover the row exactly, none empty, none longer than asked (below the cap).
    #[test]
    fn pieces_cover_the_row() {
        for cols in [1, 2, 4095, 4096, 4097, 32_000, 128_256, 1 << 20, 1 << 26] {
            for target in [SAMPLE_PIECE_GPU, SAMPLE_PIECE_CPU] {
                let (n, len) = pieces(cols, target);
                assert!(n * len >= cols && (n - 1) * len < cols, "{cols} {target}");
                assert!(n <= MAX_SAMPLE_PIECES);
                assert!(len <= target || n == MAX_SAMPLE_PIECES, "{cols} {target}");
            }
        }
    }
}
