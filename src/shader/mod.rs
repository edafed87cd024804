//! Assembles the WGSL of a kernel from the files in `shaders/`.
//!
//! A module is the concatenation of: a header of constants, the bindings with their raw
//! accessors (generated in `views` from the same table that builds the bind-group layout,
//! so the two cannot disagree), the input dtype's `load_x`, the output dtype's
//! `store_pair`, the shared pieces and the kernel. Constants are plain `const`
//! declarations, so every variant is a complete module that naga validates on its own.
//!
//! - `keys`: what selects a distinct pipeline (the cache keys) and the bindings each declares.
//! - `views`: the bindings' WGSL declarations and accessors (raw, vector views, blocks).
//! - this file: the modules of each kernel family from those pieces.
//! - `catalog`: every module the crate can build, for validation without an adapter.

mod catalog;
mod copy_kind;
mod keys;
mod packed;
mod spec;
mod training_tiles;
mod views;

pub use catalog::{all_modules, all_sources};
pub use copy_kind::{CopyKind, CopyWord};
pub(crate) use keys::{
    BackwardKey, CeEntry, CeKey, CopyKey, KernelKey, Layout, PipelineKey, SampleKey, SplitEntry,
    VocabEntry, VocabKey,
};
pub(crate) use packed::{packed_held_blocks, packed_rows, rows_filling_blocks};
pub(crate) use training_tiles::packs_training_rows;
pub(crate) use views::view_bytes;

use crate::dtype::Storage;
use crate::options::Forward;
use crate::tuning::MAX_UNROLLED_BLOCKS;
use spec::declarations;
pub(crate) use spec::{
    Access, BACKWARD_PARTIAL_BYTES, CE_PARTIAL_BYTES, FORWARD_PARTIAL_BYTES, VOCAB_STATE_BYTES,
};
use views::{
    bindings, block_loader, block_words_source, elem_loader, in_place_view, slot_type,
    store_block_source, vector_view, xy_bindings,
};

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const SAMPLE: &str = include_str!("../../shaders/sample.wgsl");
const VOCAB_PARALLEL: &str = include_str!("../../shaders/vocab_parallel.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../../shaders/reduce_workgroup.wgsl");
const REDUCE_ROW_TREE: &str = include_str!("../../shaders/reduce_row_tree.wgsl");
const REDUCE_ROW_SUBGROUP: &str = include_str!("../../shaders/reduce_row_subgroup.wgsl");
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const CROSS_ENTROPY: &str = include_str!("../../shaders/cross_entropy.wgsl");
const BACKWARD: &str = include_str!("../../shaders/backward.wgsl");
const ROW_RUNS: &str = include_str!("../../shaders/row_runs.wgsl");
const SPLIT_ROW: &str = include_str!("../../shaders/split_row.wgsl");
const COPY: &str = include_str!("../../shaders/copy.wgsl");
const HALF_BITS: &str = include_str!("../../shaders/io/half_bits.wgsl");
const STORE_WORD: &str = include_str!("../../shaders/io/store_word.wgsl");

/// The WGSL a module is written for. They differ only in what the compilers accept of a
/// module with subgroup operations: WebGPU wants `enable subgroups;`, which naga (wgpu 30's
/// native backends) refuses as not yet implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// For wgpu's native backends (naga).
    Native,
    /// For WebGPU in a browser (the WGSL specification, as Chromium's Tint implements it).
    WebGpu,
}

impl Dialect {
    /// The dialect of the target the crate is built for.
    pub(crate) const fn of_target() -> Dialect {
        if cfg!(target_arch = "wasm32") {
            Dialect::WebGpu
        } else {
            Dialect::Native
        }
    }
}

/// Binding slots, shared by every kernel's layout.
/// Logits per block: lanes own blocks of 8, aligned in the output binding, loaded and
/// stored as two `vec4<f32>` (f32) or one `vec4<u32>` of packed pairs (16-bit types). Every
/// module's header declares it as the WGSL constant `BLOCK`, which the kernels' block
/// arithmetic uses (`struct Block` is its two `vec4<f32>`).
pub(crate) const BLOCK: u64 = 8;

