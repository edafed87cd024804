//! Which kernel variant runs a forward operation, and how it is laid out: the automatic
//! choice from shape and adapter, or a forced [`Variant`] checked against what it can hold.
//!
//! The rules, for `blocks = cols / 8` (lanes own blocks of 8 logits, see shaders/softmax.wgsl):
//! - on GPUs, resident for softmax and log-softmax when there are enough rows for a
//!   workgroup per row to fill the GPU and a row of more than 4096 logits fits a
//!   workgroup's registers (up to 32768 logits): one read instead of two;
//! - split-row when there are too few rows to keep the adapter busy (on GPUs fewer than its
//!   `parallel_groups`, on CPU adapters half its threads or fewer, and rows longer than
//!   `SPLIT_MIN_COLS_CPU` there) and the rows are long enough to cut into pieces worth a
//!   workgroup;
//! - multi-row when a row is short (it fits `MULTI_ROW_LANES` lanes' registers, at most
//!   `MULTI_ROW_AUTO_BLOCKS_CPU` / `_GPU` blocks per lane): several rows per workgroup; on
//!   CPU adapters a row of up to 32 blocks takes a lane, and rows of up to 256 logits go
//!   several to a lane, as many as fill whole blocks, packed (`shader::packed_rows`); rows
//!   of up to `ROW_LANE_MAX_BLOCKS_CPU` blocks too long for a subgroup's registers (or,
//!   with subgroups as wide as the workgroup, for a lane's) take a lane each there too,
//!   looped, where there are rows enough;
//! - online otherwise;
//! - with `EngineOptions::cache_bytes` on GPU tuning, split-row instead of online for
//!   softmax and log-softmax of rows of 4096 logits or more whose batch does not fit the
//!   cache, in dispatches of the rows that do (`cache_rows`), cut into pieces enough to fill
//!   the GPU: each piece's second read then finds it in the cache.

use crate::error::{Error, Result};
use crate::options::{Forward, Shape, Variant};
use crate::profile::DeviceProfile;
use crate::shader::{Layout, BLOCK};
use crate::tuning::{
    INVARIANT_PIECE_COLS_CPU, INVARIANT_PIECE_COLS_GPU, MIN_PIECE_BLOCKS_CPU, MIN_PIECE_BLOCKS_GPU,
    MULTI_ROW_AUTO_BLOCKS_CPU, MULTI_ROW_AUTO_BLOCKS_GPU, MULTI_ROW_CPU_HELD, MULTI_ROW_LANES,
    RESIDENT_AUTO_MIN_BLOCKS_GPU, RESIDENT_AUTO_MIN_ROWS_GPU, RESIDENT_BLOCKS_CPU,
    RESIDENT_BLOCKS_GPU, RESIDENT_LANES_GPU, ROW_LANE_MAX_BLOCKS_CPU, ROW_PER_LANE_MAX_COLS_GPU,
    ROW_PER_LANE_SHORT_COLS_CPU, SPLIT_MIN_COLS_CPU,
};

/// A forward operation's variant and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The variant (never `Auto`).
    pub variant: Variant,
    /// The kernel's layout.
    pub layout: Layout,
    /// Split-row pieces per row; 1 for the other variants.
    pub chunks: u32,
    /// Rows one workgroup takes at a time (dispatch size = rows / this).
    pub rows_per_group: u32,
    /// The workgroup size (larger than usual on CPU adapters for very long rows, see
    /// `Engine::workgroup_for`).
    pub workgroup: u32,
}

impl Plan {
    /// Rows each lane of a packed plan takes (1 otherwise).
    pub(crate) fn packed_rows(&self) -> u32 {
        self.layout.packed_rows().unwrap_or(1)
    }

    /// The same plan without packed rows, for dispatches whose rows do not start on a block
    /// (`packed_cols` needs every dispatch's first output on one, see `record_forward`).
    pub(crate) fn unpacked(self) -> Plan {
        Plan {
            layout: Layout {
                packed_cols: 0,
                ..self.layout
            },
            rows_per_group: self.workgroup / self.layout.lanes,
            ..self
        }
    }
}

impl DeviceProfile {
    fn max_resident_blocks(&self) -> u32 {
        if self.cpu_tuned() {
            RESIDENT_BLOCKS_CPU
        } else {
            RESIDENT_BLOCKS_GPU
        }
    }

