//! The launches of the vocabulary-parallel kernels (shaders/vocab_parallel.wgsl): the
//! partial states of a shard, their merge, and the finish of a shard's columns. The shard's
//! logits and outputs go in chunks of rows that fit one storage binding; the per-row tensors
//! (targets, states, loss, logsumexp) are bound whole, at offsets the adapter's binding
//! alignment allows. `src/vocab_parallel/device.rs` executes them.

use super::{chunk_at, row_chunks, Binding, ChunkBinding, Pass, TensorAt};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::options::Shape;
use crate::params::VocabParams;
use crate::profile::DeviceProfile;
use crate::shader::{slot, view_bytes, PipelineKey, VocabEntry, VocabKey, VOCAB_STATE_BYTES};
use crate::tuning::{MAX_VOCAB_PIECES, VOCAB_PIECE_GPU, VOCAB_SPLIT_MAX_ROWS};

/// Output pairs each lane takes per dispatch on CPU adapters, which pay for every
/// workgroup (tens of microseconds on lavapipe): a few hundred, far below the loop limit.
const CPU_PAIRS_PER_LANE: u64 = 256;

/// A per-row (or per-class) tensor of the call, bound whole: `bytes` from its offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Whole {
    pub at: TensorAt,
    pub bytes: u64,
}

/// Which buffers a launch's passes bind, by their index in the call's buffer list.
pub(crate) mod arg {
    pub const LOGITS: usize = 0;
    pub const OUTPUT: usize = 1;
    pub const TARGETS: usize = 2;
    pub const WEIGHT: usize = 3;
    pub const STATES: usize = 4;
    pub const MERGED: usize = 5;
    pub const LOSS: usize = 6;
    pub const LSE: usize = 7;
    pub const META: usize = 8;
    /// How many there are.
    pub const COUNT: usize = 9;
}

/// A vocabulary-parallel call as the planner sees it (arguments already checked): the shard
/// `shape` (its rows and its own columns), where its logits and output lie, and the whole
/// per-row tensors it binds, by `arg` index.
#[derive(Clone, Debug)]
pub(crate) struct VocabCall {
    pub shape: Shape,
    pub logits: Option<TensorAt>,
    pub output: Option<TensorAt>,
    pub in_place: bool,
    pub wholes: [Option<Whole>; arg::COUNT],
    /// The uniforms but for the dispatch's rows, bases and first row.
    pub params: VocabParams,
}

