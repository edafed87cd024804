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
//! - online otherwise.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::{Forward, Shape, Variant};
use crate::profile::DeviceProfile;
use crate::shader::Layout;

/// Blocks of 8 logits each lane may hold in registers. The held blocks are unrolled, one
/// statement each with a constant index, up to `shader::MAX_UNROLLED_BLOCKS` (see
/// `held_passes` in src/shader/mod.rs); indexed in a loop they left registers on both kinds of
/// adapter (on an H100, 1024 lanes of 4 blocks, rows of 32000: 0.20 to 0.45 of copy in a
/// loop, 0.51 to 0.93 unrolled). CPU adapters keep "registers" in cached stack memory and
/// gain from long runs; GPUs hold 4 blocks (32 floats) per lane in workgroups of up to
/// `RESIDENT_LANES_GPU` (512 lanes of 8 blocks measured slower than 1024 of 4).
const RESIDENT_BLOCKS_CPU: u32 = 64;
const RESIDENT_BLOCKS_GPU: u32 = 4;
/// The largest resident workgroup on GPUs: one per row, up to `RESIDENT_BLOCKS_GPU` blocks
/// per lane.
const RESIDENT_LANES_GPU: u32 = 1024;
/// Blocks per row above which GPUs choose resident for softmax and log-softmax (4096
/// logits): at 4096 it ran as fast as online on an H100 (4096 rows, 0.88 of copy), above
/// it online reads each row twice (1024 and 4096 rows of 32000, f32 softmax: resident 0.73
/// and 0.78 of copy, online 0.62). Logsumexp reads each row once anyway and stays online
/// (0.93 and 1.02 online, 0.77 and 0.93 resident).
const RESIDENT_AUTO_MIN_BLOCKS_GPU: u64 = 512;
/// Rows from which GPUs choose resident over split-row: each row takes one workgroup of up
/// to 1024 lanes, so fewer rows leave most of a large GPU idle (on an H100, rows of 32000,
/// f32 softmax: resident 0.64 of copy against split-row 0.54 at 128 rows, 0.63 against
/// 0.60 at 256; f16 0.78 against 0.64 and 0.75 against 0.63; 64 rows not measured).
const RESIDENT_AUTO_MIN_ROWS_GPU: u64 = 128;
/// Lanes per row of the multi-row variant without subgroups (at most half the workgroup).
const MULTI_ROW_LANES: u32 = 32;
/// Blocks per lane up to which CPU adapters choose multi-row automatically (one subgroup of
/// 8 lanes per row: 2048 logits): as far as they unroll the held blocks
/// (`shader::MAX_UNROLLED_BLOCKS`). Measured on lavapipe, 1024 rows, ratio to copy of
/// multi-row against online, two runs each, at 2048 logits: softmax 0.42-0.47 against
/// 0.32-0.33, log-softmax 0.41-0.44 against 0.35-0.36, logsumexp 0.36-0.43 against
/// 0.37-0.39, f16 softmax 0.24 against 0.15-0.17. Unrolled to 64 blocks, it also won at
/// 4096 (softmax 0.45-0.47 against 0.35-0.37), but each such pipeline took 0.75 to 0.9 s to
/// compile. Before the held blocks were unrolled, multi-row lost to online from 4096 logits
/// (0.32 against 0.35).
const MULTI_ROW_AUTO_BLOCKS_CPU: u32 = crate::shader::MAX_UNROLLED_BLOCKS;
/// The same on GPUs (one subgroup of 32 lanes per row: 512 logits). On an H100, 4096 rows:
/// 0.74 of copy against 0.48 online at 512 logits; at 1024 logits (4 blocks) f32 softmax
/// ran slower than online (0.66 against 0.74) and at 2048 (8 blocks) all but f16 logsumexp did.
const MULTI_ROW_AUTO_BLOCKS_GPU: u32 = 2;
/// Blocks per row up to which CPU adapters give rows too long for a subgroup's held blocks
/// (past `MULTI_ROW_AUTO_BLOCKS_CPU` per lane of a subgroup) a lane each, looped: the online
/// variant's two reads without its merge across lanes, in workgroups of the usual 16 lanes,
/// where there are rows enough for two workgroups per thread (at 32 x 8192, two workgroups
/// on two threads, softmax measured 0.51 -> 0.48 of copy). Measured on lavapipe, ratio to
/// copy, medians of four alternating runs (three for f16), against online: softmax 0.40 ->
/// 0.47 at 2048 x 4096, 0.35 -> 0.43 at 1024 x 8192, 0.39 -> 0.50 at 512 x 8192, 0.48 ->
/// 0.56 at 64 x 4096; log-softmax 0.41 -> 0.50, 0.42 -> 0.50, 0.39 -> 0.55, 0.53 -> 0.58;
/// logsumexp 0.44 -> 0.50, 0.44 -> 0.54, 0.50 -> 0.59, 0.64 -> 0.73; f16 softmax 0.17 ->
/// 0.21 and 0.18 -> 0.20 at the first two; through GL on llvmpipe softmax 0.34 -> 0.55 and
/// 0.40 -> 0.49, logsumexp 0.41 -> 0.69 and 0.45 -> 0.85. At 4096 x 2048 f16 softmax lost
/// (0.24 -> 0.20): rows of 2048 keep a subgroup's held blocks. Longer rows lost (softmax,
/// one build against the other: 0.45 -> 0.43 at 512 x 16384, 0.45 -> 0.38 at 32 x 128256,
/// 0.56 -> 0.41 at 256 x 128256) and stay online; workgroups of 64 or 256 lanes were no
/// faster, and slower on few rows.
const ROW_LANE_MAX_BLOCKS_CPU: u64 = 1024;
/// Blocks a CPU adapter's multi-row workgroup with a row per lane holds in all (see
/// `Engine::multi_row_workgroup`).
const MULTI_ROW_CPU_HELD: u32 = 256;
/// Smallest split-row piece, in blocks: below it a workgroup's fixed costs dominate.
const MIN_PIECE_BLOCKS_CPU: u32 = 1024;
const MIN_PIECE_BLOCKS_GPU: u32 = 256;
/// Logits per row above which CPU adapters cut rows into pieces (split-row), and then only
/// where a workgroup per row would leave threads idle (`Engine::wants_split`): below it the
/// second dispatch and the merge cost more than the idle threads. Measured on lavapipe (two
/// threads), f32, ratio to copy of split-row against a workgroup per row (online), medians
/// of three alternating runs, softmax / logsumexp: one row of 32000 0.48 / 0.55 against
/// 0.65 / 0.85, of 65536 0.43 / 0.44 against 0.56 / 0.81, of 131072 0.45 / 0.52 against
/// 0.41 / 0.62, of 262144 0.46 / 0.51 against 0.32 / 0.48, of 1M 0.43 / 0.54 against
/// 0.21 / 0.33 (f16: 262144 0.30 / 0.40 against 0.32 / 0.48, 1M 0.29 / 0.39 against
/// 0.17 / 0.33); 2 and 4 rows of 32000, which already give each thread a workgroup, 0.52 /
/// 0.37 and 0.46 / 0.49 against 0.68 / 0.80 and 0.62 / 0.79. The training kernels, one row,
/// f32, cross-entropy / softmax backward: 262144 0.31 / 0.49 against 0.27 / 0.29, 1M 0.27 /
/// 0.50 against 0.19 / 0.30, 32000 0.29 / 0.52 against 0.31 / 0.82.
const SPLIT_MIN_COLS_CPU: u64 = 131_072;

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
    /// block up to `RESIDENT_LANES_GPU`, then more blocks per lane (on an H100, 4096 rows of
    /// 16384 f16 logits: 1024 lanes of 2 blocks 0.90 of copy, 512 lanes of 4 blocks 0.76;
    /// at 8192 logits within 0.03 of 256 lanes of 4 blocks); never below the usual size,
    /// which CPU adapters keep.
    fn resident_lanes(&self, blocks: u64) -> u32 {
        let lanes = blocks
            .next_power_of_two()
            .min(u64::from(self.max_resident_lanes())) as u32;
        lanes.max(self.workgroup_size())
    }

    /// Lanes per row of the multi-row variant for rows of `blocks` blocks, at most `most`
    /// (the subgroup, or `MULTI_ROW_LANES`). CPU adapters give a row that one lane holds
    /// unrolled a lane of its own: no reduction at all (lavapipe, f32 softmax, ratio to
    /// copy against 8 lanes per row: 0.056-0.059 against 0.006 at 1048576 x 2, 0.205-0.246
    /// against 0.045-0.047 at 262144 x 33, 0.34-0.41 against 0.34-0.38 at 32768 x 256).
    /// GPUs give each lane one block (as many lanes as blocks, a power of two), so that
    /// rows of a few blocks do not leave most of a subgroup idle.
    fn multi_row_lanes(&self, blocks: u64, most: u32) -> u32 {
        if self.cpu_tuned() {
            if blocks <= u64::from(crate::shader::MAX_UNROLLED_BLOCKS) {
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
    /// not pay a workgroup each few rows (lavapipe, 1048576 x 2 f32 softmax: 59 ms in
    /// workgroups of 16, 30 in 64, 19 in 256), nor long ones spill their held blocks. Rows
    /// a lane loops over (`resident_blocks` 0) keep the usual size.
    fn multi_row_workgroup(&self, lanes: u32, resident_blocks: u32) -> u32 {
        let wg = self.workgroup_size();
        if !self.cpu_tuned() || lanes > 1 || resident_blocks == 0 {
            return wg;
        }
        let wanted = (MULTI_ROW_CPU_HELD / resident_blocks.max(1)).max(wg);
        self.largest_workgroup(wanted)
    }

    /// The plan of operation `op` on `shape` (validated by the caller).
    pub(crate) fn plan(&self, op: Forward, shape: Shape, forced: Variant) -> Result<Plan> {
        let wg = self.workgroup_size();
        let blocks = shape.cols as u64 / 8;
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
        };
        // Blocks per lane rounded up to a power of two, so that few pipelines cover all sizes.
        let per_lane = |lanes: u64| (blocks.div_ceil(lanes).next_power_of_two().max(1)) as u32;
        let multi_lanes = u64::from(
            self.fixed_subgroup()
                .unwrap_or(MULTI_ROW_LANES.min(wg / 2).max(1)),
        );

        let pieces = self.split_pieces(rows, blocks);
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
            // On CPU adapters online beat resident rows wherever they fit (lavapipe, 1024
            // rows, softmax / logsumexp: 0.35 / 0.42 against 0.25 / 0.19 of copy at 8192
            // logits, where each lane holds 64 blocks in a loop).
            Variant::Auto => Variant::Online,
            v => v,
        };
        let unsupported = |reason: String| Error::UnsupportedVariant {
            variant: variant.name(),
            reason,
        };
        let plan = match variant {
            Variant::Auto | Variant::Online => {
                // Each lane loops over its share of the row's blocks.
                // (On GPUs, 1024 lanes instead of 256 measured no better on an H100: faster
                // on some shapes, half as fast on 4096 x 128256.)
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
                        8 * most,
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
        8 * (self.max_resident_lanes() * self.max_resident_blocks()) as usize
    }
}

impl Engine {
    /// The longest row the resident variant holds in registers on this adapter.
    pub fn resident_cols(&self) -> usize {
        self.profile.resident_cols()
    }

    /// The variant `options.variant` resolves to for operation `op` on `shape`.
    pub fn forward_variant(
        &self,
        op: Forward,
        shape: Shape,
        options: &crate::SoftmaxOptions,
    ) -> Result<Variant> {
        shape.validate()?;
        Ok(self.profile.plan(op, shape, options.variant)?.variant)
    }
}

/// The planner on described devices, no adapter needed: the rules above on lavapipe,
/// llvmpipe through GL and an NVIDIA H100. The H100 rows are the variants its bench ran
/// (docs/bench-h100.json, docs/bench-h100-big.json).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AccessPattern, HalfPath, Tuning};
    use wgpu::Features as F;

    /// A device as `softmax-wgpu info` describes it, with two CPU threads.
    fn profile(
        device_type: wgpu::DeviceType,
        features: wgpu::Features,
        subgroup: (u32, u32),
    ) -> DeviceProfile {
        DeviceProfile {
            device_type,
            features,
            limits: wgpu::Limits {
                max_storage_buffer_binding_size: 1 << 27,
                max_compute_invocations_per_workgroup: 1024,
                max_compute_workgroup_size_x: 1024,
                ..wgpu::Limits::default()
            },
            subgroup_min_size: subgroup.0,
            subgroup_max_size: subgroup.1,
            tuning: Tuning::Auto,
            access: AccessPattern::Auto,
            half_path: HalfPath::Auto,
            half_builtins: true,
            cpu_threads: 2,
        }
    }

    fn lavapipe() -> DeviceProfile {
        let f = F::SHADER_F16 | F::SUBGROUP | F::TIMESTAMP_QUERY | F::SHADER_INT64;
        profile(wgpu::DeviceType::Cpu, f, (8, 8))
    }

    fn llvmpipe_gl() -> DeviceProfile {
        profile(wgpu::DeviceType::Cpu, F::TIMESTAMP_QUERY, (4, 128))
    }

    fn h100() -> DeviceProfile {
        let f = F::SHADER_F16 | F::SUBGROUP | F::TIMESTAMP_QUERY | F::SHADER_INT64;
        profile(wgpu::DeviceType::DiscreteGpu, f, (32, 32))
    }

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