    /// The subgroup size where it is fixed and the device has SUBGROUP.
    fn fixed_subgroup(&self) -> Option<u32> {
        let usable = self.features.contains(wgpu::Features::SUBGROUP)
            && self.subgroup_min_size == self.subgroup_max_size
            && self.subgroup_min_size >= 4
            && self.workgroup_size().is_multiple_of(self.subgroup_min_size);
        usable.then_some(self.subgroup_min_size)
    }

    /// Workgroups that keep the adapter busy: a few per thread on CPU adapters (lavapipe
    /// runs one workgroup per thread at a time), a few hundred on GPUs.
    pub(crate) fn parallel_groups(&self) -> u32 {
        if self.cpu_tuned() {
            4 * self.cpu_threads
        } else {
            512
        }
    }

    /// Whether `rows` rows of `cols` logits, cut into `pieces` pieces each, go split-row
    /// (forward and training kernels alike): on GPUs where there are fewer rows than
    /// `parallel_groups`; on CPU adapters only where a workgroup per row would leave half the
    /// threads idle or more, and the rows are longer than `SPLIT_MIN_COLS_CPU`.
    pub(crate) fn wants_split(&self, rows: u64, cols: u64, pieces: u64) -> bool {
        if pieces < 2 {
            return false;
        }
        if self.cpu_tuned() {
            // At least two threads assumed: one-core machines choose as two-core ones do.
            2 * rows <= u64::from(self.cpu_threads.max(2)) && cols > SPLIT_MIN_COLS_CPU
        } else {
            rows < u64::from(self.parallel_groups())
        }
    }

    /// Rows per split-row dispatch where dispatches are sized to the cache
    /// (`EngineOptions::cache_bytes`, GPU tuning, outside the batch-invariant mode): as many
    /// rows of `tensors` f32 tensors (the ones a kernel reads twice: the logits, or `y` and
    /// `dy`) as fill it, where the batch's do not; `None` otherwise. f16 and bf16 dispatches
    /// fill half of it, so that the choice depends on the shape alone, as
    /// `Engine::forward_variant` reports it.
    pub(crate) fn cache_rows(&self, shape: Shape, tensors: u64) -> Option<u64> {
        if self.cache_bytes == 0 || self.cpu_tuned() || self.batch_invariant {
            return None;
        }
        let rows = self.cache_bytes / (shape.cols as u64 * 4 * tensors).max(1);
        (rows >= 1 && shape.rows as u64 > rows).then_some(rows)
    }

    /// `cache_rows` of a forward operation: softmax and log-softmax read the logits twice,
    /// logsumexp once (never sized).
    pub(crate) fn forward_cache_rows(&self, op: Forward, shape: Shape) -> Option<u64> {
        if op == Forward::LogSumExp {
            return None;
        }
        self.cache_rows(shape, 1)
    }

    /// Pieces to cut each of `rows` rows of `blocks` blocks into so that the adapter has
    /// `parallel_groups` workgroups, at most one per `MIN_PIECE_BLOCKS_*` blocks and the
    /// workgroup size (split-row needs 2 or more, see `wants_split`).
    pub(crate) fn split_pieces(&self, rows: u64, blocks: u64) -> u64 {
        let min_piece = u64::from(if self.cpu_tuned() {
            MIN_PIECE_BLOCKS_CPU
        } else {
            MIN_PIECE_BLOCKS_GPU
        });
        let wanted = u64::from(self.parallel_groups()).div_ceil(rows.max(1));
        wanted
            .min(blocks / min_piece)
            .min(u64::from(self.workgroup_size()))
    }

    /// The resident variant's widest workgroup: the usual size on CPU adapters, up to
    /// `RESIDENT_LANES_GPU` on GPUs.
    fn max_resident_lanes(&self) -> u32 {
        if self.cpu_tuned() {
            self.workgroup_size()
        } else {
            self.largest_workgroup(RESIDENT_LANES_GPU)
        }
    }

    /// The resident variant's workgroup for rows of `blocks` blocks: on GPUs a lane per
    /// block up to `RESIDENT_LANES_GPU`, then more blocks per lane (wider workgroups of fewer
    /// blocks ran faster: docs/tuning.md#resident-lanes); never below the usual size, which
    /// CPU adapters keep.
    fn resident_lanes(&self, blocks: u64) -> u32 {
        let lanes = blocks
            .next_power_of_two()
            .min(u64::from(self.max_resident_lanes())) as u32;
        lanes.max(self.workgroup_size())
    }

