//! Element types of logits and outputs, and how each is stored on the device.

use half::{bf16, f16};

/// The element type of a tensor in memory. Arithmetic is always f32 whatever the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: the upper 16 bits of an f32.
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Bytes that `n` elements occupy in a buffer: padded to whole 4-byte words, since
    /// 16-bit types are read and written two per word.
    pub const fn buffer_bytes(self, n: u64) -> u64 {
        (n * self.size()).div_ceil(4) * 4
    }
}

/// A host element type the slice API takes and returns.
pub trait Element: bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static {
    /// Its device dtype.
    const DTYPE: DType;
    /// Converts to f32 exactly.
    fn to_f32(self) -> f32;
    /// Rounds an f32 to nearest (ties to even).
    fn from_f32(v: f32) -> Self;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// How a dtype is laid out in a shader binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Storage {
    /// `array<f32>`.
    F32,
    /// `array<f16>` with `enable f16;` (needs SHADER_F16).
    F16Native,
    /// f16 pairs packed in `array<u32>`.
    F16Packed,
    /// bf16 pairs packed in `array<u32>`.
    Bf16Packed,
}

impl Storage {
    /// Whether two elements share one 32-bit word.
    pub(crate) fn packed(self) -> bool {
        matches!(self, Storage::F16Packed | Storage::Bf16Packed)
    }
}
