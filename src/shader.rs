//! Assembles the WGSL of a kernel from the files in `shaders/`.
//!
//! A module is the concatenation of: a header of constants, the bindings with their raw
//! accessors (generated here from the same table that builds the bind-group layout, so the
//! two cannot disagree), the input dtype's `load_x`, the output dtype's `store_pair`, the
//! shared pieces and the kernel. Constants are plain `const` declarations, so every variant
//! is a complete module that naga validates on its own.

use crate::dtype::Storage;
use crate::options::Forward;

const COMMON: &str = include_str!("../shaders/common.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../shaders/reduce_workgroup.wgsl");
const REDUCE_ROW_TREE: &str = include_str!("../shaders/reduce_row_tree.wgsl");
const REDUCE_ROW_SUBGROUP: &str = include_str!("../shaders/reduce_row_subgroup.wgsl");
const SOFTMAX: &str = include_str!("../shaders/softmax.wgsl");
const CROSS_ENTROPY: &str = include_str!("../shaders/cross_entropy.wgsl");
const BACKWARD: &str = include_str!("../shaders/backward.wgsl");
const COPY: &str = include_str!("../shaders/copy.wgsl");
const HALF_BITS: &str = include_str!("../shaders/io/half_bits.wgsl");
const STORE_WORD: &str = include_str!("../shaders/io/store_word.wgsl");

/// Binding slots, shared by every kernel's layout.
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
}

/// How the forward kernel lays work out: the variants of `src/plan.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Layout {
    /// Invocations per row (a power of two dividing the workgroup), without subgroup rows.
    pub lanes: u32,
    /// Row reductions with subgroup operations (needs SUBGROUP).
    pub subgroups: bool,
    /// With `subgroups`: each subgroup takes its own row.
    pub subgroup_rows: bool,
    /// Blocks of 8 logits each lane holds in registers (row-resident); 0 for online.
    pub resident_blocks: u32,
    /// Split-row: `partials` and `finish` entry points and a scratch binding.
    pub split: bool,
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

impl KernelKey {
    /// The storage bindings this kernel declares, as (slot, read_only).
    pub(crate) fn storage_bindings(&self) -> Vec<(u32, bool)> {
        let mut b = Vec::with_capacity(6);
        if !self.in_place {
            b.push((slot::X, true));
            if self.aligned {
                b.push((slot::X_VEC, true));
            }
        }
        if self.output.is_some() {
            b.push((slot::Y, false));
            b.push((slot::Y_VEC, false));
        }
        if self.lse {
            b.push((slot::LSE, false));
        }
        if self.layout.split {
            b.push((slot::PARTIALS, false));
        }
        b
    }
}

/// The entry points of the forward module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ForwardEntry {
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
    /// Lanes own contiguous runs of blocks of 8 of the gradient, loaded and stored as
    /// vectors: CPU tuning, with a gradient at the logits' offset modulo 8.
    pub blocks: bool,
    /// The vector views hold 64-bit words (see `vector_view`).
    pub wide_words: bool,
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
    /// Lanes own contiguous runs of blocks of 8, loaded and stored as vectors as in the
    /// forward kernels: CPU tuning, with `y`, `dy` and `dx` at the same offset modulo 8.
    pub blocks: bool,
    /// The vector views hold 64-bit words (see `vector_view`).
    pub wide_words: bool,
}

/// Variant of the copy kernel (the benchmarks' roofline).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CopyKey {
    pub contiguous: bool,
    pub workgroup: u32,
    /// The word each load and store moves.
    pub word: crate::bench::CopyWord,
    /// A copy, or one of the exp ceilings.
    pub kind: crate::bench::CopyKind,
}

/// Everything that selects a distinct compiled pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PipelineKey {
    Forward(KernelKey, ForwardEntry),
    CrossEntropy(CeKey, CeEntry),
    Backward(BackwardKey),
    Copy(CopyKey),
}