pub(crate) mod slot {
    /// The uniform parameters.
    pub const PARAMS: u32 = 0;
    /// The input logits (absent when in place: the kernel reads `y`).
    pub const X: u32 = 1;
    /// The output (absent for logsumexp).
    pub const Y: u32 = 2;
    /// Per-row logsumexp (f32).
    pub const LSE: u32 = 3;
    /// Cross-entropy targets (i32), or the upstream gradient `dy` of the backward kernels.
    pub const TARGETS_OR_DY: u32 = 4;
    /// Cross-entropy class weights (f32).
    pub const WEIGHT: u32 = 5;
    /// Cross-entropy per-row loss (f32).
    pub const LOSS: u32 = 6;
    /// Cross-entropy scratch: denominator, first invalid row, reduced loss.
    pub const META: u32 = 7;
    /// Split-row scratch: one partial (max, sum, flags) state per piece of a row.
    pub const PARTIALS: u32 = 8;
    /// The input again, as vectors (`vector_view`: the block loads).
    pub const X_VEC: u32 = 9;
    /// The output again, as vectors (`vector_view`: the block stores).
    pub const Y_VEC: u32 = 10;
    /// The backward kernels' `dy` again, as vectors (their block loads).
    pub const DY_VEC: u32 = 11;
    /// Sampling: each row's parameters.
    pub const SAMPLE_PARAMS: u32 = 12;
    /// Sampling: each row's uniform or Philox offset.
    pub const UNIFORMS: u32 = 13;
    /// Sampling: each row's token, status, log-probability and kept count.
    pub const RESULTS: u32 = 14;
    /// Vocabulary-parallel: the merged partial states.
    pub const MERGED: u32 = 15;
}

/// The constants every kernel starts with, after the extensions it enables (`subgroups`:
/// its subgroup builtins, which WebGPU wants enabled). `row_loop`: more rows (or groups of rows) than
/// one dimension of a dispatch holds, so that workgroups take them in turns.
fn header(
    workgroup: u32,
    contiguous: bool,
    row_loop: bool,
    storages: &[Option<Storage>],
    subgroups: bool,
    dialect: Dialect,
) -> String {
    let native_f16 = storages.contains(&Some(Storage::F16Native));
    format!(
        "{f16}{subgroups}const WG: u32 = {workgroup}u;\nconst BLOCK: u32 = {BLOCK}u;\n\
         const CONTIGUOUS: bool = {contiguous};\nconst ROW_LOOP: bool = {row_loop};\n",
        f16 = if native_f16 { "enable f16;\n" } else { "" },
        // The subgroup operations run where the analysis cannot see that control flow is
        // uniform across the subgroup (behind tests of `Ids` members, which it takes as one
        // value with the lane's index), which WGSL lets a module say it knows.
        subgroups = match (subgroups, dialect) {
            (false, _) => "",
            (true, Dialect::Native) => "diagnostic(off, subgroup_uniformity);\n",
            (true, Dialect::WebGpu) => "enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n",
        },
    )
}

