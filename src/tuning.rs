//! Every tuning constant of the kernels' choices, one line of reason each; the measurements
//! behind them are in docs/tuning.md, one section per constant. The choices that use them
//! are methods of `DeviceProfile` (src/profile.rs, src/plan.rs, src/training/mod.rs).

// The forward kernels.

/// Blocks of 8 logits a lane of a resident row holds on CPU adapters, whose "registers" are
/// cached stack memory.
/// Measured: docs/tuning.md#resident_blocks_cpu.
pub(crate) const RESIDENT_BLOCKS_CPU: u32 = 64;

/// Blocks a GPU lane of a resident row holds: 32 floats stay in registers (1024 lanes of 4 beat
/// 512 of 8).
/// Measured: docs/tuning.md#resident_blocks_gpu.
pub(crate) const RESIDENT_BLOCKS_GPU: u32 = 4;

/// The widest resident workgroup on GPUs: one row, a lane per block up to this.
/// Measured: docs/tuning.md#resident_lanes_gpu.
pub(crate) const RESIDENT_LANES_GPU: u32 = 1024;

/// GPUs hold rows resident above 4096 logits, where online's second read costs more (tied at 4096).
/// Measured: docs/tuning.md#resident_auto_min_blocks_gpu.
pub(crate) const RESIDENT_AUTO_MIN_BLOCKS_GPU: u64 = 512;

/// GPUs hold rows resident from 128 rows; fewer workgroups leave a large GPU idle and split-row
/// wins.
/// Measured: docs/tuning.md#resident_auto_min_rows_gpu.
pub(crate) const RESIDENT_AUTO_MIN_ROWS_GPU: u64 = 128;

/// Lanes per row of multi-row where the subgroup size is not fixed.
/// Measured: docs/tuning.md#multi_row_lanes.
pub(crate) const MULTI_ROW_LANES: u32 = 32;

/// CPU adapters take multi-row up to as many blocks per lane as they unroll (faster than online
/// there).
/// Measured: docs/tuning.md#multi_row_auto_blocks_cpu.
pub(crate) const MULTI_ROW_AUTO_BLOCKS_CPU: u32 = MAX_UNROLLED_BLOCKS;

/// GPUs take multi-row up to 2 blocks a lane (512 logits a subgroup); longer rows ran slower
/// than online.
/// Measured: docs/tuning.md#multi_row_auto_blocks_gpu.
pub(crate) const MULTI_ROW_AUTO_BLOCKS_GPU: u32 = 2;

/// CPU adapters give rows of up to 8192 logits a lane each, looped, where the rows fill every
/// thread.
/// Measured: docs/tuning.md#row_lane_max_blocks_cpu.
pub(crate) const ROW_LANE_MAX_BLOCKS_CPU: u64 = 1024;

/// Blocks a CPU adapter's multi-row workgroup holds in all, so that tiny rows do not pay a
/// workgroup each few rows.
/// Measured: docs/tuning.md#multi_row_cpu_held.
pub(crate) const MULTI_ROW_CPU_HELD: u32 = 256;

/// Smallest split-row piece on CPU adapters, in blocks: below it a workgroup's fixed costs
/// dominate.
/// Measured: docs/tuning.md#min_piece_blocks_cpu.
pub(crate) const MIN_PIECE_BLOCKS_CPU: u32 = 1024;

/// Smallest split-row piece on GPUs, in blocks.
/// Measured: docs/tuning.md#min_piece_blocks_gpu.
pub(crate) const MIN_PIECE_BLOCKS_GPU: u32 = 256;

/// CPU adapters split only rows longer than this, and only where a workgroup per row leaves
/// threads idle.
/// Measured: docs/tuning.md#split_min_cols_cpu.
pub(crate) const SPLIT_MIN_COLS_CPU: u64 = 131_072;

/// Forward kernels take 64-bit words on CPU adapters only up to 8-lane subgroups (one 512-bit
/// register).
/// Measured: docs/tuning.md#wide_forward_max_lanes.
pub(crate) const WIDE_FORWARD_MAX_LANES: u32 = 8;

/// The most held blocks per lane that are unrolled: compile time grows faster than the blocks
/// past it.
/// Measured: docs/tuning.md#max_unrolled_blocks.
pub(crate) const MAX_UNROLLED_BLOCKS: u32 = 32;

// The training kernels.

/// The longest rows the backward kernels give a lane each on CPU adapters, where the rows fill
/// every thread.
/// Measured: docs/tuning.md#backward_row_per_lane_max_cols_cpu.
pub(crate) const BACKWARD_ROW_PER_LANE_MAX_COLS_CPU: u64 = 16384;

/// The longest rows cross-entropy gives a lane each on CPU adapters.
/// Measured: docs/tuning.md#ce_row_per_lane_max_cols_cpu.
pub(crate) const CE_ROW_PER_LANE_MAX_COLS_CPU: u64 = 4096;