impl PipelineKey {
    /// The storage bindings the kernel declares, as (slot, read_only).
    pub(crate) fn storage_bindings(&self) -> Vec<(u32, bool)> {
        match self {
            PipelineKey::Forward(k, _) => k.storage_bindings(),
            PipelineKey::CrossEntropy(k, _) => {
                let mut b = Vec::new();
                if !k.in_place {
                    b.push((slot::X, true));
                }
                if k.grad.is_some() {
                    b.push((slot::Y, false));
                }
                b.extend([(slot::LSE, false), (slot::TARGETS_OR_DY, true)]);
                if k.weight {
                    b.push((slot::WEIGHT, true));
                }
                b.extend([(slot::LOSS, false), (slot::META, false)]);
                if k.blocks {
                    if !k.in_place {
                        b.push((slot::X_VEC, true));
                    }
                    if k.grad.is_some() {
                        b.push((slot::Y_VEC, false));
                    }
                }
                b
            }
            PipelineKey::Copy(_) => vec![(slot::X, true), (slot::Y, false)],
            PipelineKey::Backward(k) => {
                let mut b = vec![
                    (slot::X, true),
                    (slot::Y, false),
                    (slot::TARGETS_OR_DY, true),
                ];
                if k.blocks {
                    b.extend([
                        (slot::X_VEC, true),
                        (slot::Y_VEC, false),
                        (slot::DY_VEC, true),
                    ]);
                }
                b
            }
        }
    }

    /// The entry point to compile.
    pub(crate) fn entry_point(&self) -> &'static str {
        match self {
            PipelineKey::CrossEntropy(_, CeEntry::Prepare) => "prepare",
            PipelineKey::CrossEntropy(_, CeEntry::Reduce) => "reduce",
            PipelineKey::Forward(_, ForwardEntry::Partials) => "partials",
            PipelineKey::Forward(_, ForwardEntry::Finish) => "finish",
            _ => "main",
        }
    }

    /// The complete WGSL module.
    pub(crate) fn source(&self) -> String {
        match self {
            PipelineKey::Forward(k, _) => source(k),
            PipelineKey::CrossEntropy(k, _) => cross_entropy_source(k),
            PipelineKey::Backward(k) => backward_source(k),
            PipelineKey::Copy(k) => copy_source(k),
        }
    }
}

/// The WGSL type of one slot of a binding of this storage.
fn slot_type(s: Storage) -> &'static str {
    match s {
        Storage::F32 => "f32",
        Storage::F16Native => "f16",
        Storage::F16Packed | Storage::Bf16Packed => "u32",
    }
}

fn load_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../shaders/io/load_f32.wgsl"),
        Storage::F16Native => include_str!("../shaders/io/load_f16.wgsl"),
        Storage::F16Packed => include_str!("../shaders/io/load_f16_packed.wgsl"),
        Storage::Bf16Packed => include_str!("../shaders/io/load_bf16.wgsl"),
    }
}

fn store_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../shaders/io/store_f32.wgsl"),
        Storage::F16Native => include_str!("../shaders/io/store_f16.wgsl"),
        Storage::F16Packed => include_str!("../shaders/io/store_f16_packed.wgsl"),
        Storage::Bf16Packed => include_str!("../shaders/io/store_bf16.wgsl"),
    }
}

/// Bytes per element of a storage's vector view: a whole f32 block where 64-bit words are
/// on (`vec4<u64>`), 16 otherwise. A binding holds `size / view_bytes` elements of it.
pub(crate) fn view_bytes(s: Storage, wide: bool) -> u64 {
    if wide && s == Storage::F32 {
        32
    } else {
        16
    }
}

/// WGSL for the four u32 of the 64-bit words `a` and `b` (low half first).
fn split_words(a: &str, b: &str) -> String {
    format!("vec4<u32>(u32({a}), u32({a} >> 32u), u32({b}), u32({b} >> 32u))")
}