/// The cross-entropy module: logits as `x`, the gradient as `y`.
pub(super) fn cross_entropy_source(key: &CeKey) -> String {
    use std::fmt::Write;
    let mut s = header(
        key.workgroup,
        key.contiguous,
        key.row_loop,
        &[Some(key.input), key.grad],
        false,
        Dialect::Native,
    );
    s.push_str(ids_struct(false));
    let _ = writeln!(s, "const HAS_GRAD: bool = {};", key.grad.is_some());
    let _ = writeln!(s, "const BLOCKS: bool = {};", key.blocks);
    let _ = writeln!(s, "const COLUMNS: bool = {};", key.columns);
    let _ = writeln!(s, "const ROW_PER_LANE: bool = {};", key.row_per_lane);
    let _ = writeln!(s, "const PACKED: bool = {};", key.packed_cols > 0);
    s += &declarations(&key.bindings());
    s += &xy_bindings(key.input, key.grad, key.in_place, key.half_builtins, false);
    if key.blocks {
        match key.grad {
            Some(grad) => {
                s += &vector_view("y_vec", grad, key.wide_words, false, key.contiguous);
                s.push_str(store_block_source(grad));
            }
            None => s.push_str("fn store_block(b: u32, v: Block) {}\n"),
        }
        if key.in_place {
            s += &in_place_view(key.input);
        } else {
            s += &vector_view("x_vec", key.input, key.wide_words, true, false);
        }
        s.push_str(block_words_source(key.input));
        s += &block_loader("load_block", "x_vec", key.input);
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n\
             fn store_block(b: u32, v: Block) {}\n",
        );
    }
    if key.weight {
        let _ = writeln!(
            s,
            "const WEIGHTED: bool = true;\n\
             fn class_weight(j: u32) -> f32 {{ return weight_buf[j]; }}"
        );
    } else {
        s.push_str(
            "const WEIGHTED: bool = false;\n\
             fn class_weight(j: u32) -> f32 { return 1.0; }\n",
        );
    }
    // Split-row: `CE_PARTIAL_BYTES` per piece, words of 16 bytes: [m, s, flags, target
    // logit] and [sum of w_j (m - z_j), sum of w_j] (`partials` in shaders/cross_entropy.wgsl).
    if key.split {
        let _ = writeln!(
            s,
            "const PARTIAL_WORDS: u32 = {}u;\n\
             fn store_ce_partial(i: u32, st: Online, smoothing_sums: vec2<f32>, z_t: f32) {{\n    \
             partials_buf[PARTIAL_WORDS * i] = vec4<u32>(bitcast<u32>(st.m), bitcast<u32>(st.s), st.flags,\n        \
             bitcast<u32>(z_t));\n    \
             partials_buf[PARTIAL_WORDS * i + 1u] = vec4<u32>(bitcast<vec2<u32>>(smoothing_sums), 0u, 0u);\n}}\n\
             fn load_partial(i: u32) -> Online {{\n    \
             let p = partials_buf[PARTIAL_WORDS * i];\n    \
             return Online(bitcast<f32>(p.x), bitcast<f32>(p.y), p.z);\n}}\n\
             fn load_partial_target(i: u32) -> f32 {{ return bitcast<f32>(partials_buf[PARTIAL_WORDS * i].w); }}\n\
             fn load_partial_smooth(i: u32) -> vec2<f32> {{\n    \
             return bitcast<vec2<f32>>(partials_buf[PARTIAL_WORDS * i + 1u].xy);\n}}",
            CE_PARTIAL_BYTES / 16
        );
    } else {
        s.push_str(
            "fn store_ce_partial(i: u32, st: Online, smoothing_sums: vec2<f32>, z_t: f32) {}\n\
             fn load_partial(i: u32) -> Online { return online_empty(); }\n\
             fn load_partial_target(i: u32) -> f32 { return 0.0; }\n\
             fn load_partial_smooth(i: u32) -> vec2<f32> { return vec2<f32>(0.0); }\n",
        );
    }
    let packed = packed_run(key.packed_cols, |cols| {
        training_tiles::ce_source(cols, key.grad.is_some())
    });
    [
        s.as_str(),
        COMMON,
        REDUCE_WORKGROUP,
        ROW_RUNS,
        CROSS_ENTROPY,
        SPLIT_ROW,
        &packed,
    ]
    .join("\n")
}

/// A training kernel's `packed_run` for rows of `packed_cols` (`source` generates it), or
/// an empty one where the runs loop (`packed_cols` 0).
fn packed_run(packed_cols: u32, source: impl FnOnce(u32) -> String) -> String {
    if packed_cols > 0 {
        source(packed_cols)
    } else {
        "fn packed_run(row0: u32) {}\n".into()
    }
}

