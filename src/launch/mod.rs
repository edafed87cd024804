//! Launches, worked out without a device: from a [`DeviceProfile`] and a call (the
//! operation, shape, dtypes and byte offsets of its tensors) to what the device-level API
//! records: each pipeline's key, and each dispatch's rows, uniforms, binding ranges and
//! workgroup counts. One file per operation family; what they share is here.

mod backward;
mod cross_entropy;
mod forward;
mod sample;
mod vocab;

pub(crate) use backward::BackwardCall;
pub(crate) use cross_entropy::CrossEntropyCall;
pub(crate) use forward::ForwardCall;
pub(crate) use sample::{SampleCall, PARAMS_BYTES, RESULT_BYTES, UNIFORM_BYTES};
pub(crate) use vocab::{arg as vocab_arg, state_bytes, whole_f32, VocabCall, Whole};

use crate::dtype::DType;
use crate::options::Shape;
use crate::profile::DeviceProfile;
use crate::shader::{PipelineKey, BLOCK};
use crate::tuning::{ROW_PER_LANE_MAX_COLS_GPU, ROW_PER_LANE_SHORT_COLS_CPU};

/// Where a tensor lies in its buffer: what the planner needs of a `TensorRef`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TensorAt {
    /// Element type.
    pub dtype: DType,
    /// Byte offset of the first element.
    pub offset: u64,
}

/// The part of a buffer one dispatch binds for a tensor: `size` bytes from `offset` (aligned
/// down to the adapter's binding alignment), with the tensor's first element of the chunk
/// `base` elements in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkBinding {
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) base: u32,
}

impl ChunkBinding {
    /// Where the chunk's first element sits within its block of `BLOCK` (blocks are aligned
    /// in the binding): tensors load and store as blocks together only at the same phase.
    pub(crate) fn block_phase(&self) -> u64 {
        u64::from(self.base) % BLOCK
    }
}

/// The binding of elements `first..first + n` of `t`, its offset aligned down to `align`
/// and its end rounded up to a 4-byte word.
pub(crate) fn chunk_at(t: TensorAt, first: u64, n: u64, align: u64) -> ChunkBinding {
    let start = t.offset + first * t.dtype.size();
    let offset = start / align * align;
    let end = (start + n * t.dtype.size()).div_ceil(4) * 4;
    ChunkBinding {
        offset,
        size: end - offset,
        base: ((start - offset) / t.dtype.size()) as u32,
    }
}

/// The dispatches of `rows` rows, at most `rows_per_chunk` each: `(first row, rows)`.
pub(crate) fn row_chunks(rows: u64, rows_per_chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let step = rows_per_chunk.max(1);
    (0..rows)
        .step_by(step as usize)
        .map(move |row0| (row0, step.min(rows - row0)))
}

/// What one slot of a pass's bind group holds. `arg` indexes the buffers the device-level
/// call hands the executor (src/execute.rs), in the order its launch documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binding {
    /// A chunk of an argument's buffer.
    Chunk { arg: usize, chunk: ChunkBinding },
    /// The vector view of a chunk: whole elements of `view` bytes only, or where none fits,
    /// a 32-byte stand-in (the engine's `tiny` buffer), which the kernel never reads.
    Vectors {
        arg: usize,
        chunk: ChunkBinding,
        view: u64,
    },
    /// The first `size` bytes of an argument's buffer.
    Head { arg: usize, size: u64 },
    /// The engine's split-row scratch: its first `size` bytes, or all of it.
    Scratch { size: Option<u64> },
}

/// One pipeline dispatch of a launch: the pipeline, its uniforms, what each slot binds
/// (besides the uniforms at `slot::PARAMS`), and its workgroups along x and y.
#[derive(Clone, Debug)]
pub(crate) struct Pass {
    pub key: PipelineKey,
    pub params: Vec<u8>,
    pub bindings: Vec<(u32, Binding)>,
    pub groups: (u32, u32),
}