/// WGSL for the two 64-bit words of the `vec4<u64>` `v` of u32 values (low half first).
fn join_words(v: &str) -> String {
    format!("{v}.x | ({v}.y << 32u), {v}.z | ({v}.w << 32u)")
}

/// The vector view `name` of a tensor at `slot`. f32 tensors are read by blocks,
/// `name_block(b)` (and, for outputs, written by `name_store_block(b, v)`); 16-bit ones by
/// 16-byte vectors, `name(i)` and `name_store(i, v)`. With `wide`, the binding holds 64-bit
/// words: lavapipe loads and stores each component of each lane on its own, in a loop over
/// the lanes for each load or store, so fewer and wider components cost less (measured on
/// lavapipe, 256 x 32000 f32, from `vec4<f32>` to `vec2<u64>`: softmax 20.4 -> 16.5 ms,
/// logsumexp 8.4 -> 7.0 ms; then from two `vec2<u64>` to one `vec4<u64>` per f32 block,
/// one lane loop instead of two, ratio to copy at 256 rows, medians of four alternating
/// runs: softmax 0.415 -> 0.455 (32000) and 0.414 -> 0.458 (128256), logsumexp 0.59 -> 0.62
/// and 0.52 -> 0.58).
fn vector_view(slot: u32, name: &str, s: Storage, wide: bool, read_only: bool) -> String {
    let access = if read_only { "read" } else { "read_write" };
    if s == Storage::F32 {
        return block_view(slot, name, wide, access, read_only);
    }
    let mut out = if wide {
        format!(
            "@group(0) @binding({slot}) var<storage, {access}> {name}_buf: array<vec2<u64>>;\n\
             fn {name}(i: u32) -> vec4<u32> {{\n    \
             let w = {name}_buf[i];\n    \
             return {};\n}}\n",
            split_words("w.x", "w.y")
        )
    } else {
        format!(
            "@group(0) @binding({slot}) var<storage, {access}> {name}_buf: array<vec4<u32>>;\n\
             fn {name}(i: u32) -> vec4<u32> {{ return {name}_buf[i]; }}\n"
        )
    };
    if !read_only {
        if wide {
            out += &format!(
                "fn {name}_store(i: u32, v: vec4<u32>) {{\n    \
                 let b = vec4<u64>(v);\n    \
                 {name}_buf[i] = vec2<u64>({});\n}}\n",
                join_words("b")
            );
        } else {
            out += &format!("fn {name}_store(i: u32, v: vec4<u32>) {{ {name}_buf[i] = v; }}\n");
        }
    }
    out
}

/// `vector_view` of an f32 tensor: one `vec4<u64>` per block with `wide`, two `vec4<f32>`
/// otherwise.
fn block_view(slot: u32, name: &str, wide: bool, access: &str, read_only: bool) -> String {
    if !wide {
        let mut out = format!(
            "@group(0) @binding({slot}) var<storage, {access}> {name}_buf: array<vec4<f32>>;\n\
             fn {name}_block(b: u32) -> Block {{\n    \
             return Block({name}_buf[2u * b], {name}_buf[2u * b + 1u]);\n}}\n"
        );
        if !read_only {
            out += &format!(
                "fn {name}_store_block(b: u32, v: Block) {{\n    \
                 {name}_buf[2u * b] = v.lo;\n    \
                 {name}_buf[2u * b + 1u] = v.hi;\n}}\n"
            );
        }
        return out;
    }
    let mut out = format!(
        "@group(0) @binding({slot}) var<storage, {access}> {name}_buf: array<vec4<u64>>;\n\
         fn {name}_block(b: u32) -> Block {{\n    \
         let w = {name}_buf[b];\n    \
         return Block(bitcast<vec4<f32>>({}), bitcast<vec4<f32>>({}));\n}}\n",
        split_words("w.x", "w.y"),
        split_words("w.z", "w.w")
    );
    if !read_only {
        out += &format!(
            "fn {name}_store_block(b: u32, v: Block) {{\n    \
             let lo = vec4<u64>(bitcast<vec4<u32>>(v.lo));\n    \
             let hi = vec4<u64>(bitcast<vec4<u32>>(v.hi));\n    \
             {name}_buf[b] = vec4<u64>({}, {});\n}}\n",
            join_words("lo"),
            join_words("hi")
        );
    }
    out
}