    /// Lanes per row of the multi-row variant for rows of `blocks` blocks, at most `most`
    /// (the subgroup, or `MULTI_ROW_LANES`). CPU adapters give a row that one lane holds
    /// unrolled a lane of its own: no reduction at all (docs/tuning.md#multi-row-lanes-per-row).
    /// GPUs give each lane one block (as many lanes as blocks, a power of two), so that
    /// rows of a few blocks do not leave most of a subgroup idle.
    fn multi_row_lanes(&self, blocks: u64, most: u32) -> u32 {
        if self.cpu_tuned() {
            if blocks <= u64::from(crate::tuning::MAX_UNROLLED_BLOCKS) {
                1
            } else {
                most
            }
        } else {
            blocks.max(1).next_power_of_two().min(u64::from(most)) as u32
        }
    }

    /// The multi-row workgroup: the usual size, but on CPU adapters with a row held by each
    /// lane as many lanes as hold about `MULTI_ROW_CPU_HELD` blocks, so that tiny rows do
    /// not pay a workgroup each few rows, nor long ones spill their held blocks. Rows a lane
    /// loops over (`resident_blocks` 0) keep the usual size.
    fn multi_row_workgroup(&self, lanes: u32, resident_blocks: u32) -> u32 {
        let wg = self.workgroup_size();
        if !self.cpu_tuned() || lanes > 1 || resident_blocks == 0 {
            return wg;
        }
        let wanted = (MULTI_ROW_CPU_HELD / resident_blocks.max(1)).max(wg);
        self.largest_workgroup(wanted)
    }

    /// Batch-invariant mode: whether rows of `cols` logits go a lane each (every family),
    /// as short as the training kernels give a lane each whatever the batch.
    pub(crate) fn invariant_row_per_lane(&self, cols: u64) -> bool {
        cols <= if self.cpu_tuned() {
            ROW_PER_LANE_SHORT_COLS_CPU
        } else {
            ROW_PER_LANE_MAX_COLS_GPU
        }
    }

    /// Batch-invariant mode: split-row pieces of a row of `cols` logits, `None` for a
    /// workgroup per row: one per `INVARIANT_PIECE_COLS_*` logits, at most a workgroup's
    /// lanes (each merges one piece's state in `finish`). Rows of two pieces or more are
    /// far longer than `invariant_row_per_lane` gives a lane.
    pub(crate) fn invariant_pieces(&self, cols: u64) -> Option<u64> {
        let piece = if self.cpu_tuned() {
            INVARIANT_PIECE_COLS_CPU
        } else {
            INVARIANT_PIECE_COLS_GPU
        };
        let pieces = cols.div_ceil(piece).min(u64::from(self.workgroup_size()));
        (pieces >= 2).then_some(pieces)
    }

    /// The plan of every forward operation in batch-invariant mode, forced variants
    /// included: chosen by the row length alone, with the lanes folding the row's columns
    /// in their own order (`Layout::columns`). Short rows go a lane each (multi-row, looped),
    /// long ones split-row in `invariant_pieces`, the rest online.
    fn invariant_plan(&self, shape: Shape) -> Result<Plan> {
        let cols = shape.cols as u64;
        let wg = self.workgroup_size();
        let base = Layout {
            lanes: wg,
            subgroups: self.features.contains(wgpu::Features::SUBGROUP),
            subgroup_rows: false,
            resident_blocks: 0,
            split: false,
            packed_cols: 0,
            columns: true,
        };
        if self.invariant_row_per_lane(cols) {
            return Ok(Plan {
                variant: Variant::MultiRow,
                layout: Layout {
                    lanes: 1,
                    subgroups: false,
                    ..base
                },
                chunks: 1,
                rows_per_group: wg,
                workgroup: wg,
            });
        }
        if let Some(chunks) = self.invariant_pieces(cols) {
            let lanes = self.workgroup_for("softmax (split-row)", cols.div_ceil(chunks))?;
            return Ok(Plan {
                variant: Variant::SplitRow,
                layout: Layout {
                    lanes,
                    split: true,
                    ..base
                },
                chunks: chunks as u32,
                rows_per_group: 1,
                workgroup: lanes,
            });
        }
        let lanes = self.workgroup_for("softmax (online)", cols)?;
        Ok(Plan {
            variant: Variant::Online,
            layout: Layout { lanes, ..base },
            chunks: 1,
            rows_per_group: 1,
            workgroup: lanes,
        })
    }

