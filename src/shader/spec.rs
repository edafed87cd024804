//! Each kernel family's bindings, declared once (`PipelineKey::bindings`): the WGSL
//! declarations of a module (`declarations`), its pipeline's bind-group layout
//! (src/pipeline.rs) and the bind entries of every pass (`Pass::new` in src/launch/mod.rs)
//! all come from this list, so none of them can name a slot the others lack.

use super::keys::{
    BackwardKey, CeKey, CopyKey, KernelKey, PipelineKey, SampleKey, VocabEntry, VocabKey,
};
use super::slot;
use super::views::{slot_type, view_type, OUTPUT_VIEWS};
use crate::dtype::Storage;

/// Bytes of a forward kernel's split-row partial state per piece of a row: one `vec4<u32>`,
/// `[m, s, flags, 0]` (`store_partial` in src/shader/views.rs).
pub(crate) const FORWARD_PARTIAL_BYTES: u64 = 16;
/// Bytes of a cross-entropy partial state per piece: two `vec4<u32>`, `[m, s, flags, target
/// logit]` and `[the label-smoothing sums, 0, 0]` (`store_ce_partial` in src/shader/mod.rs).
pub(crate) const CE_PARTIAL_BYTES: u64 = 32;
/// Bytes of a backward kernel's partial state per piece: one f32 sum (`store_partial_sum`).
pub(crate) const BACKWARD_PARTIAL_BYTES: u64 = 4;

/// How a kernel reaches a binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// The uniform parameters (`var<uniform>`).
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// One binding of a kernel: its slot, WGSL name, element type and access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BindingDecl {
    pub slot: u32,
    /// The WGSL variable.
    pub name: &'static str,
    /// The type of one element of its runtime-sized array (the struct itself for uniforms).
    pub elem: &'static str,
    pub access: Access,
}

impl BindingDecl {
    const fn new(slot: u32, name: &'static str, elem: &'static str, access: Access) -> Self {
        BindingDecl {
            slot,
            name,
            elem,
            access,
        }
    }

    /// The WGSL declaration.
    pub(crate) fn wgsl(&self) -> String {
        let (slot, name, elem) = (self.slot, self.name, self.elem);
        match self.access {
            Access::Uniform => format!("@group(0) @binding({slot}) var<uniform> {name}: {elem};"),
            Access::Read => {
                format!("@group(0) @binding({slot}) var<storage, read> {name}: array<{elem}>;")
            }
            Access::ReadWrite => format!(
                "@group(0) @binding({slot}) var<storage, read_write> {name}: array<{elem}>;"
            ),
        }
    }
}

/// The uniforms every kernel declares first (`struct Params` of its family).
const PARAMS: BindingDecl = BindingDecl::new(slot::PARAMS, "params", "Params", Access::Uniform);

/// The WGSL declarations of `bindings`, one per line.
pub(super) fn declarations(bindings: &[BindingDecl]) -> String {
    bindings.iter().map(|b| b.wgsl() + "\n").collect()
}

/// The output binding `y_buf` of a storage: packed outputs are atomic, so that the word two
/// rows share can be merged (`y_raw_merge` in src/shader/views.rs).
fn output_decl(s: Storage) -> BindingDecl {
    let elem = if s.packed() {
        "atomic<u32>"
    } else {
        slot_type(s)
    };
    BindingDecl::new(slot::Y, "y_buf", elem, Access::ReadWrite)
}

/// The vector view `name` of a tensor at `slot` (`vector_view` in src/shader/views.rs).
fn view(slot: u32, name: &'static str, s: Storage, wide: bool, access: Access) -> BindingDecl {
    BindingDecl::new(slot, name, view_type(s, wide), access)
}

/// The input and output of a kernel: `x_buf` (none in place, where the kernel reads
/// `y_buf`) and `y_buf` where there is an output, each with its vector view where `vectors`
/// says so.
fn input_output(
    input: Storage,
    output: Option<Storage>,
    in_place: bool,
    vectors: [bool; 2],
    wide: bool,
) -> Vec<BindingDecl> {
    let mut b = Vec::new();
    if !in_place {
        b.push(BindingDecl::new(
            slot::X,
            "x_buf",
            slot_type(input),
            Access::Read,
        ));
        if vectors[0] {
            b.push(view(slot::X_VEC, "x_vec_buf", input, wide, Access::Read));
        }
    }
    if let Some(out) = output {
        b.push(output_decl(out));
        if vectors[1] && OUTPUT_VIEWS {
            b.push(view(slot::Y_VEC, "y_vec_buf", out, wide, Access::ReadWrite));
        }
    }
    b
}

