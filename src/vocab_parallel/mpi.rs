//! Behind the `mpi` feature: the merge step across MPI ranks, each rank holding one shard.
//!
//! [`all_merge`] all-gathers every rank's states (36 bytes per row from each rank) and
//! merges them in rank order on every rank, so that every rank gets the same bits, which a
//! reduction with a user-defined operation does not promise.
//!
//! ```no_run
//! use mpi::traits::*;
//! use softmax_wgpu::vocab_parallel::{self, Shard};
//! use softmax_wgpu::{Engine, EngineOptions, Forward, SoftmaxOptions};
//! let universe = mpi::initialize().unwrap();
//! let world = universe.world();
//! let engine = Engine::new_blocking(EngineOptions::default())?;
//! let (rows, cols) = (8, 32_000);          // each rank's own columns
//! let shard = Shard { rows, cols, first_col: world.rank() as usize * cols };
//! let logits = vec![0.0f32; rows * cols];   // this rank's [rows, cols] slice
//! let o = SoftmaxOptions::default();
//! let states = engine.partial_states(&logits, shard, &o)?;
//! let merged = vocab_parallel::mpi::all_merge(&world, &states, o.temperature)?;
//! let probs = engine.finish_forward::<f32, f32>(Forward::Softmax, &logits, shard, &merged, &o)?;
//! # Ok::<(), softmax_wgpu::Error>(())
//! ```

use ::mpi::collective::SystemOperation;
use ::mpi::traits::{Communicator, CommunicatorCollectives};

use super::{merge, PartialState, STATE_BYTES};
use crate::error::{Error, Result};

const WORDS: usize = STATE_BYTES / 4;

/// Merges every rank's `local` states (one per row; every rank the same rows) into the
/// states of the whole vocabulary, on every rank: an all-gather of `9 * rows` words per
/// rank, then [`merge`] in rank order. Collective: every rank of `comm` must call it.
pub fn all_merge<C: Communicator>(
    comm: &C,
    local: &[PartialState],
    temperature: f32,
) -> Result<Vec<PartialState>> {
    // Every rank must bring as many rows: the all-gather's counts must agree.
    let rows = local.len() as u64;
    let (mut least, mut most) = (0u64, 0u64);
    comm.all_reduce_into(&rows, &mut least, SystemOperation::min());
    comm.all_reduce_into(&rows, &mut most, SystemOperation::max());
    if least != most {
        return Err(Error::ShapeMismatch {
            what: "partial states of this rank (ranks disagree on the rows)",
            got: local.len(),
            expected: most as usize,
            rows: most as usize,
            cols: comm.size() as usize,
        });
    }
    let send: &[u32] = bytemuck::cast_slice(local);
    let mut all = vec![0u32; send.len() * comm.size() as usize];
    comm.all_gather_into(send, &mut all[..]);
    let per_rank: Vec<&[PartialState]> = all
        .chunks(WORDS * local.len().max(1))
        .map(bytemuck::cast_slice)
        .collect();
    if local.is_empty() {
        return Ok(Vec::new());
    }
    merge(&per_rank, temperature)
}
