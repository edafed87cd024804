//! Vocabulary-parallel softmax, log-softmax, logsumexp and cross-entropy: each row's
//! vocabulary split across devices or processes (tensor parallelism, as Megatron-LM's
//! `vocab_parallel_cross_entropy`), no device holding a whole row, and no logit gathered.
//!
//! Three steps per call:
//! 1. **partial**: each shard computes a [`PartialState`] per row over its columns
//!    ([`Engine::partial_states`], [`Engine::cross_entropy_partial_states`], or
//!    [`Engine::record_partial_states`] on the caller's buffers);
//! 2. **merge**: the shards' states merge row by row, on the host ([`merge`]), on a device
//!    ([`Engine::record_merge_states`]), or through any collective library (with the `mpi`
//!    feature, `vocab_parallel::mpi::all_merge`); a state is 36 bytes per row;
//! 3. **finish**: each shard writes its own columns from the merged state
//!    ([`Engine::finish_forward`], [`Engine::finish_cross_entropy`], and their
//!    `record_` forms): the softmax or log-softmax slice, the rows' logsumexp, and for
//!    cross-entropy the loss (the same on every shard, counted once) and the gradient of the
//!    slice, in place or not.
//!
//! Every shard must use the same temperature and options. [`across`] runs the three steps
//! over several engines in one process.

pub mod across;
mod device;
mod host;
#[cfg(feature = "mpi")]
pub mod mpi;
mod state;

pub use device::{FinishArgs, FinishCrossEntropyArgs, MergeArgs, PartialArgs, PartialOptions};
pub use state::{merge, merge_into, PartialState, STATE_BYTES};

use crate::error::{Error, Result};
use crate::options::Shape;
#[cfg(doc)]
use crate::Engine;

/// One shard of a `[rows, vocabulary]` tensor: `cols` columns from global column
/// `first_col`, of every row. Its logits are a `[rows, cols]` row-major tensor of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Rows (the same on every shard).
    pub rows: usize,
    /// Columns this shard holds.
    pub cols: usize,
    /// The global index of its first column.
    pub first_col: usize,
}

impl Shard {
    /// The shard's own `[rows, cols]` shape.
    pub fn shape(&self) -> Shape {
        Shape::new(self.rows, self.cols)
    }

    /// Checks the shape and that global columns fit the kernels' 32-bit indices.
    pub(crate) fn validate(&self) -> Result<()> {
        self.shape().validate()?;
        if self.first_col + self.cols > u32::MAX as usize {
            return Err(Error::InvalidShape {
                rows: self.rows,
                cols: self.first_col + self.cols,
                reason: "the shard's last global column does not fit in 32 bits",
            });
        }
        Ok(())
    }
}

/// Splits `cols` columns into `parts` shards as even as can be (the first ones one column
/// wider): their widths.
pub fn even_widths(cols: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|k| cols / parts + usize::from(k < cols % parts))
        .collect()
}