/// The backward module: `y` as `x`, the gradient as `y`, `dy` through `load_dy` (the input
/// dtype's load prelude with its names changed).
pub(super) fn backward_source(key: &BackwardKey) -> String {
    use std::fmt::Write;
    let mut s = header(
        key.workgroup,
        key.contiguous,
        key.row_loop,
        &[Some(key.input), Some(key.output)],
        false,
        Dialect::Native,
    );
    s.push_str(ids_struct(false));
    let _ = writeln!(s, "const LOG: bool = {};", key.log);
    s += &declarations(&key.bindings());
    s += &xy_bindings(key.input, Some(key.output), false, key.half_builtins, false);
    let _ = writeln!(
        s,
        "fn dy_raw(i: u32) -> {t} {{ return dy_buf[i]; }}",
        t = slot_type(key.input)
    );
    s += &elem_loader("load_dy", "dy_raw");
    let _ = writeln!(s, "const BLOCKS: bool = {};", key.blocks);
    let _ = writeln!(s, "const COLUMNS: bool = {};", key.columns);
    let _ = writeln!(s, "const ROW_PER_LANE: bool = {};", key.row_per_lane);
    let _ = writeln!(s, "const PACKED: bool = {};", key.packed_cols > 0);
    if key.split {
        let _ = writeln!(
            s,
            "fn store_partial_sum(i: u32, v: f32) {{ partials_buf[i] = v; }}\n\
             fn load_partial_sum(i: u32) -> f32 {{ return partials_buf[i]; }}"
        );
    } else {
        s.push_str(
            "fn store_partial_sum(i: u32, v: f32) {}\n\
             fn load_partial_sum(i: u32) -> f32 { return 0.0; }\n",
        );
    }
    if key.blocks {
        s += &vector_view("x_vec", key.input, key.wide_words, true, false);
        s.push_str(block_words_source(key.input));
        s += &block_loader("load_block", "x_vec", key.input);
        s += &vector_view("dy_vec", key.input, key.wide_words, true, false);
        s += &block_loader("load_dy_block", "dy_vec", key.input);
        s += &vector_view("y_vec", key.output, key.wide_words, false, key.contiguous);
        s.push_str(store_block_source(key.output));
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n\
             fn load_dy_block(b: u32) -> Block { return load_block(b); }\n\
             fn store_block(b: u32, v: Block) {}\n",
        );
    }
    let packed = packed_run(key.packed_cols, |cols| {
        training_tiles::backward_source(cols, key.log)
    });
    [
        s.as_str(),
        COMMON,
        REDUCE_WORKGROUP,
        ROW_RUNS,
        BACKWARD,
        SPLIT_ROW,
        &packed,
    ]
    .join("\n")
}

/// The exp ceiling's arithmetic on the words of `key`: `word_exp(w)` (every element of a
/// word replaced by its exponential) and `word_exp_sum(w)` (their sum), built on
/// `quad_exp` and `quad_exp_sum` over 16 bytes. 16-bit elements widen and narrow as the
/// kernels' blocks do (shaders/io/load_block_*.wgsl, store_block_*.wgsl), the f16 output by
/// the narrowing of softmax probabilities (`UNIT_OUTPUT`), the least a kernel converts.
fn word_exp_source(key: &CopyKey) -> String {
    use crate::DType;
    let quad = match key.kind.element() {
        DType::F32 => "fn quad_exp(w: vec4<u32>) -> vec4<u32> {\n    \
             return bitcast<vec4<u32>>(exp(bitcast<vec4<f32>>(w)));\n}\n\
             fn quad_exp_sum(w: vec4<u32>) -> f32 {\n    \
             let e = exp(bitcast<vec4<f32>>(w));\n    \
             return (e.x + e.y) + (e.z + e.w);\n}\n"
            .to_string(),
        DType::F16 | DType::BF16 => {
            let (widen, narrow) = if key.kind.element() == DType::F16 {
                ("f16x2_to_f32(w)", "f16x2_bits(v)")
            } else {
                (
                    "vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u))",
                    "bf16_bits(v.x) | (bf16_bits(v.y) << 16u)",
                )
            };
            format!(
                "const HALF_BUILTINS: bool = {builtins};\nconst UNIT_OUTPUT: bool = true;\n\
                 {HALF_BITS}\n\
                 fn widen_pair(w: u32) -> vec2<f32> {{ return {widen}; }}\n\
                 fn narrow_pair(v: vec2<f32>) -> u32 {{ return {narrow}; }}\n\
                 fn quad_exp(w: vec4<u32>) -> vec4<u32> {{\n    \
                 return vec4<u32>(\n        \
                 narrow_pair(exp(widen_pair(w.x))), narrow_pair(exp(widen_pair(w.y))),\n        \
                 narrow_pair(exp(widen_pair(w.z))), narrow_pair(exp(widen_pair(w.w))),\n    \
                 );\n}}\n\
                 fn quad_exp_sum(w: vec4<u32>) -> f32 {{\n    \
                 let e = exp(vec4<f32>(widen_pair(w.x), widen_pair(w.y)))\n        \
                 + exp(vec4<f32>(widen_pair(w.z), widen_pair(w.w)));\n    \
                 return (e.x + e.y) + (e.z + e.w);\n}}\n",
                builtins = key.half_builtins,
            )
        }
    };
    let word = match key.word {
        CopyWord::Bytes16 => {
            "fn word_exp(w: Word) -> Word { return quad_exp(w); }\n\
             fn word_exp_sum(w: Word) -> f32 { return quad_exp_sum(w); }\n"
        }
        // The low and the high halves of the 64-bit components, 16 bytes each.
        CopyWord::Bytes32 => {
            "fn word_exp(w: Word) -> Word {\n    \
             let lo = vec4<u64>(quad_exp(vec4<u32>(w)));\n    \
             let hi = vec4<u64>(quad_exp(vec4<u32>(w >> vec4<u32>(32u))));\n    \
             return lo | (hi << vec4<u32>(32u));\n}\n\
             fn word_exp_sum(w: Word) -> f32 {\n    \
             return quad_exp_sum(vec4<u32>(w)) + quad_exp_sum(vec4<u32>(w >> vec4<u32>(32u)));\n}\n"
        }
    };
    quad + word
}