impl Pass {
    /// A dispatch of `key` that binds each storage slot the key declares
    /// (src/shader/spec.rs) to `bind(slot)`: the launch says what each slot holds, the key
    /// which slots there are. A slot `bind` has nothing for stays unbound, which the
    /// launch tests below and wgpu's validation both report.
    pub(crate) fn new(
        key: PipelineKey,
        params: &impl bytemuck::Pod,
        groups: (u32, u32),
        bind: impl Fn(u32) -> Option<Binding>,
    ) -> Pass {
        let bindings = key
            .storage_bindings()
            .iter()
            .filter_map(|b| Some((b.slot, bind(b.slot)?)))
            .collect();
        Pass {
            key,
            params: bytemuck::bytes_of(params).to_vec(),
            bindings,
            groups,
        }
    }
}

/// One dispatch of a training kernel's `main`: its first row, its rows, and whether it loads
/// blocks of 8 (with a row per lane: runs of rows in blocks).
#[derive(Clone, Copy)]
pub(crate) struct RowDispatch {
    pub row0: u64,
    pub rows: u64,
    pub blocks: bool,
}

/// The dispatches of `rows` rows of `cols`, chunks of at most `rows_per_chunk` rows, each
/// loading blocks of 8 where `blocks_in(first row, rows)` allows it. With a row per lane the
/// chunks start on runs of rows that fill whole blocks (`shader::rows_filling_blocks`), and
/// a chunk with blocks goes as its whole runs, the rows left over in a dispatch of their own
/// by pairs. Otherwise every dispatch runs one pipeline, with blocks only where all allow
/// them.
pub(crate) fn row_dispatches(
    rows: u64,
    cols: u64,
    rows_per_chunk: u64,
    row_per_lane: bool,
    blocks_in: impl Fn(u64, u64) -> bool,
) -> Vec<RowDispatch> {
    let run = crate::shader::rows_filling_blocks(cols);
    let per_chunk = if row_per_lane && rows_per_chunk >= 8 {
        rows_per_chunk / BLOCK * BLOCK
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
pub(crate) fn packed_cols(row_per_lane: bool, blocks: bool, cols: u64) -> u32 {
    if row_per_lane && blocks && crate::shader::packs_training_rows(cols) {
        cols as u32
    } else {
        0
    }
}

impl DeviceProfile {
    /// Whether a training kernel gives `rows` rows of `cols` a lane each: on CPU adapters
    /// up to `cpu_max` logits where the rows give every thread its workgroups (always up to
    /// `ROW_PER_LANE_SHORT_COLS_CPU`). A workgroup per row leaves most of its lanes idle on
    /// short rows and pays a reduction for a few logits (lavapipe, 1048576 x 10 f32, with a
    /// workgroup per row: cross-entropy with its gradient 0.002 of copy, softmax backward
    /// 0.008; a lane per row: 0.09 and 0.29).
    /// In batch-invariant mode, by the row length alone (`invariant_row_per_lane`).
    pub(crate) fn row_per_lane(&self, rows: u64, cols: u64, cpu_max: u64) -> bool {
        if self.batch_invariant {
            return self.invariant_row_per_lane(cols);
        }
        if !self.cpu_tuned() {
            return cols <= ROW_PER_LANE_MAX_COLS_GPU;
        }
        let busy = u64::from(self.parallel_groups()) * u64::from(self.workgroup_size());
        cols <= cpu_max.min(ROW_PER_LANE_SHORT_COLS_CPU) || (cols <= cpu_max && rows >= busy)
    }
}

impl DeviceProfile {
    /// Split-row pieces per row of a training kernel, if it takes split-row: where the
    /// forward kernels would split (`wants_split`) and rows do not go a lane each. On CPU
    /// adapters that is only single long rows, since with rows enough for the threads a
    /// workgroup per row finds its second pass in its core's cache. Where dispatches are
    /// sized to the cache (`cache_rows` of the `tensors` the kernel reads twice), also
    /// batches of rows long enough for two pieces, cut for the rows of one dispatch. In
    /// batch-invariant mode, by the row length alone (`invariant_pieces`).
    pub(crate) fn training_pieces(
        &self,
        shape: Shape,
        tensors: u64,
        row_per_lane: bool,
    ) -> Option<u64> {
        let (rows, cols) = (shape.rows as u64, shape.cols as u64);
        if self.batch_invariant {
            return self.invariant_pieces(cols);
        }
        let cache_rows = self.cache_rows(shape, tensors);
        let pieces = self.split_pieces(cache_rows.unwrap_or(rows), cols / BLOCK);
        let split = self.wants_split(rows, cols, pieces) || (cache_rows.is_some() && pieces >= 2);
        (!row_per_lane && split).then_some(pieces)
    }
}

/// Launch traces: every forward, backward and cross-entropy launch of a grid of shapes, dtypes and
/// operations on the described devices (both tunings of lavapipe), each as the SHA-256 of its full `Debug`
/// text in `tests/snapshots/launches.sha256`. A refactor of the planner proves here that it
/// launches the same keys, dispatches, uniforms and bindings; a change of the choices names
/// the cases it changed (see src/snapshot.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Forward, MaskedRows, Shape, Tuning, Variant};
    use crate::profile::described::{h100, lavapipe, llvmpipe_gl};
    use crate::shader::FORWARD_PARTIAL_BYTES;
    use crate::snapshot::{check, digest};
    use std::collections::BTreeMap;

    /// The H100 with split-row dispatches sized to 24 MiB of its L2.
    fn h100_cache() -> DeviceProfile {
        DeviceProfile {
            cache_bytes: 24 << 20,
            ..h100()
        }
    }

    /// Cache-sized split-row: each dispatch takes as many rows as fit the cache (49 rows of
    /// 128256 f32 logits in 24 MiB, the last dispatch the rest), its partial states sized
    /// for them; without the cache, one dispatch of every row.
    #[test]
    fn cache_sized_split_row_dispatches_take_the_rows_that_fit() {
        let f32_at = TensorAt {
            dtype: DType::F32,
            offset: 0,
        };
        let call = |rows: usize| ForwardCall {
            op: Forward::Softmax,
            shape: Shape::new(rows, 128_256),
            input: f32_at,
            output: Some(f32_at),
            in_place: false,
            lse: None,
            variant: Variant::Auto,
            inv_t: 1.0,
            masked_rows: MaskedRows::Nan,
        };
        let launch = h100_cache().launch_forward(&call(256)).unwrap();
        let rows: Vec<u64> = launch.dispatches.iter().map(|d| d.rows).collect();
        assert_eq!(rows, [49, 49, 49, 49, 49, 11]);
        assert_eq!(launch.plans[1].chunks, 11);
        assert_eq!(launch.scratch_bytes(), 49 * 11 * FORWARD_PARTIAL_BYTES);
        assert_eq!(
            launch.passes().len(),
            12,
            "partials and finish per dispatch"
        );
        let plain = h100().launch_forward(&call(256)).unwrap();
        let rows: Vec<u64> = plain.dispatches.iter().map(|d| d.rows).collect();
        assert_eq!((rows, plain.plans[1].chunks), (vec![256], 2));
        // Cross-entropy reads the logits twice too: the same dispatches, split-row where a
        // workgroup per row ran before; backward reads y and dy twice, so half the rows fit.
        let shape = Shape::new(1024, 128_256);
        let ce = CrossEntropyCall {
            shape,
            logits: f32_at,
            grad: Some(f32_at),
            in_place: true,
            targets: f32_at,
            loss: f32_at,
            lse: f32_at,
            weight: None,
            options: bytemuck::Zeroable::zeroed(),
        };
        let launch = h100_cache().launch_cross_entropy(&ce).unwrap();
        let rows: Vec<u32> = launch.dispatches.iter().map(|d| d.params.rows).collect();
        assert!(
            rows[..20].iter().all(|&r| r == 49) && rows[20] == 44,
            "{rows:?}"
        );
        assert_eq!(launch.whole_batch.chunks, 11);
        let plain = h100().launch_cross_entropy(&ce).unwrap();
        assert_eq!(
            plain.whole_batch.chunks, 1,
            "a workgroup per row, in 128 MiB bindings"
        );
        let backward = BackwardCall {
            log: false,
            shape,
            y: f32_at,
            dy: f32_at,
            dx: f32_at,
        };
        let launch = h100_cache().launch_backward(&backward).unwrap();
        let rows: Vec<u32> = launch.dispatches.iter().map(|d| d.params.rows).collect();
        assert!(
            rows[..42].iter().all(|&r| r == 24) && rows[42] == 16,
            "{rows:?}"
        );
        assert_eq!(launch.dispatches[0].params.chunks, 22);
        let plain = h100().launch_backward(&backward).unwrap();
        assert_eq!(plain.dispatches[0].params.chunks, 1);
    }

    fn traces() -> BTreeMap<String, String> {
        let lavapipe_gpu = || DeviceProfile {
            tuning: Tuning::Gpu,
            ..lavapipe()
        };
        let invariant = |d: DeviceProfile| DeviceProfile {
            batch_invariant: true,
            ..d
        };
        let devices: [(&str, DeviceProfile); 7] = [
            ("lavapipe", lavapipe()),
            ("lavapipe-gpu-tuning", lavapipe_gpu()),
            ("llvmpipe-gl", llvmpipe_gl()),
            ("h100", h100()),
            ("lavapipe-batch-invariant", invariant(lavapipe())),
            ("h100-batch-invariant", invariant(h100())),
            ("h100-cache-24mib", h100_cache()),
        ];
        let shapes = [
            (1, 2),
            (3, 7),
            (1000, 3),
            (19, 33),
            (4096, 64),
            (70_000, 24),
            (2048, 4096),
            (256, 32_000),
            (32, 128_256),
            (1, 262_144),
            (1, 1_048_576),
            (4096, 8000),
            (8, 20_003),
        ];
        let mut out = BTreeMap::new();
        for (name, device) in &devices {
            for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
                for dtype in [DType::F32, DType::F16, DType::BF16] {
                    for (in_place, offset) in [(false, 0), (true, 6)] {
                        if in_place && op == Forward::LogSumExp {
                            continue;
                        }
                        for &(rows, cols) in &shapes {
                            let at = TensorAt {
                                dtype,
                                offset: offset * dtype.size(),
                            };
                            let call = ForwardCall {
                                op,
                                shape: Shape::new(rows, cols),
                                input: at,
                                output: (op != Forward::LogSumExp).then_some(at),
                                in_place,
                                lse: Some(TensorAt {
                                    dtype: DType::F32,
                                    offset: 0,
                                }),
                                variant: Variant::Auto,
                                inv_t: 1.0,
                                masked_rows: MaskedRows::Nan,
                            };
                            let trace = match device.launch_forward(&call) {
                                Ok(l) => format!("{l:?} {:?}", l.passes()),
                                Err(e) => format!("error: {e}"),
                            };
                            let digest = digest(&trace);
                            let case = format!(
                                "{name} {op:?} {dtype:?} {rows}x{cols}{}",
                                if in_place { " in-place at 6" } else { "" }
                            );
                            out.insert(case, digest);
                        }
                    }
                }
            }
            for log in [false, true] {
                for dtype in [DType::F32, DType::F16, DType::BF16] {
                    for offsets in [[0, 0, 0], [6, 6, 6], [3, 11, 8]] {
                        for &(rows, cols) in &shapes {
                            let at = |k: usize| TensorAt {
                                dtype,
                                offset: offsets[k] * dtype.size(),
                            };
                            let call = BackwardCall {
                                log,
                                shape: Shape::new(rows, cols),
                                y: at(0),
                                dy: at(1),
                                dx: at(2),
                            };
                            let trace = match device.launch_backward(&call) {
                                Ok(l) => format!("{l:?} {:?}", l.passes()),
                                Err(e) => format!("error: {e}"),
                            };
                            let case = format!(
                                "{name} backward{} {dtype:?} {rows}x{cols} at {offsets:?}",
                                if log { " log" } else { "" }
                            );
                            out.insert(case, digest(&trace));
                        }
                    }
                }
            }
            for dtype in [DType::F32, DType::F16, DType::BF16] {
                for (grad, in_place, offset) in [
                    (false, false, 0),
                    (true, false, 0),
                    (true, true, 6),
                    (true, false, 6),
                ] {
                    for &(rows, cols) in &shapes {
                        let logits = TensorAt {
                            dtype,
                            offset: offset * dtype.size(),
                        };
                        let small = |k: u64| TensorAt {
                            dtype: DType::F32,
                            offset: 4 * k,
                        };
                        let call = CrossEntropyCall {
                            shape: Shape::new(rows, cols),
                            logits,
                            grad: grad.then(|| if in_place { logits } else { small(3) }),
                            in_place,
                            targets: small(0),
                            loss: small(1),
                            lse: small(2),
                            weight: (offset > 0).then(|| small(5)),
                            options: bytemuck::Zeroable::zeroed(),
                        };
                        let trace = match device.launch_cross_entropy(&call) {
                            Ok(l) => format!("{l:?} {:?}", l.passes()),
                            Err(e) => format!("error: {e}"),
                        };
                        let case = format!(
                            "{name} cross-entropy {dtype:?} {rows}x{cols} grad {grad} in place \
                             {in_place} at {offset}"
                        );
                        out.insert(case, digest(&trace));
                    }
                }
            }
        }
        out
    }

    /// Every pass of every launch of the grid binds exactly the storage slots its pipeline's
    /// layout declares (`PipelineKey::storage_bindings`), each once.
    #[test]
    fn passes_bind_what_their_layouts_declare() {
        let invariant = |d: DeviceProfile| DeviceProfile {
            batch_invariant: true,
            ..d
        };
        let devices = [
            lavapipe(),
            llvmpipe_gl(),
            h100(),
            invariant(lavapipe()),
            invariant(h100()),
            h100_cache(),
        ];
        let at = |dtype, offset| TensorAt { dtype, offset };
        let f32_at = |k: u64| at(DType::F32, 4 * k);
        let mut passes = Vec::new();
        for device in &devices {
            for &(rows, cols) in &[
                (1000, 3),
                (19, 33),
                (256, 32_000),
                (1, 1_048_576),
                (70_000, 24),
            ] {
                let shape = Shape::new(rows, cols);
                for (in_place, offset) in [(false, 0), (true, 12)] {
                    for op in [Forward::Softmax, Forward::LogSumExp] {
                        let x = at(DType::F16, offset);
                        let call = ForwardCall {
                            op,
                            shape,
                            input: x,
                            output: (op != Forward::LogSumExp).then_some(x),
                            in_place: in_place && op != Forward::LogSumExp,
                            lse: Some(f32_at(0)),
                            variant: Variant::Auto,
                            inv_t: 1.0,
                            masked_rows: MaskedRows::Nan,
                        };
                        let launch = device.launch_forward(&call).unwrap();
                        passes.extend(launch.passes());
                    }
                    let y = at(DType::F32, offset * 2);
                    let call = BackwardCall {
                        log: in_place,
                        shape,
                        y,
                        dy: y,
                        dx: f32_at(8),
                    };
                    passes.extend(device.launch_backward(&call).unwrap().passes());
                    let logits = at(DType::BF16, offset);
                    let call = CrossEntropyCall {
                        shape,
                        logits,
                        grad: Some(if in_place { logits } else { f32_at(8) }),
                        in_place,
                        targets: f32_at(0),
                        loss: f32_at(1),
                        lse: f32_at(2),
                        weight: in_place.then(|| f32_at(5)),
                        options: bytemuck::Zeroable::zeroed(),
                    };
                    passes.extend(device.launch_cross_entropy(&call).unwrap().passes());
                    passes.extend(vocab_passes(device, shape, logits, in_place));
                }
            }
        }
        assert!(passes.len() > 100);
        for p in &passes {
            let mut bound: Vec<u32> = p.bindings.iter().map(|&(slot, _)| slot).collect();
            bound.sort();
            let mut declared: Vec<u32> = p.key.storage_bindings().iter().map(|b| b.slot).collect();
            declared.sort();
            assert_eq!(bound, declared, "{:?}", p.key);
        }
    }

    /// Every vocabulary-parallel step of a shard of `shape` with logits at `logits`: the
    /// partial states (forward; cross-entropy with weights), their merge, the softmax finish
    /// with the logsumexp, logsumexp alone, and the cross-entropy finish (in place or not).
    fn vocab_passes(
        device: &DeviceProfile,
        shape: Shape,
        logits: TensorAt,
        in_place: bool,
    ) -> Vec<Pass> {
        use crate::shader::VocabEntry as E;
        let (rows, cols) = (shape.rows as u64, shape.cols as u64);
        let whole = |n: u64| Some(whole_f32(0, n));
        let call = |wholes: [Option<Whole>; vocab_arg::COUNT], output| VocabCall {
            shape,
            logits: Some(logits),
            output,
            in_place: false,
            wholes,
            params: bytemuck::Zeroable::zeroed(),
        };
        let mut w = [None; vocab_arg::COUNT];
        w[vocab_arg::STATES] = Some(Whole {
            at: TensorAt {
                dtype: DType::F32,
                offset: 0,
            },
            bytes: state_bytes(rows),
        });
        let mut ce = w;
        ce[vocab_arg::TARGETS] = whole(rows);
        ce[vocab_arg::WEIGHT] = whole(cols);
        let mut merge = [None; vocab_arg::COUNT];
        merge[vocab_arg::STATES] = whole(3 * rows * 9);
        merge[vocab_arg::MERGED] = whole(rows * 9);
        let mut fwd = [None; vocab_arg::COUNT];
        fwd[vocab_arg::MERGED] = whole(rows * 9);
        fwd[vocab_arg::LSE] = whole(rows);
        let mut rows_ce = fwd;
        rows_ce[vocab_arg::TARGETS] = whole(rows);
        rows_ce[vocab_arg::LOSS] = whole(rows);
        rows_ce[vocab_arg::META] = whole(4);
        let mut grad = rows_ce;
        grad[vocab_arg::WEIGHT] = whole(cols);
        let f32_out = Some(TensorAt {
            dtype: DType::F32,
            offset: 0,
        });
        let mut out = Vec::new();
        let mut run = |entry, c: VocabCall| {
            out.extend(device.launch_vocab(entry, &c).unwrap().passes);
        };
        run(E::Partial, call(w, None));
        run(E::Partial, call(ce, None));
        run(
            E::Merge,
            VocabCall {
                logits: None,
                ..call(merge, None)
            },
        );
        run(E::Forward, call(fwd, Some(logits)));
        run(E::Forward, call(fwd, None));
        run(
            E::CeRows,
            VocabCall {
                logits: None,
                ..call(rows_ce, None)
            },
        );
        run(
            E::CeReduce,
            VocabCall {
                logits: None,
                ..call(rows_ce, None)
            },
        );
        run(
            E::CeGrad,
            VocabCall {
                in_place,
                ..call(grad, if in_place { Some(logits) } else { f32_out })
            },
        );
        out
    }

    #[test]
    fn launches_match_their_snapshot() {
        check("launches.sha256", &traces());
    }
}
