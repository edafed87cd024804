//! Uniform structs shared with the shaders. Each mirrors a WGSL struct field for field.

use bytemuck::{Pod, Zeroable};

/// Uniform of the forward kernels. WGSL side: `struct Params` in shaders/softmax.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq, Hash)]
pub(crate) struct ForwardParams {
    pub rows: u32,
    pub cols: u32,
    pub x_base: u32,
    pub y_base: u32,
    pub lse_base: u32,
    pub masked_zeros: u32,
    /// `1 / temperature` as bits, so that the struct can be hashed.
    pub inv_t: u32,
    /// Split-row pieces per row; 1 otherwise.
    pub chunks: u32,
}

const _: () = assert!(std::mem::size_of::<ForwardParams>() == 32);

/// Uniform of the cross-entropy kernels. WGSL side: `struct Params` in
/// shaders/cross_entropy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct CeParams {
    pub rows: u32,
    pub cols: u32,
    pub x_base: u32,
    pub y_base: u32,
    pub row0: u32,
    pub ignore_index: i32,
    pub reduction: u32,
    /// Split-row: pieces per row (1 otherwise).
    pub chunks: u32,
    pub inv_t: f32,
    pub smoothing: f32,
    pub z_loss: f32,
    pub grad_scale: f32,
    pub _pad1: [u32; 4],
}

const _: () = assert!(std::mem::size_of::<CeParams>() == 64);

/// Uniform of the backward kernels. WGSL side: `struct Params` in shaders/backward.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct BackwardParams {
    pub rows: u32,
    pub cols: u32,
    pub x_base: u32,
    pub y_base: u32,
    pub dy_base: u32,
    /// Split-row: pieces per row (1 otherwise).
    pub chunks: u32,
    pub _pad: [u32; 2],
}

const _: () = assert!(std::mem::size_of::<BackwardParams>() == 32);

/// Uniform of the copy kernel. WGSL side: `struct Params` in shaders/copy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct CopyParams {
    pub words: u32,
    pub groups_x: u32,
    /// Bits of a value no exp sum equals (NaN), see the WGSL side.
    pub sentinel: u32,
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<CopyParams>() == 16);

/// Uniform of the sampling kernel. WGSL side: `struct Params` in shaders/sample.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct SampleParams {
    pub rows: u32,
    pub cols: u32,
    pub x_base: u32,
    pub row0: u32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    pub y_base: u32,
    pub stage: u32,
    pub round: u32,
    pub chunks: u32,
    pub chunk_len: u32,
    pub row_words: u32,
}

const _: () = assert!(std::mem::size_of::<SampleParams>() == 48);

/// Each uniform struct against its WGSL side, in every catalogued module: the same members
/// in the same order at the same byte offsets, and the same size (padding aside).
/// Uniform of the vocabulary-parallel kernels. WGSL side: `struct Params` in
/// shaders/vocab_parallel.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct VocabParams {
    pub rows: u32,
    pub cols: u32,
    pub x_base: u32,
    pub y_base: u32,
    pub row0: u32,
    pub first_col: u32,
    /// `merge_rows`: states per row.
    pub count: u32,
    pub ignore_index: i32,
    pub reduction: u32,
    pub inv_t: f32,
    pub smoothing: f32,
    pub z_loss: f32,
    pub grad_scale: f32,
    /// 0 softmax, 1 log-softmax.
    pub op: u32,
    pub masked_zeros: u32,
    pub write_lse: u32,
    /// `partial`: pieces per row (1: a workgroup per row, states straight into the call's).
    pub pieces: u32,
    /// `partial` in pieces: the call's rows (pieces' states lie piece-major).
    pub total_rows: u32,
    pub _pad: [u32; 2],
}