/// The copy module: words of 16 or 32 bytes from `src` to `dst`, copied or turned into
/// exponentials (`CopyKey::kind`).
pub(super) fn copy_source(key: &CopyKey) -> String {
    let bindings = format!(
        "alias Word = {word};\n\
         const COPY_PER_THREAD: u32 = {per}u;\n\
         const KIND: u32 = {kind}u;\n",
        word = key.word.wgsl_type(),
        per = key.word.per_thread(),
        kind = key.kind.index(),
    );
    [
        header(
            key.workgroup,
            key.contiguous,
            false,
            &[],
            false,
            Dialect::Native,
        )
        .as_str(),
        &bindings,
        &declarations(&key.bindings()),
        &word_exp_source(key),
        COPY,
    ]
    .join("\n")
}

/// The sampling module (shaders/sample.wgsl) over logits of `key.input`.
pub(super) fn sample_source(key: &SampleKey, dialect: Dialect) -> String {
    let mut s = header(
        key.workgroup,
        false,
        false,
        &[Some(key.input)],
        false,
        dialect,
    );
    s += &format!(
        "const PHILOX: bool = {};\nconst FILTERED: bool = {};\n",
        key.philox, key.filtered
    );
    s += &declarations(&key.bindings());
    s += &xy_bindings(key.input, None, false, key.half_builtins, false);
    if key.filtered {
        s.push_str(
            "fn row_uniform(row: u32) -> f32 { return 0.0; }\n\
             fn write_result(row: u32, token: u32, status: u32, logprob: f32, kept: u32) {}\n\
             fn store_prob(i: u32, v: f32) { y_buf[i] = v; }\n",
        );
    } else {
        // The caller's u, or Philox4x32-10 of the row's offset; the result record.
        s.push_str(
            "fn row_uniform(row: u32) -> f32 {\n    \
             let r = rand_buf[row];\n    \
             if (PHILOX) {\n        \
             let w = philox(vec4<u32>(r.x, r.y, 0u, 0u), vec2<u32>(params.seed_lo, params.seed_hi));\n        \
             return f32(w.x >> 8u) / 16777216.0;\n    }\n    \
             return bitcast<f32>(r.x);\n}\n\
             fn write_result(row: u32, token: u32, status: u32, logprob: f32, kept: u32) {\n    \
             out_buf[row] = vec4<u32>(token, status, bitcast<u32>(logprob), kept);\n}\n\
             fn store_prob(i: u32, v: f32) {}\n",
        );
    }
    [s.as_str(), COMMON, SAMPLE].join("\n")
}

