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
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<ForwardParams>() == 32);