/// In place, the input's vector view reads the output's.
fn in_place_view(s: Storage) -> String {
    if s == Storage::F32 {
        "fn x_vec_block(b: u32) -> Block { return y_vec_block(b); }\n".into()
    } else {
        "fn x_vec(i: u32) -> vec4<u32> { return y_vec(i); }\n".into()
    }
}

fn load_block_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../shaders/io/load_block_f32.wgsl"),
        Storage::F16Native | Storage::F16Packed => {
            include_str!("../shaders/io/load_block_f16.wgsl")
        }
        Storage::Bf16Packed => include_str!("../shaders/io/load_block_bf16.wgsl"),
    }
}

fn store_block_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../shaders/io/store_block_f32.wgsl"),
        Storage::F16Native | Storage::F16Packed => {
            include_str!("../shaders/io/store_block_f16.wgsl")
        }
        Storage::Bf16Packed => include_str!("../shaders/io/store_block_bf16.wgsl"),
    }
}

/// The forward kernels' bindings: `x`, `y` with their vector views (`x_vec(i)`,
/// `y_vec_store(i, v)`, `load_block`, `store_block`) and `store_lse(i, v)`.
fn bindings(key: &KernelKey) -> String {
    use std::fmt::Write;
    let mut s = xy_bindings(key.input, key.output, key.in_place, key.half_builtins);
    if let Some(out) = key.output {
        s += &vector_view(slot::Y_VEC, "y_vec", out, key.wide_words, false);
        s.push_str(store_block_source(out));
    } else {
        s.push_str("fn store_block(b: u32, v: Block) {}\n");
    }
    if key.in_place {
        s += &in_place_view(key.input);
        s.push_str(load_block_source(key.input));
    } else if key.aligned {
        s += &vector_view(slot::X_VEC, "x_vec", key.input, key.wide_words, true);
        s.push_str(load_block_source(key.input));
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n",
        );
    }
    if key.lse {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read_write> lse_buf: array<f32>;\n\
             fn store_lse(i: u32, v: f32) {{ lse_buf[i] = v; }}",
            slot::LSE
        );
    } else {
        s.push_str("fn store_lse(i: u32, v: f32) {}\n");
    }
    if key.layout.split {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read_write> partials_buf: array<vec4<u32>>;\n\
             fn store_partial(i: u32, st: Online) {{\n    \
             partials_buf[i] = vec4<u32>(bitcast<u32>(st.m), bitcast<u32>(st.s), st.flags, 0u);\n}}\n\
             fn load_partial(i: u32) -> Online {{\n    \
             let p = partials_buf[i];\n    \
             return Online(bitcast<f32>(p.x), bitcast<f32>(p.y), p.z);\n}}",
            slot::PARTIALS
        );
    } else {
        s.push_str(
            "fn store_partial(i: u32, st: Online) {}\n\
             fn load_partial(i: u32) -> Online { return online_empty(); }\n",
        );
    }
    s
}