/// The vocabulary-parallel module (shaders/vocab_parallel.wgsl) for one entry point: the
/// accessors of the bindings it has, stubs for those it lacks.
pub(super) fn vocab_source(key: &VocabKey) -> String {
    use std::fmt::Write;
    let bindings = key.bindings();
    let has = |slot: u32| bindings.iter().any(|b| b.slot == slot);
    let mut s = header(
        key.workgroup,
        key.contiguous,
        false,
        &[key.input, key.output],
        false,
        Dialect::Native,
    );
    let _ = writeln!(
        s,
        "const CE: bool = {};\nconst HAS_OUTPUT: bool = {};\nconst WEIGHTED: bool = {};",
        key.ce,
        key.output.is_some(),
        key.weight && has(slot::WEIGHT)
    );
    s += &declarations(&bindings);
    match key.input {
        Some(input) => s += &xy_bindings(input, key.output, key.in_place, key.half_builtins, false),
        None => s.push_str(
            "fn load_x(i: u32) -> f32 { return 0.0; }\n\
             fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {}\n",
        ),
    }
    match key.output.filter(|_| key.blocks()) {
        Some(out) => {
            s += &vector_view("y_vec", out, false, false, true);
            s.push_str(store_block_source(out));
        }
        None => s.push_str("fn store_block(b: u32, v: Block) {}\n"),
    }
    // (slot, accessors where bound, stubs where not)
    let accessors: [(u32, &str, &str); 7] = [
        (
            slot::TARGETS_OR_DY,
            "fn target_of(r: u32) -> i32 { return targets[r]; }",
            "fn target_of(r: u32) -> i32 { return params.ignore_index; }",
        ),
        (
            slot::WEIGHT,
            "fn class_weight(j: u32) -> f32 { return weight_buf[j]; }",
            "fn class_weight(j: u32) -> f32 { return 1.0; }",
        ),
        (
            slot::LSE,
            "fn store_lse(r: u32, v: f32) { lse_buf[r] = v; }",
            "fn store_lse(r: u32, v: f32) {}",
        ),
        (
            slot::LOSS,
            if key.entry == VocabEntry::CeRows {
                "fn store_loss(r: u32, v: f32) { loss_buf[r] = v; }\n\
                 fn load_loss(r: u32) -> f32 { return 0.0; }"
            } else {
                "fn store_loss(r: u32, v: f32) {}\n\
                 fn load_loss(r: u32) -> f32 { return loss_buf[r]; }"
            },
            "fn store_loss(r: u32, v: f32) {}\nfn load_loss(r: u32) -> f32 { return 0.0; }",
        ),
        (
            slot::META,
            if key.entry == VocabEntry::CeReduce {
                "fn meta_store(i: u32, v: u32) { meta_buf[i] = v; }\n\
                 fn meta_load(i: u32) -> u32 { return meta_buf[i]; }"
            } else {
                "fn meta_store(i: u32, v: u32) {}\n\
                 fn meta_load(i: u32) -> u32 { return meta_buf[i]; }"
            },
            "fn meta_store(i: u32, v: u32) {}\nfn meta_load(i: u32) -> u32 { return 0u; }",
        ),
        (
            slot::PARTIALS,
            if key.entry == VocabEntry::Partial {
                "fn state_store(i: u32, v: u32) { state_buf[i] = v; }\n\
                 fn state_load(i: u32) -> u32 { return state_buf[i]; }"
            } else {
                "fn state_store(i: u32, v: u32) {}\n\
                 fn state_load(i: u32) -> u32 { return state_buf[i]; }"
            },
            "fn state_store(i: u32, v: u32) {}\nfn state_load(i: u32) -> u32 { return 0u; }",
        ),
        (
            slot::MERGED,
            if key.entry == VocabEntry::Merge {
                "fn merged_store(i: u32, v: u32) { merged_buf[i] = v; }\n\
                 fn merged_load(i: u32) -> u32 { return merged_buf[i]; }"
            } else {
                "fn merged_store(i: u32, v: u32) {}\n\
                 fn merged_load(i: u32) -> u32 { return merged_buf[i]; }"
            },
            "fn merged_store(i: u32, v: u32) {}\nfn merged_load(i: u32) -> u32 { return 0u; }",
        ),
    ];
    for (slot, bound, stub) in accessors {
        s.push_str(if has(slot) { bound } else { stub });
        s.push('\n');
    }
    [s.as_str(), COMMON, REDUCE_WORKGROUP, VOCAB_PARALLEL].join("\n")
}

fn op_index(op: Forward) -> u32 {
    match op {
        Forward::Softmax => 0,
        Forward::LogSoftmax => 1,
        Forward::LogSumExp => 2,
    }
}

/// The entry points' builtins of the lane: with the subgroup ones where the kernel uses
/// subgroups (the workgroup's id and count are parameters of their own, see
/// shaders/split_row.wgsl).
fn ids_struct(subgroups: bool) -> &'static str {
    if subgroups {
        "struct Ids {\n    @builtin(local_invocation_index) lid: u32,\n    \
         @builtin(subgroup_id) sg_id: u32,\n    \
         @builtin(num_subgroups) n_sg: u32,\n    \
         @builtin(subgroup_invocation_id) sg_lane: u32,\n    \
         @builtin(subgroup_size) sg_size: u32,\n}\n"
    } else {
        "struct Ids {\n    @builtin(local_invocation_index) lid: u32,\n}\n"
    }
}