/// A read-write f32 array: per-row results and scratch.
fn f32_out(slot: u32, name: &'static str) -> BindingDecl {
    BindingDecl::new(slot, name, "f32", Access::ReadWrite)
}

/// The split-row partial states of the forward and cross-entropy kernels, in 16-byte words.
const PARTIALS_DECL: BindingDecl = BindingDecl::new(
    slot::PARTIALS,
    "partials_buf",
    "vec4<u32>",
    Access::ReadWrite,
);

impl KernelKey {
    /// The forward kernel's bindings: the input (the output's in place) with its vector
    /// view where aligned, the output with its view, the logsumexp and the split-row
    /// partials (`FORWARD_PARTIAL_BYTES` per piece).
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        let mut b = vec![PARAMS];
        b.extend(input_output(
            self.input,
            self.output,
            self.in_place,
            [self.aligned, true],
            self.wide_words,
        ));
        if self.lse {
            b.push(f32_out(slot::LSE, "lse_buf"));
        }
        if self.layout.split {
            b.push(PARTIALS_DECL);
        }
        b
    }
}

impl CeKey {
    /// The cross-entropy kernels' bindings: logits, gradient (with their vector views where
    /// blocks load), logsumexp, targets, class weights, loss, the scratch words and the
    /// split-row partials (`CE_PARTIAL_BYTES` per piece).
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        let mut b = vec![PARAMS];
        b.extend(input_output(
            self.input,
            self.grad,
            self.in_place,
            [self.blocks; 2],
            self.wide_words,
        ));
        b.extend([
            f32_out(slot::LSE, "lse_buf"),
            BindingDecl::new(slot::TARGETS_OR_DY, "targets", "i32", Access::Read),
        ]);
        if self.weight {
            b.push(BindingDecl::new(
                slot::WEIGHT,
                "weight_buf",
                "f32",
                Access::Read,
            ));
        }
        b.extend([
            f32_out(slot::LOSS, "loss_buf"),
            BindingDecl::new(slot::META, "meta_buf", "u32", Access::ReadWrite),
        ]);
        if self.split {
            b.push(PARTIALS_DECL);
        }
        b
    }
}

impl BackwardKey {
    /// The backward kernels' bindings: `y` as the input, the gradient as the output, `dy`,
    /// all three as vectors where blocks load, and the split-row partial sums.
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        let wide = self.wide_words;
        let mut b = vec![PARAMS];
        b.extend(input_output(
            self.input,
            Some(self.output),
            false,
            [false; 2],
            wide,
        ));
        b.push(BindingDecl::new(
            slot::TARGETS_OR_DY,
            "dy_buf",
            slot_type(self.input),
            Access::Read,
        ));
        if self.blocks {
            b.push(view(
                slot::X_VEC,
                "x_vec_buf",
                self.input,
                wide,
                Access::Read,
            ));
            if OUTPUT_VIEWS {
                b.push(view(
                    slot::Y_VEC,
                    "y_vec_buf",
                    self.output,
                    wide,
                    Access::ReadWrite,
                ));
            }
            b.push(view(
                slot::DY_VEC,
                "dy_vec_buf",
                self.input,
                wide,
                Access::Read,
            ));
        }
        if self.split {
            b.push(f32_out(slot::PARTIALS, "partials_buf"));
        }
        b
    }
}

impl CopyKey {
    /// The copy kernel's bindings: words from `src` to `dst`.
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        vec![
            PARAMS,
            BindingDecl::new(slot::X, "src", self.word.wgsl_type(), Access::Read),
            BindingDecl::new(slot::Y, "dst", self.word.wgsl_type(), Access::ReadWrite),
        ]
    }
}