/// The uniform and the bindings shared by every kernel family, with their raw accessors:
/// `x_raw(i)` and the input dtype's `load_x`, `y_raw_store(i, v)` (and, for packed outputs,
/// `y_raw_merge(i, bits, keep)` for words shared with a neighbouring row) and the output
/// dtype's `store_pair`. In place, `x` reads `y`'s binding.
fn xy_bindings(
    input: Storage,
    output: Option<Storage>,
    in_place: bool,
    half_builtins: bool,
) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "@group(0) @binding({}) var<uniform> params: Params;\n",
        slot::PARAMS
    );
    if input != Storage::F32 || output.is_some_and(|o| o != Storage::F32) {
        let _ = writeln!(s, "const HALF_BUILTINS: bool = {half_builtins};");
        s.push_str(HALF_BITS);
    }
    let xt = slot_type(input);
    if let Some(out) = output {
        let yt = slot_type(out);
        if out.packed() {
            // Packed outputs are atomic so that the word shared by two rows can be merged.
            let _ = writeln!(
                s,
                "@group(0) @binding({}) var<storage, read_write> y_buf: array<atomic<u32>>;\n\
                 fn y_raw_store(i: u32, v: u32) {{ atomicStore(&y_buf[i], v); }}\n\
                 fn y_raw_merge(i: u32, bits: u32, keep: u32) {{\n    \
                 atomicAnd(&y_buf[i], keep);\n    atomicOr(&y_buf[i], bits & ~keep);\n}}",
                slot::Y
            );
        } else {
            let _ = writeln!(
                s,
                "@group(0) @binding({}) var<storage, read_write> y_buf: array<{yt}>;\n\
                 fn y_raw_store(i: u32, v: {yt}) {{ y_buf[i] = v; }}",
                slot::Y
            );
        }
        if out.packed() {
            s.push_str(STORE_WORD);
        }
        s.push_str(store_source(out));
    } else {
        s.push_str("fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {}\n");
    }
    if in_place {
        let read = if output.is_some_and(Storage::packed) {
            "atomicLoad(&y_buf[i])"
        } else {
            "y_buf[i]"
        };
        let _ = writeln!(s, "fn x_raw(i: u32) -> {xt} {{ return {read}; }}");
    } else {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read> x_buf: array<{xt}>;\n\
             fn x_raw(i: u32) -> {xt} {{ return x_buf[i]; }}",
            slot::X
        );
    }
    s.push_str(load_source(input));
    s
}

/// The constants every kernel starts with. `row_loop`: more rows (or groups of rows) than
/// one dimension of a dispatch holds, so that workgroups take them in turns.
fn header(
    workgroup: u32,
    contiguous: bool,
    row_loop: bool,
    storages: &[Option<Storage>],
) -> String {
    let native_f16 = storages.contains(&Some(Storage::F16Native));
    format!(
        "{enable}const WG: u32 = {workgroup}u;\nconst CONTIGUOUS: bool = {contiguous};\n\
         const ROW_LOOP: bool = {row_loop};\n",
        enable = if native_f16 { "enable f16;\n" } else { "" },
    )
}

/// The cross-entropy module: logits as `x`, the gradient as `y`.
fn cross_entropy_source(key: &CeKey) -> String {
    use std::fmt::Write;
    let mut s = header(
        key.workgroup,
        key.contiguous,
        key.row_loop,
        &[Some(key.input), key.grad],
    );
    let _ = writeln!(s, "const HAS_GRAD: bool = {};", key.grad.is_some());
    let _ = writeln!(s, "const BLOCKS: bool = {};", key.blocks);
    s += &xy_bindings(key.input, key.grad, key.in_place, key.half_builtins);
    if key.blocks {
        match key.grad {
            Some(grad) => {
                s += &vector_view(slot::Y_VEC, "y_vec", grad, key.wide_words, false);
                s.push_str(store_block_source(grad));
            }
            None => s.push_str("fn store_block(b: u32, v: Block) {}\n"),
        }
        if key.in_place {
            s += &in_place_view(key.input);
        } else {
            s += &vector_view(slot::X_VEC, "x_vec", key.input, key.wide_words, true);
        }
        s.push_str(load_block_source(key.input));
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n\
             fn store_block(b: u32, v: Block) {}\n",
        );
    }
    let _ = writeln!(
        s,
        "@group(0) @binding({lse}) var<storage, read_write> lse_buf: array<f32>;\n\
         @group(0) @binding({t}) var<storage, read> targets: array<i32>;\n\
         @group(0) @binding({loss}) var<storage, read_write> loss_buf: array<f32>;\n\
         @group(0) @binding({meta}) var<storage, read_write> meta_buf: array<u32>;",
        lse = slot::LSE,
        t = slot::TARGETS_OR_DY,
        loss = slot::LOSS,
        meta = slot::META,
    );
    if key.weight {
        let _ = writeln!(
            s,
            "@group(0) @binding({}) var<storage, read> weight_buf: array<f32>;\n\
             fn class_weight(j: u32) -> f32 {{ return weight_buf[j]; }}",
            slot::WEIGHT
        );
    } else {
        s.push_str("fn class_weight(j: u32) -> f32 { return 1.0; }\n");
    }
    [s.as_str(), COMMON, REDUCE_WORKGROUP, CROSS_ENTROPY].join("\n")
}