/// The complete WGSL module of a forward kernel.
pub(crate) fn source(key: &KernelKey, dialect: Dialect) -> String {
    let l = &key.layout;
    let header = format!(
        "{}const OP: u32 = {}u;\nconst HAS_LSE: bool = {};\nconst LANES: u32 = {}u;\n\
         const RESIDENT: bool = {};\nconst RESIDENT_BLOCKS: u32 = {}u;\n\
         const SUBGROUP_ROWS: bool = {};\nconst ALIGNED: bool = {};\n\
         const PACKED_COLS: u32 = {}u;\nconst PACKED_ROWS: u32 = {}u;\n\
         const COLUMNS: bool = {};\n{}",
        header(
            key.workgroup,
            key.contiguous,
            key.row_loop,
            &[Some(key.input), key.output],
            l.subgroups,
            dialect,
        ),
        op_index(key.op),
        key.lse,
        l.lanes,
        l.resident_blocks > 0,
        l.resident_blocks.max(1),
        l.subgroup_rows,
        key.aligned,
        l.packed_cols,
        l.packed_rows().unwrap_or(0),
        l.columns,
        ids_struct(l.subgroups),
    );
    let reduce = if l.subgroups {
        REDUCE_ROW_SUBGROUP
    } else {
        REDUCE_ROW_TREE
    };
    // Strided kernels that loop over rows keep the loops: on an H100 the unrolled resident
    // log-softmax of 70000 rows of 24 logits (1 block per lane, rows in turns) wrote NaN
    // for every row's logsumexp, the loops did not, and neither form failed elsewhere
    // (lavapipe and llvmpipe pass both).
    let unrollable = key.contiguous || !key.row_loop;
    let unrolled =
        (unrollable && l.resident_blocks > 0 && l.resident_blocks <= MAX_UNROLLED_BLOCKS)
            .then_some(l.resident_blocks);
    let held = held_passes(unrolled);
    let packed = if l.packed_cols > 0 {
        packed::packed_tile_source(l.packed_cols)
    } else {
        "fn packed_tile(row0: u32) {}\n".into()
    };
    [
        header.as_str(),
        &(declarations(&key.bindings()) + &bindings(key)),
        COMMON,
        reduce,
        SOFTMAX,
        SPLIT_ROW,
        &held,
        &packed,
    ]
    .join("\n")
}

/// The resident variant's three passes over a lane's held blocks (see `resident_row` in
/// shaders/softmax.wgsl): loops, or with `unrolled = Some(n)` one statement for each of the
/// `n` blocks with a constant index, which the compilers keep in registers (Mesa's CPU
/// drivers and the H100's both left a loop-indexed array in memory; see
/// `RESIDENT_BLOCKS_GPU` and `MULTI_ROW_AUTO_BLOCKS_CPU` in src/plan.rs).
fn held_passes(unrolled: Option<u32>) -> String {
    let held = "held: ptr<function, array<Block, RESIDENT_BLOCKS>>";
    // `statement` names the block index `$k`.
    let pass = |signature: &str, statement: &str| {
        let body = match unrolled {
            Some(n) => (0..n)
                .map(|k| format!("    {}\n", statement.replace("$k", &format!("{k}u"))))
                .collect::<String>(),
            None => format!(
                "    for (var k = 0u; k < RESIDENT_BLOCKS; k++) {{\n        {}\n    }}\n",
                statement.replace("$k", "k")
            ),
        };
        format!("fn {signature} {{\n{body}}}\n")
    };
    [
        pass(
            &format!(
                "hold_blocks({held}, r: Row, blocks: Share, top: ptr<function, f32>, \
                 flags: ptr<function, u32>)"
            ),
            "(*held)[$k] = held_load(r, blocks, $k, top, flags);",
        ),
        pass(
            &format!("exp_blocks({held}, m: vec4<f32>, inv_t: f32, sum: ptr<function, Stream>)"),
            "(*held)[$k] = held_exp((*held)[$k], m, inv_t, sum);",
        ),
        pass(
            &format!("store_blocks({held}, r: Row, blocks: Share, o: HeldOutput)"),
            "held_store(r, blocks, $k, (*held)[$k], o);",
        ),
    ]
    .concat()
}