    /// The plan of operation `op` on `shape` (validated by the caller).
    pub(crate) fn plan(&self, op: Forward, shape: Shape, forced: Variant) -> Result<Plan> {
        if self.batch_invariant {
            return self.invariant_plan(shape);
        }
        let wg = self.workgroup_size();
        let blocks = shape.cols as u64 / BLOCK;
        let rows = shape.rows as u64;
        let max_blocks = u64::from(self.max_resident_blocks());
        let subgroups = self.features.contains(wgpu::Features::SUBGROUP);
        let base = Layout {
            lanes: wg,
            subgroups,
            subgroup_rows: false,
            resident_blocks: 0,
            split: false,
            packed_cols: 0,
            columns: false,
        };
        // Blocks per lane rounded up to a power of two, so that few pipelines cover all sizes.
        let per_lane = |lanes: u64| (blocks.div_ceil(lanes).next_power_of_two().max(1)) as u32;
        let multi_lanes = u64::from(
            self.fixed_subgroup()
                .unwrap_or(MULTI_ROW_LANES.min(wg / 2).max(1)),
        );

        let cache_rows = self.forward_cache_rows(op, shape);
        let pieces = self.split_pieces(cache_rows.unwrap_or(rows), blocks);
        let fits_resident = blocks <= u64::from(self.max_resident_lanes()) * max_blocks;
        let auto_multi_blocks = u64::from(if self.cpu_tuned() {
            MULTI_ROW_AUTO_BLOCKS_CPU
        } else {
            MULTI_ROW_AUTO_BLOCKS_GPU
        })
        .min(max_blocks);
        // Rows that several lanes of a subgroup (or `MULTI_ROW_LANES`) hold in registers,
        // fewer lanes than a workgroup (with CPU tuning, rows of up to `MAX_UNROLLED_BLOCKS`
        // take a lane each; a subgroup as wide as the workgroup, as llvmpipe's 16 lanes at
        // 512 bits, holds no longer ones); longer ones CPU adapters loop over, a lane each
        // (`ROW_LANE_MAX_BLOCKS_CPU`), where the rows give each thread two workgroups.
        let held_multi = blocks <= multi_lanes * auto_multi_blocks
            && self.multi_row_lanes(blocks, multi_lanes as u32) < wg;
        let row_lanes = self.cpu_tuned()
            && !held_multi
            && blocks <= ROW_LANE_MAX_BLOCKS_CPU
            && rows * 2 >= u64::from(self.parallel_groups()) * u64::from(wg);
        // Not past one dispatch dimension of rows: there the kernel loops over rows and
        // GPUs hold the blocks in a loop (see `source` in src/shader/mod.rs), which is slow.
        let gpu_resident = !self.cpu_tuned()
            && op != Forward::LogSumExp
            && fits_resident
            && blocks > RESIDENT_AUTO_MIN_BLOCKS_GPU
            && rows >= RESIDENT_AUTO_MIN_ROWS_GPU
            && rows <= u64::from(self.limits.max_compute_workgroups_per_dimension);
        let variant = match forced {
            Variant::Auto if gpu_resident => Variant::Resident,
            Variant::Auto if self.wants_split(rows, shape.cols as u64, pieces) => Variant::SplitRow,
            Variant::Auto if held_multi || row_lanes => Variant::MultiRow,
            Variant::Auto if cache_rows.is_some() && pieces >= 2 => Variant::SplitRow,
            // On CPU adapters online beat resident rows wherever they fit
            // (docs/tuning.md#online-over-resident-on-cpu-adapters).
            Variant::Auto => Variant::Online,
            v => v,
        };
        let unsupported = |reason: String| Error::UnsupportedVariant {
            variant: variant.name(),
            reason,
        };
        let plan = match variant {
            Variant::Auto | Variant::Online => {
                // Each lane loops over its share of the row's blocks (256 lanes on GPUs:
                // docs/tuning.md#online-workgroups-on-gpus).
                let lanes = self.workgroup_for("softmax (online)", blocks)?;
                Plan {
                    variant: Variant::Online,
                    layout: Layout { lanes, ..base },
                    chunks: 1,
                    rows_per_group: 1,
                    workgroup: lanes,
                }
            }
            Variant::Resident => {
                if !fits_resident {
                    return Err(unsupported(format!(
                        "rows of {} logits exceed the {} this adapter holds in registers",
                        shape.cols,
                        self.resident_cols()
                    )));
                }
                let lanes = self.resident_lanes(blocks);
                Plan {
                    variant,
                    layout: Layout {
                        lanes,
                        resident_blocks: per_lane(u64::from(lanes)),
                        ..base
                    },
                    chunks: 1,
                    rows_per_group: 1,
                    workgroup: lanes,
                }
            }
            Variant::MultiRow => {
                // CPU adapters loop over the rows their subgroups do not hold, a lane each.
                let looped = self.cpu_tuned() && !held_multi;
                let most = if looped {
                    ROW_LANE_MAX_BLOCKS_CPU
                } else {
                    multi_lanes * max_blocks
                };
                if blocks > most {
                    return Err(unsupported(format!(
                        "rows of {} logits exceed the {} that multi-row takes on this adapter",
                        shape.cols,
                        BLOCK * most,
                    )));
                }
                // Looped: one lane, no held blocks (the online variant's passes).
                let (lanes, resident_blocks) = if looped {
                    (1, 0)
                } else {
                    let lanes = self.multi_row_lanes(blocks, multi_lanes as u32);
                    (lanes, per_lane(u64::from(lanes)))
                };
                // A row per lane needs no reduction; a row within a subgroup merges there.
                let subgroup_rows = lanes > 1 && self.fixed_subgroup().is_some();
                // CPU adapters pack short rows several to a lane where they fill whole blocks.
                let packed = (self.cpu_tuned() && lanes == 1)
                    .then(|| crate::shader::packed_rows(shape.cols))
                    .flatten();
                let held = packed.map_or(resident_blocks, |_| {
                    crate::shader::packed_held_blocks(shape.cols)
                });
                let wg = self.multi_row_workgroup(lanes, held);
                Plan {
                    variant,
                    layout: Layout {
                        lanes,
                        subgroups: subgroup_rows,
                        subgroup_rows,
                        resident_blocks,
                        split: false,
                        packed_cols: packed.map_or(0, |_| shape.cols as u32),
                        columns: false,
                    },
                    chunks: 1,
                    rows_per_group: wg / lanes * packed.unwrap_or(1),
                    workgroup: wg,
                }
            }
            Variant::SplitRow => {
                // Forced on any shape: at least two pieces, none empty where blocks allow.
                let chunks = pieces.max(2).min(blocks).max(1) as u32;
                // Each lane loops over its share of a piece's blocks.
                let lanes =
                    self.workgroup_for("softmax (split-row)", blocks.div_ceil(u64::from(chunks)))?;
                Plan {
                    variant,
                    layout: Layout {
                        lanes,
                        split: true,
                        ..base
                    },
                    chunks,
                    rows_per_group: 1,
                    workgroup: lanes,
                }
            }
        };
        Ok(plan)
    }
}