/// The backward module: `y` as `x`, the gradient as `y`, `dy` through `load_dy` (the input
/// dtype's load prelude with its names changed).
fn backward_source(key: &BackwardKey) -> String {
    use std::fmt::Write;
    let mut s = header(
        key.workgroup,
        key.contiguous,
        key.row_loop,
        &[Some(key.input), Some(key.output)],
    );
    let _ = writeln!(s, "const LOG: bool = {};", key.log);
    s += &xy_bindings(key.input, Some(key.output), false, key.half_builtins);
    let _ = writeln!(
        s,
        "@group(0) @binding({}) var<storage, read> dy_buf: array<{t}>;\n\
         fn dy_raw(i: u32) -> {t} {{ return dy_buf[i]; }}",
        slot::TARGETS_OR_DY,
        t = slot_type(key.input)
    );
    s += &load_source(key.input)
        .replace("x_raw", "dy_raw")
        .replace("load_x", "load_dy");
    let _ = writeln!(s, "const BLOCKS: bool = {};", key.blocks);
    if key.blocks {
        s += &vector_view(slot::X_VEC, "x_vec", key.input, key.wide_words, true);
        s.push_str(load_block_source(key.input));
        s += &vector_view(slot::DY_VEC, "dy_vec", key.input, key.wide_words, true);
        s += &load_block_source(key.input)
            .replace("x_vec", "dy_vec")
            .replace("fn load_block", "fn load_dy_block");
        s += &vector_view(slot::Y_VEC, "y_vec", key.output, key.wide_words, false);
        s.push_str(store_block_source(key.output));
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n\
             fn load_dy_block(b: u32) -> Block { return load_block(b); }\n\
             fn store_block(b: u32, v: Block) {}\n",
        );
    }
    [s.as_str(), COMMON, REDUCE_WORKGROUP, BACKWARD].join("\n")
}

/// The exponential of every f32 of a word (`word_exp`) and their sum (`word_exp_sum`).
fn word_exp_source(word: crate::bench::CopyWord) -> &'static str {
    match word {
        crate::bench::CopyWord::Bytes16 => {
            "fn word_exp(w: Word) -> Word { return bitcast<Word>(exp(bitcast<vec4<f32>>(w))); }\n\
             fn word_exp_sum(w: Word) -> f32 {\n    \
             let e = exp(bitcast<vec4<f32>>(w));\n    \
             return (e.x + e.y) + (e.z + e.w);\n}\n"
        }
        crate::bench::CopyWord::Bytes32 => {
            "fn word_halves(w: Word, lo: ptr<function, vec4<f32>>, hi: ptr<function, vec4<f32>>) {\n    \
             *lo = bitcast<vec4<f32>>(vec4<u32>(w));\n    \
             *hi = bitcast<vec4<f32>>(vec4<u32>(w >> vec4<u32>(32u)));\n}\n\
             fn word_exp(w: Word) -> Word {\n    \
             var lo: vec4<f32>;\n    var hi: vec4<f32>;\n    \
             word_halves(w, &lo, &hi);\n    \
             let l = vec4<u64>(bitcast<vec4<u32>>(exp(lo)));\n    \
             let h = vec4<u64>(bitcast<vec4<u32>>(exp(hi)));\n    \
             return l | (h << vec4<u32>(32u));\n}\n\
             fn word_exp_sum(w: Word) -> f32 {\n    \
             var lo: vec4<f32>;\n    var hi: vec4<f32>;\n    \
             word_halves(w, &lo, &hi);\n    \
             let e = exp(lo) + exp(hi);\n    \
             return (e.x + e.y) + (e.z + e.w);\n}\n"
        }
    }
}

