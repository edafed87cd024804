//! The cache keys: everything that selects a distinct compiled pipeline (the bindings each
//! declares are in src/shader/spec.rs).

use crate::dtype::Storage;
use crate::options::Forward;

/// How the forward kernel lays work out: the variants of `src/plan.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Layout {
    /// Invocations per row: a power of two dividing the workgroup (with `subgroup_rows`, also
    /// the subgroup size); 1 for a row per lane, which merges nothing.
    pub lanes: u32,
    /// Row reductions with subgroup operations (needs SUBGROUP).
    pub subgroups: bool,
    /// With `subgroups`: each row takes `lanes` invocations of one subgroup.
    pub subgroup_rows: bool,
    /// Blocks of 8 logits each lane holds in registers (row-resident); 0 for online.
    pub resident_blocks: u32,
    /// Split-row: `partials` and `finish` entry points and a scratch binding.
    pub split: bool,
    /// Packed rows (a row per lane on CPU adapters): the row length, every lane taking as
    /// many whole rows as make a run of blocks (`shader::packed_rows`); 0 otherwise.
    pub packed_cols: u32,
    /// Lanes fold the row's columns in their own order rather than the binding's blocks
    /// (`COLUMNS`, batch-invariant mode: online and split-row only).
    pub columns: bool,
}

impl Layout {
    /// Rows each lane takes where it packs them (`packed_cols > 0`).
    pub(crate) fn packed_rows(&self) -> Option<u32> {
        (self.packed_cols > 0)
            .then(|| super::packed_rows(self.packed_cols as usize))
            .flatten()
    }
}

/// Everything that selects a distinct forward pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct KernelKey {
    pub op: Forward,
    pub input: Storage,
    /// `None` for logsumexp, which writes no `[rows, cols]` output.
    pub output: Option<Storage>,
    pub in_place: bool,
    pub lse: bool,
    /// One contiguous chunk per invocation (CPU adapters) rather than a strided loop.
    pub contiguous: bool,
    /// Workgroup size, a power of two.
    pub workgroup: u32,
    /// The variant's layout.
    pub layout: Layout,
    /// The input sits at the same offset modulo 8 elements as the output, so blocks load
    /// as vectors.
    pub aligned: bool,
    /// f16 conversions by WGSL's builtins (`Engine::half_builtins`).
    pub half_builtins: bool,
    /// More rows than one dimension of a dispatch holds: workgroups loop over them (see
    /// `ROW_LOOP` in the kernels); otherwise one per workgroup, without a loop.
    pub row_loop: bool,
    /// The vector views hold 64-bit words (SHADER_INT64), see `vector_view`.
    pub wide_words: bool,
}

/// The entry points of the forward and backward modules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SplitEntry {
    /// Every variant but split-row: `main`.
    Main,
    /// Split-row, first dispatch.
    Partials,
    /// Split-row, second dispatch.
    Finish,
}

/// The kernels of the cross-entropy module, one pipeline each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CeEntry {
    /// One workgroup: the mean's denominator and the first invalid target.
    Prepare,
    /// One workgroup per row: loss, logsumexp and gradient.
    Main,
    /// One workgroup: the reduced loss.
    Reduce,
    /// Split-row, first pass: each piece's partial state.
    Partials,
    /// Split-row, second pass: each row's loss and each piece's gradients.
    Finish,
}

/// Variant of the cross-entropy module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CeKey {
    pub input: Storage,
    /// Storage of the gradient, where one is written.
    pub grad: Option<Storage>,
    /// The gradient overwrites the logits.
    pub in_place: bool,
    pub weight: bool,
    pub contiguous: bool,
    pub workgroup: u32,
    /// f16 conversions by WGSL's builtins (`Engine::half_builtins`).
    pub half_builtins: bool,
    /// More rows than one dimension of a dispatch holds: workgroups loop over them (see
    /// `ROW_LOOP` in the kernels); otherwise one per workgroup, without a loop.
    pub row_loop: bool,
    /// Lanes own blocks of 8 of the gradient (contiguous runs, or strided without
    /// `contiguous`), loaded and stored as vectors: with a gradient at the logits' offset
    /// modulo 8.
    pub blocks: bool,
    /// Batch-invariant mode: the row's sums by its columns in their order (`COLUMNS`),
    /// whatever `blocks`, which then serves the gradient's stores only.
    pub columns: bool,
    /// The vector views hold 64-bit words (see `vector_view`).
    pub wide_words: bool,
    /// Short rows: `main` gives each row a lane of its own (`Engine::row_per_lane` in
    /// src/training/mod.rs), with `blocks` a run of rows that fill whole blocks.
    pub row_per_lane: bool,
    /// With `row_per_lane` and `blocks`: the row length whose runs are generated code
    /// (`packed_run`, unrolled or windowed, src/shader/training_tiles.rs); 0 for the loops.
    pub packed_cols: u32,
    /// Split-row: `partials` and `finish` entry points and a scratch binding.
    pub split: bool,
}

