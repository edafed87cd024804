//! The bindings' WGSL: declarations generated from the slots of `super::slot`, their raw
//! accessors (`x_raw`, `y_raw_store`), the dtype preludes of `shaders/io/` and the vector
//! views the block loads and stores go through.

use super::{KernelKey, HALF_BITS, STORE_WORD};
use crate::dtype::Storage;

/// The WGSL type of one slot of a binding of this storage.
pub(super) fn slot_type(s: Storage) -> &'static str {
    match s {
        Storage::F32 => "f32",
        Storage::F16Native => "f16",
        Storage::F16Packed | Storage::Bf16Packed => "u32",
    }
}

/// The input dtype's `elem_slot(i)` (the raw slot holding element i) and `elem_f32(raw, i)`
/// (element i of that slot, widened).
pub(super) fn load_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../../shaders/io/load_f32.wgsl"),
        Storage::F16Native => include_str!("../../shaders/io/load_f16.wgsl"),
        Storage::F16Packed => include_str!("../../shaders/io/load_f16_packed.wgsl"),
        Storage::Bf16Packed => include_str!("../../shaders/io/load_bf16.wgsl"),
    }
}

fn store_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../../shaders/io/store_f32.wgsl"),
        Storage::F16Native => include_str!("../../shaders/io/store_f16.wgsl"),
        Storage::F16Packed => include_str!("../../shaders/io/store_f16_packed.wgsl"),
        Storage::Bf16Packed => include_str!("../../shaders/io/store_bf16.wgsl"),
    }
}