/// The copy module: words of 16 or 32 bytes from `src` to `dst`, copied or turned into
/// exponentials (`CopyKey::kind`).
fn copy_source(key: &CopyKey) -> String {
    let bindings = format!(
        "alias Word = {word};\n\
         const COPY_PER_THREAD: u32 = {per}u;\n\
         const KIND: u32 = {kind}u;\n\
         @group(0) @binding({}) var<uniform> params: Params;\n\
         @group(0) @binding({}) var<storage, read> src: array<Word>;\n\
         @group(0) @binding({}) var<storage, read_write> dst: array<Word>;\n",
        slot::PARAMS,
        slot::X,
        slot::Y,
        word = key.word.wgsl_type(),
        per = key.word.per_thread(),
        kind = key.kind as u32,
    );
    [
        header(key.workgroup, key.contiguous, false, &[]).as_str(),
        &bindings,
        word_exp_source(key.word),
        COPY,
    ]
    .join("\n")
}

fn op_index(op: Forward) -> u32 {
    match op {
        Forward::Softmax => 0,
        Forward::LogSoftmax => 1,
        Forward::LogSumExp => 2,
    }
}

/// The entry points' builtins: with the subgroup ones where the kernel uses subgroups.
fn ids_struct(subgroups: bool) -> &'static str {
    if subgroups {
        "struct Ids {\n    @builtin(workgroup_id) wid: vec3<u32>,\n    \
         @builtin(num_workgroups) nwg: vec3<u32>,\n    \
         @builtin(local_invocation_index) lid: u32,\n    \
         @builtin(subgroup_id) sg_id: u32,\n    \
         @builtin(num_subgroups) n_sg: u32,\n    \
         @builtin(subgroup_invocation_id) sg_lane: u32,\n    \
         @builtin(subgroup_size) sg_size: u32,\n}\n"
    } else {
        "struct Ids {\n    @builtin(workgroup_id) wid: vec3<u32>,\n    \
         @builtin(num_workgroups) nwg: vec3<u32>,\n    \
         @builtin(local_invocation_index) lid: u32,\n}\n"
    }
}