/// Rows up to which the training kernels take a lane per row on CPU adapters whatever the row
/// count.
/// Measured: docs/tuning.md#row_per_lane_short_cols_cpu.
pub(crate) const ROW_PER_LANE_SHORT_COLS_CPU: u64 = 128;

/// The longest rows the training kernels give a lane each on GPUs: one 128-byte line of f32
/// (not measured).
/// Measured: docs/tuning.md#row_per_lane_max_cols_gpu.
pub(crate) const ROW_PER_LANE_MAX_COLS_GPU: u64 = 32;

/// The most blocks of a run of rows the training kernels unroll; longer runs spill.
/// Measured: docs/tuning.md#max_training_run_blocks.
pub(crate) const MAX_TRAINING_RUN_BLOCKS: u64 = 16;

/// The longest rows the training kernels unroll.
/// Measured: docs/tuning.md#max_training_packed_cols.
pub(crate) const MAX_TRAINING_PACKED_COLS: u64 = 64;

/// The longest odd rows the training kernels take through windows of blocks.
/// Measured: docs/tuning.md#max_training_windowed_cols.
pub(crate) const MAX_TRAINING_WINDOWED_COLS: u64 = 255;

// Sampling.

/// Logits per piece of a sampled row on GPUs: 16 per lane of 256 per pass, and pieces enough
/// for every multiprocessor from a row of 2^19.
/// Measured: docs/tuning.md#sample_piece_gpu.
pub(crate) const SAMPLE_PIECE_GPU: u64 = 4096;

/// Logits per piece of a sampled row on CPU adapters: every workgroup costs lavapipe tens of
/// microseconds even where its stage has nothing to do, so few pieces; two (a thread each)
/// from rows of 65537.
/// Measured: docs/tuning.md#sample_piece_cpu.
pub(crate) const SAMPLE_PIECE_CPU: u64 = 65536;

/// Vocabulary-parallel partial states on GPUs: batches of at most this many rows cut each
/// shard's rows into pieces over many workgroups (a workgroup per row leaves most of a GPU
/// idle for a few rows), merged by a second dispatch.
/// Measured: docs/tuning.md#vocab_split_max_rows.
pub(crate) const VOCAB_SPLIT_MAX_ROWS: u64 = 64;

// Batch-invariant mode (src/plan.rs, `invariant_plan`): every choice by the row length alone.

/// Logits per split-row piece of a batch-invariant row on GPUs: every row longer than one
/// piece is cut, so that a single row still spreads over the GPU, and many rows pay only the
/// pieces' partial states (8 bytes per piece).
/// Measured: docs/tuning.md#invariant_piece_cols.
pub(crate) const INVARIANT_PIECE_COLS_GPU: u64 = 4096;

/// Logits per split-row piece of a batch-invariant row on CPU adapters: the rows the usual
/// plan cuts (`SPLIT_MIN_COLS_CPU`).
/// Measured: docs/tuning.md#invariant_piece_cols.
pub(crate) const INVARIANT_PIECE_COLS_CPU: u64 = SPLIT_MIN_COLS_CPU;

/// Logits per piece of a vocabulary-parallel partial state where rows are cut (see
/// `VOCAB_SPLIT_MAX_ROWS`), as the sampling kernel's pieces on GPUs.
/// Measured: docs/tuning.md#vocab_piece_gpu.
pub(crate) const VOCAB_PIECE_GPU: u64 = 4096;

/// Most pieces per row of a vocabulary-parallel partial state.
/// Measured: docs/tuning.md#max_vocab_pieces.
pub(crate) const MAX_VOCAB_PIECES: u64 = 256;

/// Most pieces of one sampled row: each piece's partial record is 1 KiB of scratch, and a row
/// stage reads its row's records.
/// Measured: docs/tuning.md#max_sample_pieces.
pub(crate) const MAX_SAMPLE_PIECES: u64 = 4096;

/// Bytes of scratch one sampling dispatch uses at most (rows' states, partial records and
/// candidates); longer batches go in several dispatches of rows.
/// Measured: docs/tuning.md#sample_scratch_bytes.
pub(crate) const SAMPLE_SCRATCH_BYTES: u64 = 32 << 20;

// Limits of the adapters and the scratch.

/// Most iterations of one invocation's loop on CPU adapters: half of the 65535 after which Mesa
/// ends a loop.
/// Measured: docs/tuning.md#max_lane_iterations.
pub(crate) const MAX_LANE_ITERATIONS: u64 = 32_768;

/// Most split-row partial states one forward dispatch uses (`FORWARD_PARTIAL_BYTES` each in
/// src/shader/spec.rs: 16 MiB of scratch).
/// Measured: docs/tuning.md#max_split_partials.
pub(crate) const MAX_SPLIT_PARTIALS: u64 = 1 << 20;