impl DeviceProfile {
    /// The binding of a whole per-row tensor: at an offset the adapter aligns bindings to.
    fn whole(&self, what: &'static str, w: Whole) -> Result<ChunkBinding> {
        let align = u64::from(self.limits.min_storage_buffer_offset_alignment);
        if !w.at.offset.is_multiple_of(align) {
            return Err(Error::InvalidBuffer {
                what,
                reason: format!(
                    "offset {} is not a multiple of the adapter's storage binding alignment {align}",
                    w.at.offset
                ),
            });
        }
        let limit = self.limits.max_storage_buffer_binding_size;
        if w.bytes > limit {
            return Err(Error::TooLarge {
                what,
                needed: w.bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(ChunkBinding {
            offset: w.at.offset,
            size: w.bytes.div_ceil(4) * 4,
            base: 0,
        })
    }

    /// Workgroup size of the kernels with a lane per row or per output pair.
    fn vocab_lanes(&self) -> u32 {
        self.largest_workgroup(if self.cpu_tuned() { 64 } else { 256 })
    }

    /// Workgroups for `items` lanes' worth of work of `wg` lanes each: one lane per item on
    /// GPUs (up to one dimension's limit, lanes looping beyond it); on CPU adapters a few
    /// hundred items per lane.
    fn vocab_groups(&self, items: u64, wg: u32) -> u32 {
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let per_lane = if self.cpu_tuned() {
            CPU_PAIRS_PER_LANE
        } else {
            1
        };
        items.div_ceil(per_lane * u64::from(wg)).clamp(1, max) as u32
    }

    /// Pieces per row of a partial state of `rows` rows of `cols`: more than one on GPUs for
    /// a few rows (`VOCAB_SPLIT_MAX_ROWS`), each of about `VOCAB_PIECE_GPU` logits.
    fn vocab_pieces(&self, rows: u64, cols: u64) -> u64 {
        if self.cpu_tuned() || rows > VOCAB_SPLIT_MAX_ROWS {
            return 1;
        }
        let n = cols.div_ceil(VOCAB_PIECE_GPU).clamp(1, MAX_VOCAB_PIECES);
        cols.div_ceil(cols.div_ceil(n))
    }

    /// The passes of `entry` for `call` (`buffers` of the call are indexed by `arg`), and
    /// the bytes of the engine's scratch they use.
    pub(crate) fn launch_vocab(&self, entry: VocabEntry, call: &VocabCall) -> Result<VocabLaunch> {
        let (rows, cols) = (call.shape.rows as u64, call.shape.cols as u64);
        let mut wholes = [None; arg::COUNT];
        let names = [
            "logits",
            "output",
            "targets",
            "weight",
            "states",
            "merged states",
            "loss",
            "lse",
            "meta",
        ];
        for (i, w) in call.wholes.iter().enumerate() {
            if let Some(w) = w {
                wholes[i] = Some(self.whole(names[i], *w)?);
            }
        }
        let mut key = VocabKey {
            entry,
            input: call.logits.map(|l| self.storage(l.dtype)),
            output: call.output.map(|o| self.storage(o.dtype)),
            in_place: call.in_place,
            ce: call.wholes[arg::TARGETS].is_some(),
            weight: call.wholes[arg::WEIGHT].is_some(),
            lse: call.wholes[arg::LSE].is_some(),
            contiguous: self.cpu_tuned(),
            workgroup: self.vocab_lanes(),
            // Only 16-bit conversions use the builtins.
            half_builtins: self.half_builtins
                && [call.logits, call.output]
                    .iter()
                    .flatten()
                    .any(|t| t.dtype != DType::F32),
        };
        if entry == VocabEntry::Partial {
            key.workgroup = self.workgroup_for("a vocabulary-parallel shard", cols)?;
        }
        if matches!(entry, VocabEntry::Forward | VocabEntry::CeGrad) && key.contiguous {
            // CPU adapters: a workgroup per row (see `forward` in the kernel).
            let pairs = cols.div_ceil(2) + 1;
            key.workgroup = key
                .workgroup
                .max(self.workgroup_for("a vocabulary-parallel shard", pairs)?);
        }
        if entry == VocabEntry::CeReduce {
            key.workgroup = self.workgroup_for("vocabulary-parallel cross-entropy rows", rows)?;
        }
        let bind_wholes = move |at: u32| -> Option<Binding> {
            let a = match at {
                slot::TARGETS_OR_DY => arg::TARGETS,
                slot::WEIGHT => arg::WEIGHT,
                slot::PARTIALS => arg::STATES,
                slot::MERGED => arg::MERGED,
                slot::LOSS => arg::LOSS,
                slot::LSE => arg::LSE,
                slot::META => arg::META,
                _ => return None,
            };
            Some(Binding::Chunk {
                arg: a,
                chunk: wholes[a]?,
            })
        };
        let key_of = PipelineKey::Vocab(key);
        // The entries over all rows at once.
        if matches!(
            entry,
            VocabEntry::Merge | VocabEntry::CeRows | VocabEntry::CeReduce
        ) {
            let groups = match entry {
                VocabEntry::CeReduce => 1,
                _ => self.vocab_groups(rows, key.workgroup),
            };
            let params = VocabParams {
                rows: rows as u32,
                cols: cols as u32,
                ..call.params
            };
            return Ok(VocabLaunch {
                passes: vec![Pass::new(key_of, &params, (groups, 1), bind_wholes)],
                scratch_bytes: 0,
            });
        }
        // Partial states in pieces: each piece's state into the scratch, piece-major, then
        // merged into the call's states.
        let pieces = match entry {
            VocabEntry::Partial => self.vocab_pieces(rows, cols),
            _ => 1,
        };
        let scratch_bytes = if pieces > 1 {
            state_bytes(pieces * rows)
        } else {
            0
        };
        // The entries over the shard's logits, in chunks of rows.
        let logits = call.logits.ok_or_else(|| {
            Error::Validation("a vocabulary-parallel launch without logits".into())
        })?;
        let widest = call.output.map_or(logits.dtype.size(), |o| {
            o.dtype.size().max(logits.dtype.size())
        });
        let (rows_per_chunk, align, max_groups) = self.chunking(cols * widest)?;
        let mut passes = Vec::new();
        for (row0, n) in row_chunks(rows, rows_per_chunk) {
            let x = chunk_at(logits, row0 * cols, n * cols, align);
            let y = call
                .output
                .map(|o| chunk_at(o, row0 * cols, n * cols, align));
            let params = VocabParams {
                rows: n as u32,
                cols: cols as u32,
                x_base: x.base,
                y_base: y.map_or(0, |y| y.base),
                row0: row0 as u32,
                pieces: pieces as u32,
                total_rows: rows as u32,
                ..call.params
            };
            let groups = match entry {
                VocabEntry::Partial => n.min(max_groups) as u32,
                VocabEntry::Forward | VocabEntry::CeGrad if key.contiguous => {
                    n.min(max_groups) as u32
                }
                _ => {
                    let base = u64::from(params.y_base);
                    let pairs = (base + n * cols).div_ceil(2) - base / 2;
                    self.vocab_groups(pairs.max(n), key.workgroup)
                }
            };
            let in_place = call.in_place;
            let bind = |at: u32| match at {
                slot::X => Some(Binding::Chunk {
                    arg: arg::LOGITS,
                    chunk: x,
                }),
                slot::Y => Some(Binding::Chunk {
                    arg: if in_place { arg::LOGITS } else { arg::OUTPUT },
                    chunk: y?,
                }),
                slot::Y_VEC => Some(Binding::Vectors {
                    arg: if in_place { arg::LOGITS } else { arg::OUTPUT },
                    chunk: y?,
                    view: view_bytes(key.output?, false),
                }),
                slot::PARTIALS if pieces > 1 => Some(Binding::Scratch {
                    size: Some(scratch_bytes),
                }),
                other => bind_wholes(other),
            };
            let grid = match entry {
                VocabEntry::Partial => (pieces as u32, groups),
                _ => (groups, 1),
            };
            passes.push(Pass::new(key_of, &params, grid, bind));
        }
        if pieces > 1 {
            let merge = VocabKey {
                entry: VocabEntry::Merge,
                input: None,
                output: None,
                in_place: false,
                ce: false,
                weight: false,
                lse: false,
                workgroup: self.vocab_lanes(),
                ..key
            };
            let params = VocabParams {
                rows: rows as u32,
                count: pieces as u32,
                ..call.params
            };
            let states = wholes[arg::STATES];
            let bind = |at: u32| match at {
                slot::PARTIALS => Some(Binding::Scratch {
                    size: Some(scratch_bytes),
                }),
                slot::MERGED => Some(Binding::Chunk {
                    arg: arg::STATES,
                    chunk: states?,
                }),
                _ => None,
            };
            let groups = self.vocab_groups(rows, merge.workgroup);
            passes.push(Pass::new(
                PipelineKey::Vocab(merge),
                &params,
                (groups, 1),
                bind,
            ));
        }
        Ok(VocabLaunch {
            passes,
            scratch_bytes,
        })
    }
}

/// What a vocabulary-parallel step launches: its passes and the scratch they use.
pub(crate) struct VocabLaunch {
    pub passes: Vec<Pass>,
    pub scratch_bytes: u64,
}

/// Bytes of `rows` partial states.
pub(crate) fn state_bytes(rows: u64) -> u64 {
    rows * VOCAB_STATE_BYTES
}

/// A whole f32 (or i32) tensor of `n` elements at `t`'s offset.
pub(crate) fn whole_f32(offset: u64, n: u64) -> Whole {
    Whole {
        at: TensorAt {
            dtype: DType::F32,
            offset,
        },
        bytes: 4 * n,
    }
}