impl SampleKey {
    /// The sampling kernel's bindings: the logits, each row's parameters (`[T, top_k, top_p,
    /// min_p]` as words), each row's uniform (`[u, 0]`) or Philox offset (`[low, high]`), and
    /// each row's result (`[token, status, log-probability, kept]`).
    /// With `filtered`, the probabilities (f32, `[rows, cols]`) in place of the uniforms and
    /// the results. The scratch holds each row's state between stages (src/launch/sample.rs).
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        let mut b = vec![
            PARAMS,
            BindingDecl::new(slot::X, "x_buf", slot_type(self.input), Access::Read),
            BindingDecl::new(slot::SAMPLE_PARAMS, "sample_buf", "vec4<u32>", Access::Read),
            BindingDecl::new(slot::PARTIALS, "scratch_buf", "u32", Access::ReadWrite),
        ];
        if self.filtered {
            b.push(BindingDecl::new(slot::Y, "y_buf", "f32", Access::ReadWrite));
        } else {
            b.extend([
                BindingDecl::new(slot::UNIFORMS, "rand_buf", "vec2<u32>", Access::Read),
                BindingDecl::new(slot::RESULTS, "out_buf", "vec4<u32>", Access::ReadWrite),
            ]);
        }
        b
    }
}

/// Bytes of one row's vocabulary-parallel partial state: nine words (`PartialState` in
/// src/vocab_parallel/state.rs, `STATE_WORDS` in shaders/vocab_parallel.wgsl).
pub(crate) const VOCAB_STATE_BYTES: u64 = 36;

impl VocabKey {
    /// Whether the entry stores whole blocks of 8 through the output's vector view: the
    /// finish entries on CPU adapters (`CONTIGUOUS`).
    pub(crate) fn blocks(&self) -> bool {
        self.contiguous
            && self.output.is_some()
            && matches!(self.entry, VocabEntry::Forward | VocabEntry::CeGrad)
    }

    /// The bindings of the key's entry point: the logits and output where it reads or writes
    /// them, and of the targets, class weights, states, merged states, logsumexp, loss and
    /// scratch words those it uses.
    pub(super) fn bindings(&self) -> Vec<BindingDecl> {
        use VocabEntry::*;
        let e = self.entry;
        let mut b = vec![PARAMS];
        if let Some(input) = self.input {
            b.extend(input_output(
                input,
                self.output,
                self.in_place,
                [false, self.blocks()],
                false,
            ));
        }
        let ce_reads = matches!(e, CeRows | CeReduce | CeGrad) || (e == Partial && self.ce);
        if ce_reads {
            b.push(BindingDecl::new(
                slot::TARGETS_OR_DY,
                "targets",
                "i32",
                Access::Read,
            ));
        }
        if self.weight && matches!(e, Partial | CeGrad) {
            b.push(BindingDecl::new(
                slot::WEIGHT,
                "weight_buf",
                "f32",
                Access::Read,
            ));
        }
        match e {
            Partial => b.push(BindingDecl::new(
                slot::PARTIALS,
                "state_buf",
                "u32",
                Access::ReadWrite,
            )),
            Merge => b.extend([
                BindingDecl::new(slot::PARTIALS, "state_buf", "u32", Access::Read),
                BindingDecl::new(slot::MERGED, "merged_buf", "u32", Access::ReadWrite),
            ]),
            _ => b.push(BindingDecl::new(
                slot::MERGED,
                "merged_buf",
                "u32",
                Access::Read,
            )),
        }
        if e == CeRows || (e == Forward && self.lse) {
            b.push(f32_out(slot::LSE, "lse_buf"));
        }
        if e == CeRows {
            b.push(f32_out(slot::LOSS, "loss_buf"));
        }
        if e == CeReduce {
            b.push(BindingDecl::new(
                slot::LOSS,
                "loss_buf",
                "f32",
                Access::Read,
            ));
        }
        if matches!(e, CeReduce | CeGrad) {
            let access = if e == CeReduce {
                Access::ReadWrite
            } else {
                Access::Read
            };
            b.push(BindingDecl::new(slot::META, "meta_buf", "u32", access));
        }
        b
    }
}

impl PipelineKey {
    /// Every binding the kernel declares, the uniforms first.
    pub(crate) fn bindings(&self) -> Vec<BindingDecl> {
        match self {
            PipelineKey::Forward(k, _) => k.bindings(),
            PipelineKey::CrossEntropy(k, _) => k.bindings(),
            PipelineKey::Backward(k, _) => k.bindings(),
            PipelineKey::Copy(k) => k.bindings(),
            PipelineKey::Sample(k) => k.bindings(),
            PipelineKey::Vocab(k) => k.bindings(),
        }
    }

    /// The storage bindings (every binding but the uniforms).
    pub(crate) fn storage_bindings(&self) -> Vec<BindingDecl> {
        let mut b = self.bindings();
        b.retain(|b| b.access != Access::Uniform);
        b
    }
}
