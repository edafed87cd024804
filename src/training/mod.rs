//! Training operations: fused cross-entropy with its gradient (`cross_entropy`), softmax and
//! log_softmax backward (`backward`), each recorded on the device from its launch
//! (src/launch/) and wrapped for host slices.

mod backward;
mod cross_entropy;

pub use cross_entropy::{CrossEntropyArgs, CrossEntropyResult, GradOutput};

use crate::dtype::DType;
use crate::record::TensorRef;

fn f32_ref<'a>(t: TensorRef<'a>) -> TensorRef<'a> {
    TensorRef {
        dtype: DType::F32,
        ..t
    }
}