const _: () = assert!(std::mem::size_of::<VocabParams>() == 80);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Members other than padding, with their byte offsets, and the struct's size.
    type Layout = (Vec<(String, usize)>, usize);

    /// The layout of `struct Params` in a WGSL module, as naga lays it out.
    fn wgsl_params(source: &str) -> Layout {
        let module = naga::front::wgsl::parse_str(source).expect("the module parses");
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .expect("a struct Params");
        let naga::TypeInner::Struct { members, span } = &ty.inner else {
            panic!("Params is not a struct");
        };
        let members = members
            .iter()
            .filter_map(|m| {
                let name = m.name.clone()?;
                (!name.starts_with('_')).then_some((name, m.offset as usize))
            })
            .collect();
        (members, *span as usize)
    }

    fn layout<T>(members: &[(&str, usize)]) -> Layout {
        let named = members.iter().map(|&(n, o)| (n.to_string(), o)).collect();
        (named, size_of::<T>())
    }

    #[test]
    fn uniform_structs_match_their_wgsl_in_every_module() {
        let forward = layout::<ForwardParams>(&[
            ("rows", offset_of!(ForwardParams, rows)),
            ("cols", offset_of!(ForwardParams, cols)),
            ("x_base", offset_of!(ForwardParams, x_base)),
            ("y_base", offset_of!(ForwardParams, y_base)),
            ("lse_base", offset_of!(ForwardParams, lse_base)),
            ("masked_zeros", offset_of!(ForwardParams, masked_zeros)),
            ("inv_t", offset_of!(ForwardParams, inv_t)),
            ("chunks", offset_of!(ForwardParams, chunks)),
        ]);
        let cross_entropy = layout::<CeParams>(&[
            ("rows", offset_of!(CeParams, rows)),
            ("cols", offset_of!(CeParams, cols)),
            ("x_base", offset_of!(CeParams, x_base)),
            ("y_base", offset_of!(CeParams, y_base)),
            ("row0", offset_of!(CeParams, row0)),
            ("ignore_index", offset_of!(CeParams, ignore_index)),
            ("reduction", offset_of!(CeParams, reduction)),
            ("chunks", offset_of!(CeParams, chunks)),
            ("inv_t", offset_of!(CeParams, inv_t)),
            ("smoothing", offset_of!(CeParams, smoothing)),
            ("z_loss", offset_of!(CeParams, z_loss)),
            ("grad_scale", offset_of!(CeParams, grad_scale)),
        ]);
        let backward = layout::<BackwardParams>(&[
            ("rows", offset_of!(BackwardParams, rows)),
            ("cols", offset_of!(BackwardParams, cols)),
            ("x_base", offset_of!(BackwardParams, x_base)),
            ("y_base", offset_of!(BackwardParams, y_base)),
            ("dy_base", offset_of!(BackwardParams, dy_base)),
            ("chunks", offset_of!(BackwardParams, chunks)),
        ]);
        let copy = layout::<CopyParams>(&[
            ("words", offset_of!(CopyParams, words)),
            ("groups_x", offset_of!(CopyParams, groups_x)),
            ("sentinel", offset_of!(CopyParams, sentinel)),
        ]);
        let sample = layout::<SampleParams>(&[
            ("rows", offset_of!(SampleParams, rows)),
            ("cols", offset_of!(SampleParams, cols)),
            ("x_base", offset_of!(SampleParams, x_base)),
            ("row0", offset_of!(SampleParams, row0)),
            ("seed_lo", offset_of!(SampleParams, seed_lo)),
            ("seed_hi", offset_of!(SampleParams, seed_hi)),
            ("y_base", offset_of!(SampleParams, y_base)),
            ("stage", offset_of!(SampleParams, stage)),
            ("round", offset_of!(SampleParams, round)),
            ("chunks", offset_of!(SampleParams, chunks)),
            ("chunk_len", offset_of!(SampleParams, chunk_len)),
            ("row_words", offset_of!(SampleParams, row_words)),
        ]);
        let vocab = layout::<VocabParams>(&[
            ("rows", offset_of!(VocabParams, rows)),
            ("cols", offset_of!(VocabParams, cols)),
            ("x_base", offset_of!(VocabParams, x_base)),
            ("y_base", offset_of!(VocabParams, y_base)),
            ("row0", offset_of!(VocabParams, row0)),
            ("first_col", offset_of!(VocabParams, first_col)),
            ("count", offset_of!(VocabParams, count)),
            ("ignore_index", offset_of!(VocabParams, ignore_index)),
            ("reduction", offset_of!(VocabParams, reduction)),
            ("inv_t", offset_of!(VocabParams, inv_t)),
            ("smoothing", offset_of!(VocabParams, smoothing)),
            ("z_loss", offset_of!(VocabParams, z_loss)),
            ("grad_scale", offset_of!(VocabParams, grad_scale)),
            ("op", offset_of!(VocabParams, op)),
            ("masked_zeros", offset_of!(VocabParams, masked_zeros)),
            ("write_lse", offset_of!(VocabParams, write_lse)),
            ("pieces", offset_of!(VocabParams, pieces)),
            ("total_rows", offset_of!(VocabParams, total_rows)),
        ]);
        let mut checked = 0;
        for (name, source) in crate::shader::all_sources() {
            let want = match name.split(' ').next() {
                Some("KernelKey") => &forward,
                Some("CeKey") => &cross_entropy,
                Some("BackwardKey") => &backward,
                Some("CopyKey") => &copy,
                Some("SampleKey") => &sample,
                Some("VocabKey") => &vocab,
                other => panic!("a module of no known family: {other:?}"),
            };
            assert_eq!(&wgsl_params(&source), want, "{name}");
            checked += 1;
        }
        assert!(checked > 1000, "only {checked} modules");
    }
}