/// The WGSL element type of a storage's vector view: f32 blocks as `vec4<u64>` (`wide`) or
/// `vec4<f32>`, 16-bit types as `vec2<u64>` or `vec4<u32>`.
pub(super) fn view_type(s: Storage, wide: bool) -> &'static str {
    match (s == Storage::F32, wide) {
        (true, true) => "vec4<u64>",
        (true, false) => "vec4<f32>",
        (false, true) => "vec2<u64>",
        (false, false) => "vec4<u32>",
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

/// WGSL that stores the value `value` at `name_buf[i]` through a `select` that is never
/// taken (`zero` is the zero of the value's type): `i` counts words of 16 bytes, so it
/// stays below 2^28 in any binding. Mesa's CPU drivers store each lane's components
/// (64-bit on lavapipe, 32-bit through GL) in a loop over the lanes, and LLVM moved the
/// integer operations that pack them (every shift, mask and or after the last `select`)
/// into that loop, once per lane and component (f16 log-softmax on lavapipe, disassembled:
/// about 30 instructions per 64-bit word instead of 6); it stops at a `select`, so the
/// packing stays in vector form ahead of the loop, and the loop only moves words, as the
/// copy kernel's does (docs/lavapipe-history.md, "Stores that only store"). f32 blocks,
/// whose packing is one shift and one or per word, measured no gain from it and store
/// plainly.
fn fenced_store(name: &str, value: &str, zero: &str) -> String {
    format!("{name}_buf[i] = select({value}, {zero}, i == 0xffffffffu);")
}

/// The accessors of the vector view `name` of a tensor (declared as `name_buf`, see
/// `view_type`). f32 tensors are read by blocks,
/// `name_block(b)` (and, for outputs, written by `name_store_block(b, v)`); 16-bit ones by
/// 16-byte vectors, `name(i)` and `name_store(i, v)`. With `wide`, the binding holds 64-bit
/// words: lavapipe loads and stores each component of each lane on its own, in a loop over
/// the lanes for each load or store, so fewer and wider components cost less (measured on
/// lavapipe, 256 x 32000 f32, from `vec4<f32>` to `vec2<u64>`: softmax 20.4 -> 16.5 ms,
/// logsumexp 8.4 -> 7.0 ms; then from two `vec2<u64>` to one `vec4<u64>` per f32 block,
/// one lane loop instead of two, ratio to copy at 256 rows, medians of four alternating
/// runs: softmax 0.415 -> 0.455 (32000) and 0.414 -> 0.458 (128256), logsumexp 0.59 -> 0.62
/// and 0.52 -> 0.58). With `fenced` (the CPU adapters' layouts), 16-bit outputs store
/// through `fenced_store`.
pub(super) fn vector_view(
    name: &str,
    s: Storage,
    wide: bool,
    read_only: bool,
    fenced: bool,
) -> String {
    if !read_only && !OUTPUT_VIEWS {
        return scalar_backed_view(name, s);
    }
    if s == Storage::F32 {
        return block_view(name, wide, read_only);
    }
    let mut out = if wide {
        format!(
            "fn {name}(i: u32) -> vec4<u32> {{\n    \
             let w = {name}_buf[i];\n    \
             return {};\n}}\n",
            split_words("w.x", "w.y")
        )
    } else {
        format!("fn {name}(i: u32) -> vec4<u32> {{ return {name}_buf[i]; }}\n")
    };
    if !read_only {
        // The store of `value`, fenced on CPU adapters (`zero`: its type's zero).
        let store = |value: &str, zero: &str| {
            if fenced {
                fenced_store(name, value, zero)
            } else {
                format!("{name}_buf[i] = {value};")
            }
        };
        if wide {
            out += &format!(
                "fn {name}_store(i: u32, v: vec4<u32>) {{\n    \
                 let b = vec4<u64>(v);\n    \
                 {}\n}}\n",
                store(&format!("vec2<u64>({})", join_words("b")), "vec2<u64>(0lu)"),
            );
        } else {
            out += &format!(
                "fn {name}_store(i: u32, v: vec4<u32>) {{ {} }}\n",
                store("v", "vec4<u32>(0u)"),
            );
        }
    }
    out
}

/// Whether an output has a vector view binding of its own beside `y_buf`. WebGPU forbids
/// two bindings of one bind group to overlap where either is writable (wgpu's native
/// backends allow it), so in a browser the output's vector accessors go through `y_buf`
/// itself (`scalar_backed_view`), and the bindings leave `Y_VEC` out (src/shader/spec.rs).
pub(crate) const OUTPUT_VIEWS: bool = matches!(super::Dialect::of_target(), super::Dialect::Native);

/// The accessors of a writable vector view (`y_vec`: `y_vec_block` / `y_vec_store_block` for
/// f32, `y_vec` / `y_vec_store` of packed words otherwise) through the scalar output
/// binding `y_buf`, element by element (see `OUTPUT_VIEWS`).
fn scalar_backed_view(name: &str, s: Storage) -> String {
    assert_eq!(name, "y_vec", "only the output's view is writable");
    match s {
        Storage::F32 => "fn y_vec_block(b: u32) -> Block {\n    \
             var v = Block(vec4<f32>(0.0), vec4<f32>(0.0));\n    \
             for (var k = 0u; k < 4u; k++) {\n        \
             v.lo[k] = y_buf[BLOCK * b + k];\n        \
             v.hi[k] = y_buf[BLOCK * b + 4u + k];\n    }\n    \
             return v;\n}\n\
             fn y_vec_store_block(b: u32, v: Block) {\n    \
             for (var k = 0u; k < 4u; k++) {\n        \
             y_buf[BLOCK * b + k] = v.lo[k];\n        \
             y_buf[BLOCK * b + 4u + k] = v.hi[k];\n    }\n}\n"
            .into(),
        Storage::F16Packed | Storage::Bf16Packed => "fn y_vec(i: u32) -> vec4<u32> {\n    \
             var w = vec4<u32>(0u);\n    \
             for (var k = 0u; k < 4u; k++) { w[k] = atomicLoad(&y_buf[4u * i + k]); }\n    \
             return w;\n}\n\
             fn y_vec_store(i: u32, v: vec4<u32>) {\n    \
             for (var k = 0u; k < 4u; k++) { atomicStore(&y_buf[4u * i + k], v[k]); }\n}\n"
            .into(),
        Storage::F16Native => "fn y_vec(i: u32) -> vec4<u32> {\n    \
             var w = vec4<u32>(0u);\n    \
             for (var k = 0u; k < 4u; k++) {\n        \
             w[k] = bitcast<u32>(vec2<f16>(y_buf[8u * i + 2u * k], y_buf[8u * i + 2u * k + 1u]));\n    }\n    \
             return w;\n}\n\
             fn y_vec_store(i: u32, v: vec4<u32>) {\n    \
             for (var k = 0u; k < 4u; k++) {\n        \
             let h = bitcast<vec2<f16>>(v[k]);\n        \
             y_buf[8u * i + 2u * k] = h.x;\n        \
             y_buf[8u * i + 2u * k + 1u] = h.y;\n    }\n}\n"
            .into(),
    }
}

/// `vector_view` of an f32 tensor: one `vec4<u64>` per block with `wide`, two `vec4<f32>`
/// otherwise.
fn block_view(name: &str, wide: bool, read_only: bool) -> String {
    if !wide {
        let mut out = format!(
            "fn {name}_block(b: u32) -> Block {{\n    \
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
        "fn {name}_block(b: u32) -> Block {{\n    \
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
pub(super) fn in_place_view(s: Storage) -> String {
    if s == Storage::F32 {
        "fn x_vec_block(b: u32) -> Block { return y_vec_block(b); }\n".into()
    } else {
        "fn x_vec(i: u32) -> vec4<u32> { return y_vec(i); }\n".into()
    }
}

/// The loader `fn {loader}(b: u32) -> Block` of block b (elements 8b .. 8b + 8) of a tensor
/// of storage `s` from its vector view `view` (`vector_view`): f32 blocks as they are,
/// 16-bit ones widened by `block_of_words` (`block_words_source`).
pub(super) fn block_loader(loader: &str, view: &str, s: Storage) -> String {
    if s == Storage::F32 {
        format!("fn {loader}(b: u32) -> Block {{ return {view}_block(b); }}\n")
    } else {
        format!("fn {loader}(b: u32) -> Block {{ return block_of_words({view}(b)); }}\n")
    }
}

/// `block_of_words` of a 16-bit storage (none for f32, whose blocks load as they are).
pub(super) fn block_words_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => "",
        Storage::F16Native | Storage::F16Packed => {
            include_str!("../../shaders/io/load_block_f16.wgsl")
        }
        Storage::Bf16Packed => include_str!("../../shaders/io/load_block_bf16.wgsl"),
    }
}

/// The loader `fn {loader}(i: u32) -> f32` of element i of the tensor whose raw slots
/// `raw(slot)` reads, through the input dtype's `elem_slot` and `elem_f32` (`load_source`).
pub(super) fn elem_loader(loader: &str, raw: &str) -> String {
    format!("fn {loader}(i: u32) -> f32 {{ return elem_f32({raw}(elem_slot(i)), i); }}\n")
}

pub(super) fn store_block_source(s: Storage) -> &'static str {
    match s {
        Storage::F32 => include_str!("../../shaders/io/store_block_f32.wgsl"),
        Storage::F16Native | Storage::F16Packed => {
            include_str!("../../shaders/io/store_block_f16.wgsl")
        }
        Storage::Bf16Packed => include_str!("../../shaders/io/store_block_bf16.wgsl"),
    }
}

/// The forward kernels' bindings: `x`, `y` with their vector views (`x_vec(i)`,
/// `y_vec_store(i, v)`, `load_block`, `store_block`) and `store_lse(i, v)`.
pub(super) fn bindings(key: &KernelKey) -> String {
    use std::fmt::Write;
    // Softmax probabilities lie in [0, 1] (or are NaN): the cheaper exact f16 narrowing.
    let unit_output = key.op == crate::Forward::Softmax;
    let mut s = xy_bindings(
        key.input,
        key.output,
        key.in_place,
        key.half_builtins,
        unit_output,
    );
    if let Some(out) = key.output {
        s += &vector_view("y_vec", out, key.wide_words, false, key.contiguous);
        s.push_str(store_block_source(out));
    } else {
        s.push_str("fn store_block(b: u32, v: Block) {}\n");
    }
    if key.in_place {
        s += &in_place_view(key.input);
        s.push_str(block_words_source(key.input));
        s += &block_loader("load_block", "x_vec", key.input);
    } else if key.aligned {
        s += &vector_view("x_vec", key.input, key.wide_words, true, false);
        s.push_str(block_words_source(key.input));
        s += &block_loader("load_block", "x_vec", key.input);
    } else {
        s.push_str(
            "fn load_block(b: u32) -> Block { return Block(vec4<f32>(0.0), vec4<f32>(0.0)); }\n",
        );
    }
    if key.lse {
        let _ = writeln!(s, "fn store_lse(i: u32, v: f32) {{ lse_buf[i] = v; }}");
    } else {
        s.push_str("fn store_lse(i: u32, v: f32) {}\n");
    }
    if key.layout.split {
        let _ = writeln!(
            s,
            "fn store_partial(i: u32, st: Online) {{\n    \
             partials_buf[i] = vec4<u32>(bitcast<u32>(st.m), bitcast<u32>(st.s), st.flags, 0u);\n}}\n\
             fn load_partial(i: u32) -> Online {{\n    \
             let p = partials_buf[i];\n    \
             return Online(bitcast<f32>(p.x), bitcast<f32>(p.y), p.z);\n}}"
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
/// dtype's `store_pair`. In place, `x` reads `y`'s binding. `unit_output`: every output is
/// non-negative and below 65520, or NaN (`UNIT_OUTPUT` in shaders/io/half_bits.wgsl).
pub(super) fn xy_bindings(
    input: Storage,
    output: Option<Storage>,
    in_place: bool,
    half_builtins: bool,
    unit_output: bool,
) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if input != Storage::F32 || output.is_some_and(|o| o != Storage::F32) {
        let _ = writeln!(s, "const HALF_BUILTINS: bool = {half_builtins};");
        let _ = writeln!(s, "const UNIT_OUTPUT: bool = {unit_output};");
        s.push_str(HALF_BITS);
    }
    let xt = slot_type(input);
    if let Some(out) = output {
        let yt = slot_type(out);
        if out.packed() {
            // Packed outputs are atomic so that the word shared by two rows can be merged.
            let _ = writeln!(
                s,
                "fn y_raw_store(i: u32, v: u32) {{ atomicStore(&y_buf[i], v); }}\n\
                 fn y_raw_merge(i: u32, bits: u32, keep: u32) {{\n    \
                 atomicAnd(&y_buf[i], keep);\n    atomicOr(&y_buf[i], bits & ~keep);\n}}"
            );
        } else {
            let _ = writeln!(s, "fn y_raw_store(i: u32, v: {yt}) {{ y_buf[i] = v; }}");
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
        let _ = writeln!(s, "fn x_raw(i: u32) -> {xt} {{ return x_buf[i]; }}");
    }
    s.push_str(load_source(input));
    s += &elem_loader("load_x", "x_raw");
    s
}
