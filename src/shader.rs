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
const SOFTMAX: &str = include_str!("../shaders/softmax.wgsl");
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
}

/// Everything that selects a distinct compiled pipeline.
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
}

impl KernelKey {
    /// The storage bindings this kernel declares, as (slot, read_only).
    pub(crate) fn storage_bindings(&self) -> Vec<(u32, bool)> {
        let mut b = Vec::with_capacity(3);
        if !self.in_place {
            b.push((slot::X, true));
        }
        if self.output.is_some() {
            b.push((slot::Y, false));
        }
        if self.lse {
            b.push((slot::LSE, false));
        }
        b
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

/// The bindings and their raw accessors: `x_raw(i)`, `y_raw_store(i, v)` (and, for packed
/// outputs, `y_raw_merge(i, bits, keep)` for words shared with a neighbouring row),
/// `store_lse(i, v)`.
fn bindings(key: &KernelKey) -> String {
    use std::fmt::Write;
    let mut s = format!(
        "@group(0) @binding({}) var<uniform> params: Params;\n",
        slot::PARAMS
    );
    if key.input != Storage::F32 || key.output.is_some_and(|o| o != Storage::F32) {
        s.push_str(HALF_BITS);
    }
    let xt = slot_type(key.input);
    if let Some(out) = key.output {
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
    if key.in_place {
        let read = if key.output.is_some_and(Storage::packed) {
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
    s.push_str(load_source(key.input));
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
    s
}

fn op_index(op: Forward) -> u32 {
    match op {
        Forward::Softmax => 0,
        Forward::LogSoftmax => 1,
        Forward::LogSumExp => 2,
    }
}

/// The complete WGSL module of a kernel.
pub(crate) fn source(key: &KernelKey) -> String {
    let native_f16 = key.input == Storage::F16Native || key.output == Some(Storage::F16Native);
    let header = format!(
        "{enable}const WG: u32 = {wg}u;\nconst OP: u32 = {op}u;\nconst CONTIGUOUS: bool = {contiguous};\nconst HAS_LSE: bool = {lse};\n",
        enable = if native_f16 { "enable f16;\n" } else { "" },
        wg = key.workgroup,
        op = op_index(key.op),
        contiguous = key.contiguous,
        lse = key.lse,
    );
    [
        header.as_str(),
        &bindings(key),
        COMMON,
        REDUCE_WORKGROUP,
        SOFTMAX,
    ]
    .join("\n")
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
                    for contiguous in [false, true] {
                        let key = KernelKey {
                            op,
                            input,
                            output,
                            in_place,
                            lse: true,
                            contiguous,
                            workgroup: 256,
                        };
                        out.push((format!("{key:?}"), source(&key)));
                    }
                }
            }
        }
    }
    out
}