/// Workgroups the training kernels' `main` needs for `rows` rows: one per row, or with a
/// row per lane one per `workgroup` lanes, each taking a row, or with `blocks` a run of
/// `run` rows (`row_lane_groups` in shaders/row_runs.wgsl).
fn training_groups(row_per_lane: bool, blocks: bool, workgroup: u32, rows: u64, run: u64) -> u64 {
    if !row_per_lane {
        return rows;
    }
    let lanes = if blocks { rows.div_ceil(run) } else { rows };
    lanes.div_ceil(u64::from(workgroup))
}

impl CeKey {
    /// Workgroups `main` needs for `rows` rows in runs of `run` (see `training_groups`).
    pub(crate) fn groups(&self, rows: u64, run: u64) -> u64 {
        training_groups(self.row_per_lane, self.blocks, self.workgroup, rows, run)
    }
}

/// Variant of the backward module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BackwardKey {
    /// 0: softmax backward, 1: log_softmax backward.
    pub log: bool,
    /// Storage of `y` and `dy`.
    pub input: Storage,
    /// Storage of the gradient.
    pub output: Storage,
    pub contiguous: bool,
    pub workgroup: u32,
    /// f16 conversions by WGSL's builtins (`Engine::half_builtins`).
    pub half_builtins: bool,
    /// More rows than one dimension of a dispatch holds: workgroups loop over them (see
    /// `ROW_LOOP` in the kernels); otherwise one per workgroup, without a loop.
    pub row_loop: bool,
    /// Lanes own blocks of 8 (contiguous runs, or strided without `contiguous`), loaded and
    /// stored as vectors as in the forward kernels: with `y`, `dy` and `dx` at the same
    /// offset modulo 8.
    pub blocks: bool,
    /// Batch-invariant mode: the row's sum by its columns in their order (`COLUMNS`),
    /// whatever `blocks`, which then serves the outputs' stores only.
    pub columns: bool,
    /// The vector views hold 64-bit words (see `vector_view`).
    pub wide_words: bool,
    /// Short rows: each takes a lane of its own (`Engine::row_per_lane` in
    /// src/training/mod.rs), with `blocks` a run of rows that fill whole blocks.
    pub row_per_lane: bool,
    /// With `row_per_lane` and `blocks`: the row length whose runs are generated code
    /// (`packed_run`, unrolled or windowed, src/shader/training_tiles.rs); 0 for the loops.
    pub packed_cols: u32,
    /// Split-row: `partials` and `finish` entry points and a scratch binding.
    pub split: bool,
}

impl BackwardKey {
    /// Workgroups for `rows` rows in runs of `run` (see `training_groups`).
    pub(crate) fn groups(&self, rows: u64, run: u64) -> u64 {
        training_groups(self.row_per_lane, self.blocks, self.workgroup, rows, run)
    }
}

/// Variant of the copy kernel (the benchmarks' roofline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CopyKey {
    pub contiguous: bool,
    pub workgroup: u32,
    /// The word each load and store moves.
    pub word: super::CopyWord,
    /// A copy, or one of the exp ceilings and its elements.
    pub kind: super::CopyKind,
    /// F16 ceilings: the f16 builtins are exact here (`Engine::half_builtins`), so that
    /// the ceiling converts as the kernels do (false otherwise).
    pub half_builtins: bool,
}

/// Variant of the sampling kernel (shaders/sample.wgsl): one workgroup per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SampleKey {
    pub input: Storage,
    /// Workgroup size, a power of two.
    pub workgroup: u32,
    /// f16 conversions by WGSL's builtins (`Engine::half_builtins`).
    pub half_builtins: bool,
    /// Each row's `u` from Philox4x32-10 of its offset, rather than from the caller.
    pub philox: bool,
    /// The row's filtered, renormalised probabilities (f32) instead of a token.
    pub filtered: bool,
}

/// The entry points of the vocabulary-parallel module (shaders/vocab_parallel.wgsl), one
/// pipeline and one set of bindings each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum VocabEntry {
    /// A workgroup per row: the shard's partial state of each row.
    Partial,
    /// A lane per row: several states per row merged in order.
    Merge,
    /// A lane per output pair: softmax or log-softmax of the shard's columns, and the rows'
    /// logsumexp.
    Forward,
    /// A lane per row: each row's loss and logsumexp from its merged state.
    CeRows,
    /// One workgroup: the mean's denominator, the first invalid row and the reduced loss.
    CeReduce,
    /// A lane per output pair: the cross-entropy gradient of the shard's columns.
    CeGrad,
}

