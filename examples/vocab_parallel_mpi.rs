//! Vocabulary-parallel softmax and cross-entropy across MPI ranks: each rank owns one shard
//! of the vocabulary (unequal widths) on its own adapter (rank k takes adapter k modulo those
//! found), computes its partial states, all-merges them with MPI, and finishes its slice.
//! Rank 0 gathers the slices and checks them against the f64 oracle and the unsharded
//! result; any failure ends the run with a non-zero status.
//!
//! ```sh
//! cargo build --release --features mpi --example vocab_parallel_mpi
//! mpirun -n 2 target/release/examples/vocab_parallel_mpi      # as root: --allow-run-as-root
//! ```

use mpi::traits::*;
use softmax_wgpu::vocab_parallel::{self, Shard};
use softmax_wgpu::{
    accuracy, CrossEntropyOptions, Engine, EngineOptions, Forward, Shape, SoftmaxOptions,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    softmax_wgpu::quiet_headless_vulkan();
    let universe = mpi::initialize().ok_or("MPI is already initialised")?;
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let engines = Engine::all_blocking(EngineOptions::default())?;
    let engine = &engines[rank % engines.len()];

    // Every rank builds the same logits; each keeps its own columns. Widths are unequal:
    // the last rank takes the remainder (odd, so that 16-bit rows would start mid-word).
    let (rows, cols) = (8, 50_001);
    let shape = Shape::new(rows, cols);
    let logits = accuracy::random_logits(rows * cols, 15.0, 11);
    let base = cols / size / 2 * 2 + 1;
    let widths: Vec<usize> = (0..size)
        .map(|k| {
            if k + 1 < size {
                base
            } else {
                cols - base * (size - 1)
            }
        })
        .collect();
    let first_col: usize = widths[..rank].iter().sum();
    let shard = Shard {
        rows,
        cols: widths[rank],
        first_col,
    };
    let mine: Vec<f32> = logits
        .chunks(cols)
        .flat_map(|r| &r[first_col..first_col + shard.cols])
        .copied()
        .collect();
    println!(
        "rank {rank} of {size}: columns {first_col}..{} on {}",
        first_col + shard.cols,
        engine.info()
    );

    // Softmax: partial, all-merge, finish.
    let o = SoftmaxOptions::default();
    let states = engine.partial_states(&mine, shard, &o)?;
    let merged = vocab_parallel::mpi::all_merge(&world, &states, o.temperature)?;
    let probs = engine.finish_forward::<f32, f32>(Forward::Softmax, &mine, shard, &merged, &o)?;

    // Cross-entropy with label smoothing and the gradient of this rank's slice.
    let targets: Vec<i64> = (0..rows).map(|r| ((r * 7919 + 13) % cols) as i64).collect();
    let co = CrossEntropyOptions {
        label_smoothing: 0.1,
        z_loss: 1e-4,
        ..Default::default()
    };
    let ce_states = engine.cross_entropy_partial_states(&mine, shard, &targets, &co)?;
    let ce_merged = vocab_parallel::mpi::all_merge(&world, &ce_states, co.temperature)?;
    let ce = engine.finish_cross_entropy(&mine, shard, &targets, &ce_merged, &co, true)?;
    let grad = ce.grad.as_deref().unwrap_or_default();

    // Rank 0 gathers every rank's slices (padded to the widest) and checks the whole.
    let widest = *widths.iter().max().unwrap_or(&0);
    let pad = |v: &[f32]| {
        let mut out = vec![0.0f32; rows * widest];
        for (row, part) in v.chunks(shard.cols).enumerate() {
            out[row * widest..][..shard.cols].copy_from_slice(part);
        }
        out
    };
    let root = world.process_at_rank(0);
    let (p_send, g_send) = (pad(&probs.values), pad(grad));
    if rank != 0 {
        root.gather_into(&p_send[..]);
        root.gather_into(&g_send[..]);
        return Ok(());
    }
    let mut p_all = vec![0.0f32; size * rows * widest];
    let mut g_all = vec![0.0f32; size * rows * widest];
    root.gather_into_root(&p_send[..], &mut p_all[..]);
    root.gather_into_root(&g_send[..], &mut g_all[..]);
    let unpad = |all: &[f32]| {
        let mut full = vec![0.0f32; rows * cols];
        let mut first = 0;
        for (k, &w) in widths.iter().enumerate() {
            for row in 0..rows {
                let src = &all[(k * rows + row) * widest..][..w];
                full[row * cols + first..][..w].copy_from_slice(src);
            }
            first += w;
        }
        full
    };
    let (p_full, g_full) = (unpad(&p_all), unpad(&g_all));
    let report = accuracy::check(Forward::Softmax, &logits, shape, &o, &p_full);
    let want = engines[0].cross_entropy(&logits, &targets, shape, &co, true)?;
    let g_want = want.grad.unwrap_or_default();
    let g_diff = g_full
        .iter()
        .zip(&g_want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("softmax over {size} ranks: {report}");
    println!(
        "cross-entropy over {size} ranks: loss {:.6} (unsharded {:.6}), max |grad - unsharded| {g_diff:.2e}",
        ce.loss, want.loss
    );
    let loss_ok = (ce.loss - want.loss).abs() <= 1e-5 * want.loss.abs().max(1.0);
    // Gradients are p / rows-scale values: an f32 contract error of a few ulps of 1 / rows.
    let grad_ok = g_diff <= 1e-6;
    if !report.ok() || !loss_ok || !grad_ok {
        return Err("sharded results differ from the unsharded ones beyond the contract".into());
    }
    Ok(())
}