/// The complete WGSL module of a forward kernel.
pub(crate) fn source(key: &KernelKey) -> String {
    let l = &key.layout;
    let header = format!(
        "{}const OP: u32 = {}u;\nconst HAS_LSE: bool = {};\nconst LANES: u32 = {}u;\n\
         const RESIDENT: bool = {};\nconst RESIDENT_BLOCKS: u32 = {}u;\n\
         const SUBGROUP_ROWS: bool = {};\nconst ALIGNED: bool = {};\n{}",
        header(
            key.workgroup,
            key.contiguous,
            key.row_loop,
            &[Some(key.input), key.output]
        ),
        op_index(key.op),
        key.lse,
        l.lanes,
        l.resident_blocks > 0,
        l.resident_blocks.max(1),
        l.subgroup_rows,
        key.aligned,
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
    [
        header.as_str(),
        &bindings(key),
        COMMON,
        reduce,
        SOFTMAX,
        &held,
    ]
    .join("\n")
}

/// The most held blocks per lane that are unrolled: compiling the unrolled passes grows
/// faster than the blocks (lavapipe, one f32 softmax pipeline: about 0.1 s at 16 blocks,
/// 0.25 s at 32, 0.75 to 0.9 s at 64, 8 to 12 s at 128), and every pipeline of a process
/// pays it once. Past it the passes loop (only the CPU adapters' forced resident rows).
pub(crate) const MAX_UNROLLED_BLOCKS: u32 = 32;

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

/// Every distinct WGSL module the crate can build, for validation without an adapter.
#[doc(hidden)]
pub fn all_sources() -> Vec<(String, String)> {
    let storages = [
        Storage::F32,
        Storage::F16Native,
        Storage::F16Packed,
        Storage::Bf16Packed,
    ];
    let mut out = Vec::new();
    for contiguous in [false, true] {
        for word in [
            crate::bench::CopyWord::Bytes16,
            crate::bench::CopyWord::Bytes32,
        ] {
            for kind in [
                crate::bench::CopyKind::Copy,
                crate::bench::CopyKind::Exp,
                crate::bench::CopyKind::ExpSum,
            ] {
                let key = CopyKey {
                    contiguous,
                    workgroup: 256,
                    word,
                    kind,
                };
                out.push((format!("{key:?}"), copy_source(&key)));
            }
        }
    }
    for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
        for input in storages {
            let outputs: Vec<Option<Storage>> = if op == Forward::LogSumExp {
                vec![None]
            } else {
                storages.iter().copied().map(Some).collect()
            };
            for output in outputs {
                for in_place in [false, true] {
                    if in_place && output != Some(input) {
                        continue;
                    }
                    for (contiguous, layout) in test_layouts() {
                        let key = KernelKey {
                            aligned: contiguous || in_place,
                            op,
                            input,
                            output,
                            in_place,
                            lse: true,
                            contiguous,
                            workgroup: 256,
                            layout,
                            half_builtins: !contiguous,
                            row_loop: in_place,
                            wide_words: contiguous,
                        };
                        out.push((format!("{key:?}"), source(&key)));
                    }
                }
            }
        }
    }
    for input in storages {
        for grad in [None, Some(input), Some(Storage::F32)] {
            for in_place in [false, true] {
                if in_place && grad != Some(input) {
                    continue;
                }
                for weight in [false, true] {
                    let key = CeKey {
                        input,
                        grad,
                        in_place,
                        weight,
                        contiguous: in_place,
                        workgroup: 256,
                        half_builtins: weight,
                        row_loop: !weight,
                        blocks: in_place || weight,
                        wide_words: weight,
                    };
                    out.push((format!("{key:?}"), cross_entropy_source(&key)));
                }
            }
        }
        for output in [input, Storage::F32] {
            for log in [false, true] {
                let key = BackwardKey {
                    log,
                    input,
                    output,
                    contiguous: log,
                    workgroup: 256,
                    half_builtins: !log,
                    row_loop: log,
                    blocks: output == input,
                    wide_words: log,
                };
                out.push((format!("{key:?}"), backward_source(&key)));
            }
        }
    }
    out
}

/// One layout of each kind of variant, each with both access patterns.
fn test_layouts() -> Vec<(bool, Layout)> {
    let base = Layout {
        lanes: 256,
        subgroups: false,
        subgroup_rows: false,
        resident_blocks: 0,
        split: false,
    };
    let layouts = [
        base,
        Layout {
            resident_blocks: 8,
            ..base
        },
        Layout { lanes: 16, ..base },
        Layout {
            split: true,
            ..base
        },
        Layout {
            subgroups: true,
            ..base
        },
        Layout {
            subgroups: true,
            subgroup_rows: true,
            resident_blocks: 4,
            ..base
        },
        Layout {
            subgroups: true,
            split: true,
            ..base
        },
    ];
    layouts
        .into_iter()
        .flat_map(|l| [(false, l), (true, l)])
        .collect()
}