impl VocabEntry {
    /// The entry point's WGSL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            VocabEntry::Partial => "partial",
            VocabEntry::Merge => "merge_rows",
            VocabEntry::Forward => "forward",
            VocabEntry::CeRows => "ce_rows",
            VocabEntry::CeReduce => "ce_reduce",
            VocabEntry::CeGrad => "ce_grad",
        }
    }
}

/// Variant of the vocabulary-parallel module: one entry point and the bindings it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct VocabKey {
    pub entry: VocabEntry,
    /// Storage of the logits, for the entries that read them.
    pub input: Option<Storage>,
    /// Storage of the output (probabilities, log-probabilities or gradient).
    pub output: Option<Storage>,
    /// The gradient overwrites the logits.
    pub in_place: bool,
    /// Cross-entropy: the partial state holds the target and the smoothing sums.
    pub ce: bool,
    /// Class weights are bound.
    pub weight: bool,
    /// Forward: the rows' logsumexp is written.
    pub lse: bool,
    /// Lanes take contiguous runs (CPU adapters) rather than strided items.
    pub contiguous: bool,
    pub workgroup: u32,
    /// f16 conversions by WGSL's builtins (`Engine::half_builtins`).
    pub half_builtins: bool,
}

/// Everything that selects a distinct compiled pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PipelineKey {
    Forward(KernelKey, SplitEntry),
    CrossEntropy(CeKey, CeEntry),
    Backward(BackwardKey, SplitEntry),
    /// The bench's copy kernel, which only the `cli` feature builds pipelines of.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    Copy(CopyKey),
    Sample(SampleKey),
    /// Vocabulary-parallel operations (src/vocab_parallel/).
    Vocab(VocabKey),
}

impl PipelineKey {
    /// The entry point to compile.
    pub(crate) fn entry_point(&self) -> &'static str {
        match self {
            PipelineKey::CrossEntropy(_, CeEntry::Prepare) => "prepare",
            PipelineKey::CrossEntropy(_, CeEntry::Reduce) => "reduce",
            PipelineKey::Forward(_, SplitEntry::Partials)
            | PipelineKey::Backward(_, SplitEntry::Partials)
            | PipelineKey::CrossEntropy(_, CeEntry::Partials) => "partials",
            PipelineKey::Forward(_, SplitEntry::Finish)
            | PipelineKey::Backward(_, SplitEntry::Finish)
            | PipelineKey::CrossEntropy(_, CeEntry::Finish) => "finish",
            PipelineKey::Vocab(k) => k.entry.name(),
            _ => "main",
        }
    }

    /// Every entry point of the key's module (the family's; `entry_point` is the one this
    /// pipeline runs).
    pub(crate) fn module_entry_points(&self) -> &'static [&'static str] {
        match self {
            PipelineKey::Forward(..) | PipelineKey::Backward(..) => &["main", "partials", "finish"],
            PipelineKey::CrossEntropy(..) => &["prepare", "main", "reduce", "partials", "finish"],
            PipelineKey::Copy(_) | PipelineKey::Sample(_) => &["main"],
            // Each entry point has a module of its own (its bindings differ).
            PipelineKey::Vocab(k) => match k.entry {
                VocabEntry::Partial => &["partial"],
                VocabEntry::Merge => &["merge_rows"],
                VocabEntry::Forward => &["forward"],
                VocabEntry::CeRows => &["ce_rows"],
                VocabEntry::CeReduce => &["ce_reduce"],
                VocabEntry::CeGrad => &["ce_grad"],
            },
        }
    }

    /// Whether the kernel may read workgroup memory it has not written, so that it needs
    /// wgpu to zero it first. The sampling kernel writes all it reads, and many of its
    /// workgroups return at once, so zeroing its 8 to 13 KiB would be work for nothing
    /// (WebGPU in a browser zeroes it regardless).
    pub(crate) fn reads_workgroup_memory_unwritten(&self) -> bool {
        !matches!(self, PipelineKey::Sample(_))
    }

    /// The complete WGSL module.
    pub(crate) fn source(&self) -> String {
        self.source_in(super::Dialect::of_target())
    }

    /// The complete WGSL module, written for `dialect`.
    pub(crate) fn source_in(&self, dialect: super::Dialect) -> String {
        match self {
            PipelineKey::Forward(k, _) => super::source(k, dialect),
            PipelineKey::CrossEntropy(k, _) => super::cross_entropy_source(k),
            PipelineKey::Backward(k, _) => super::backward_source(k),
            PipelineKey::Copy(k) => super::copy_source(k),
            PipelineKey::Sample(k) => super::sample_source(k, dialect),
            PipelineKey::Vocab(k) => super::vocab_source(k),
        }
    }
}
