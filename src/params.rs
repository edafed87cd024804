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