impl DeviceProfile {
    /// The longest row the resident variant holds in registers on this adapter.
    pub(crate) fn resident_cols(&self) -> usize {
        BLOCK as usize * (self.max_resident_lanes() * self.max_resident_blocks()) as usize
    }
}

/// The planner on described devices, no adapter needed: the rules above on lavapipe,
/// llvmpipe through GL and an NVIDIA H100. The H100 rows are the variants its bench ran
/// (docs/bench-h100.json, docs/bench-h100-big.json).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::described::{h100, lavapipe, llvmpipe_gl};

    /// A row of the table: device, operation, rows, cols, the variant it must get.
    type Case = (
        &'static str,
        fn() -> DeviceProfile,
        Forward,
        usize,
        usize,
        Variant,
    );

    fn variant(p: &DeviceProfile, op: Forward, rows: usize, cols: usize) -> Variant {
        p.plan(op, Shape::new(rows, cols), Variant::Auto)
            .unwrap()
            .variant
    }

    use Forward::{LogSoftmax as Lsm, LogSumExp as Lse, Softmax as Sm};
    use Variant::{MultiRow as M, Online as O, Resident as R, SplitRow as S};

    #[test]
    fn automatic_choices_on_each_device() {
        #[rustfmt::skip]
        let table: [Case; 30] = [
            // H100: split-row under 512 rows, resident for 4097-32768 logits from 128 rows
            // (not logsumexp), multi-row up to 512 logits, online otherwise.
            ("h100", h100, Sm, 1, 32_000, S),
            ("h100", h100, Sm, 1, 1_048_576, S),
            ("h100", h100, Sm, 32, 128_256, S),
            ("h100", h100, Sm, 256, 32_000, R),
            ("h100", h100, Lsm, 256, 32_000, R),
            ("h100", h100, Lse, 256, 32_000, S),
            ("h100", h100, Sm, 256, 128_256, S),
            ("h100", h100, Sm, 1024, 32_000, R),
            ("h100", h100, Lse, 1024, 32_000, O),
            ("h100", h100, Sm, 1024, 128_256, O),
            ("h100", h100, Sm, 4096, 4096, O),
            ("h100", h100, Sm, 4096, 4104, R),
            ("h100", h100, Sm, 4096, 512, M),
            ("h100", h100, Sm, 4096, 1024, O),
            ("h100", h100, Sm, 127, 32_000, S),
            // lavapipe (two threads): split-row only for single rows past 131072 logits,
            // multi-row for short rows and, looped, up to 8192 with rows enough.
            ("lavapipe", lavapipe, Sm, 1, 32_000, O),
            ("lavapipe", lavapipe, Sm, 1, 131_072, O),
            ("lavapipe", lavapipe, Sm, 1, 131_080, S),
            ("lavapipe", lavapipe, Lse, 1, 1_048_576, S),
            ("lavapipe", lavapipe, Sm, 2, 262_144, O),
            ("lavapipe", lavapipe, Sm, 256, 128_256, O),
            ("lavapipe", lavapipe, Sm, 4096, 64, M),
            ("lavapipe", lavapipe, Sm, 1_048_576, 2, M),
            ("lavapipe", lavapipe, Sm, 2048, 4096, M),
            ("lavapipe", lavapipe, Sm, 32, 4096, O),
            ("lavapipe", lavapipe, Sm, 1024, 16_384, O),
            // llvmpipe through GL: the same rules without subgroups.
            ("gl", llvmpipe_gl, Sm, 4096, 64, M),
            ("gl", llvmpipe_gl, Sm, 1, 262_144, S),
            ("gl", llvmpipe_gl, Sm, 1024, 8192, M),
            ("gl", llvmpipe_gl, Sm, 256, 32_000, O),
        ];
        for (name, device, op, rows, cols, want) in table {
            let got = variant(&device(), op, rows, cols);
            assert_eq!(got, want, "{name}: {op:?} {rows} x {cols}");
        }
    }

    /// Batch-invariant mode plans by the row length alone: the same plan for every batch
    /// size and every forced variant, with the columns layout; a lane per row, online and
    /// split-row on each side of their thresholds.
    #[test]
    fn batch_invariant_plans_depend_on_the_row_length_alone() {
        for device in [lavapipe, llvmpipe_gl, h100] {
            let p = DeviceProfile {
                batch_invariant: true,
                ..device()
            };
            let gpu = !p.cpu_tuned();
            for (cols, want) in [
                (32, M),
                (33, if gpu { O } else { M }),
                (128, if gpu { O } else { M }),
                (129, O),
                (4096, O),
                (4097, if gpu { S } else { O }),
                (131_072, if gpu { S } else { O }),
                (131_073, S),
            ] {
                let first = p.plan(Sm, Shape::new(1, cols), Variant::Auto).unwrap();
                assert_eq!(first.variant, want, "{cols}");
                assert!(first.layout.columns && first.layout.packed_cols == 0);
                for rows in [2, 64, 513, 70_000] {
                    for forced in [Variant::Auto, O, R, M, S] {
                        for op in [Sm, Lsm, Lse] {
                            let plan = p.plan(op, Shape::new(rows, cols), forced).unwrap();
                            assert_eq!(plan, first, "{rows} x {cols} {op:?} {forced:?}");
                        }
                    }
                }
            }
        }
    }

    /// With a cache to size dispatches to, batches of long rows that do not fit it run
    /// split-row, cut for the rows of one dispatch; what reads once (resident, logsumexp),
    /// short rows, batches that fit, CPU tuning and the batch-invariant mode stay as they were.
    #[test]
    fn cache_sized_dispatches_take_batches_of_long_rows_split_row() {
        let mib = 1u64 << 20;
        let gpu = DeviceProfile {
            cache_bytes: 24 * mib,
            ..h100()
        };
        // 24 MiB hold 49 rows of 128256 f32 logits: 11 pieces a row fill 512 workgroups.
        assert_eq!(
            gpu.forward_cache_rows(Sm, Shape::new(256, 128_256)),
            Some(49)
        );
        for (op, rows, cols, want, pieces) in [
            (Sm, 256, 128_256, S, 11),
            (Lsm, 1024, 128_256, S, 11),
            (Sm, 4096, 128_256, S, 11),
            (Sm, 4096, 1_048_576, S, 86),
            // 1536 rows a dispatch fill the GPU a workgroup each: online, as without.
            (Sm, 4096, 4096, O, 1),
            (Sm, 49, 128_256, S, 11), // fits: split-row as before, fewer than 512 rows
            (Sm, 1024, 32_000, R, 1), // resident reads once
            (Lse, 1024, 128_256, O, 1),
            (Sm, 1 << 20, 512, M, 1),
            (Sm, 1 << 16, 1024, O, 1), // rows too short to cut in two pieces
        ] {
            let plan = gpu.plan(op, Shape::new(rows, cols), Variant::Auto).unwrap();
            assert_eq!(
                (plan.variant, plan.chunks),
                (want, pieces),
                "{op:?} {rows} x {cols}"
            );
        }
        assert_eq!(gpu.forward_cache_rows(Sm, Shape::new(49, 128_256)), None);
        assert_eq!(gpu.forward_cache_rows(Lse, Shape::new(1024, 128_256)), None);
        // Forced split-row is cut for the dispatch's rows too.
        let forced = gpu
            .plan(Sm, Shape::new(1024, 32_000), Variant::SplitRow)
            .unwrap();
        assert_eq!(
            forced.chunks, 3,
            "196 rows a dispatch: 3 pieces make 512 workgroups"
        );
        for p in [
            DeviceProfile {
                cache_bytes: 24 * mib,
                ..lavapipe()
            },
            DeviceProfile {
                batch_invariant: true,
                ..gpu.clone()
            },
        ] {
            assert_eq!(p.forward_cache_rows(Sm, Shape::new(4096, 128_256)), None);
        }
        // Off by default.
        assert_eq!(
            h100().forward_cache_rows(Sm, Shape::new(4096, 128_256)),
            None
        );
        let default = h100().plan(Sm, Shape::new(4096, 128_256), Variant::Auto);
        assert_eq!(default.unwrap().variant, O);
    }

    #[test]
    fn layouts_follow_the_device() {
        // H100 resident rows of 32000: 1024 lanes of 4 blocks, one row per workgroup.
        let p = h100()
            .plan(Sm, Shape::new(1024, 32_000), Variant::Auto)
            .unwrap();
        assert_eq!(
            (p.workgroup, p.layout.lanes, p.layout.resident_blocks),
            (1024, 1024, 4)
        );
        // H100 multi-row at 512 logits: a subgroup of 32 lanes a row, 8 rows a workgroup.
        let p = h100()
            .plan(Sm, Shape::new(4096, 512), Variant::Auto)
            .unwrap();
        assert_eq!(
            (p.layout.lanes, p.layout.subgroup_rows, p.rows_per_group),
            (32, true, 8)
        );
        // lavapipe online: 16 lanes; split-row of one row of 1M: 8 pieces (4 per thread).
        let p = lavapipe()
            .plan(Sm, Shape::new(32, 32_000), Variant::Auto)
            .unwrap();
        assert_eq!((p.workgroup, p.chunks), (16, 1));
        let p = lavapipe()
            .plan(Sm, Shape::new(1, 1_048_576), Variant::Auto)
            .unwrap();
        assert_eq!((p.variant, p.chunks, p.workgroup), (S, 8, 16));
        // Rows of 3 on lavapipe go packed, 8 rows to a lane.
        let p = lavapipe()
            .plan(Sm, Shape::new(1000, 3), Variant::Auto)
            .unwrap();
        assert_eq!((p.layout.lanes, p.packed_rows()), (1, 8));
        // Forced variants that cannot hold the rows are errors, not other variants.
        assert!(lavapipe()
            .plan(Sm, Shape::new(4, 1 << 20), Variant::Resident)
            .is_err());
        assert!(h100()
            .plan(Sm, Shape::new(4, 1 << 16), Variant::MultiRow)
            .is_err());
    }
}
