//! The copy kernel's words and kinds (shaders/copy.wgsl): the benchmarks' roofline and the
//! exp ceilings, part of the copy kernel's key. The bench (`crate::bench`) runs them.

use crate::dtype::DType;

/// The word the copy kernel moves with each load and store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyWord {
    /// 16 bytes (`vec4<u32>`), on every adapter.
    Bytes16,
    /// 32 bytes (`vec4<u64>`), where the device has SHADER_INT64: on lavapipe 1.35 to 1.8
    /// times as fast as 16-byte words (Mesa loads and stores every component separately).
    Bytes32,
}

impl CopyWord {
    /// Bytes per word.
    pub fn bytes(self) -> u64 {
        match self {
            CopyWord::Bytes16 => 16,
            CopyWord::Bytes32 => 32,
        }
    }

    /// The WGSL type of a word.
    pub(crate) fn wgsl_type(self) -> &'static str {
        match self {
            CopyWord::Bytes16 => "vec4<u32>",
            CopyWord::Bytes32 => "vec4<u64>",
        }
    }

    /// Words per invocation: 128 bytes either way.
    pub(crate) fn per_thread(self) -> u32 {
        (128 / self.bytes()) as u32
    }
}

/// What the copy kernel does with the words it moves: the roofline, or one of the exp
/// ceilings, which do the least arithmetic any kernel of the family must (shaders/copy.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyKind {
    /// A plain copy: the roofline.
    Copy,
    /// Every element, of this dtype, replaced by its exponential: one read, one exp, one
    /// write per element (and the conversions of 16-bit elements, f16 narrowed as softmax
    /// probabilities are: exact for results below 65520), the least a softmax does.
    Exp(DType),
    /// Every element, of this dtype, read and its exponential summed (nothing written): the
    /// least a logsumexp does.
    ExpSum(DType),
}

impl CopyKind {
    /// The kernel's `KIND` (shaders/copy.wgsl).
    pub(crate) fn index(self) -> u32 {
        match self {
            CopyKind::Copy => 0,
            CopyKind::Exp(_) => 1,
            CopyKind::ExpSum(_) => 2,
        }
    }

    /// The elements an exp ceiling reads (F32 for a plain copy, which moves words).
    pub(crate) fn element(self) -> DType {
        match self {
            CopyKind::Copy => DType::F32,
            CopyKind::Exp(d) | CopyKind::ExpSum(d) => d,
        }
    }
}

impl std::fmt::Display for CopyWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CopyWord::Bytes16 => "16-byte words",
            CopyWord::Bytes32 => "32-byte words",
        })
    }
}
