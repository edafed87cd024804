//! The three steps over several engines in one process: a host tensor's vocabulary split
//! into shards, each shard's partial states on its engine, the merge on the host, each
//! shard finished on its engine, and the slices put back together.
//!
//! ```no_run
//! use softmax_wgpu::vocab_parallel::across;
//! use softmax_wgpu::{Engine, EngineOptions, Forward, Shape, SoftmaxOptions};
//! let engines = Engine::all_blocking(EngineOptions::default())?;
//! let (rows, cols) = (4, 128_256);
//! let logits = vec![0.5f32; rows * cols];
//! let shards = across::even(&engines, cols);             // one shard per adapter
//! let p = across::forward::<f32, f32>(&shards, Forward::Softmax, &logits,
//!                                     Shape::new(rows, cols), &SoftmaxOptions::default())?;
//! assert_eq!(p.values.len(), rows * cols);
//! # Ok::<(), softmax_wgpu::Error>(())
//! ```

use super::{even_widths, merge, PartialState, Shard};
use crate::dtype::Element;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::ForwardResult;
use crate::options::{CrossEntropyOptions, Forward, Shape, SoftmaxOptions};
use crate::training::CrossEntropyResult;

/// The shards of a call: each one's engine and width, in column order (an engine may hold
/// several).
pub type Shards<'a> = [(&'a Engine, usize)];

/// One shard per engine, widths as even as can be.
pub fn even(engines: &[Engine], cols: usize) -> Vec<(&Engine, usize)> {
    engines
        .iter()
        .zip(even_widths(cols, engines.len()))
        .collect()
}

/// The shards of `shape` (their global first columns), checked to cover its columns.
fn layout(shards: &Shards, shape: Shape) -> Result<Vec<Shard>> {
    shape.validate()?;
    let total: usize = shards.iter().map(|s| s.1).sum();
    if shards.is_empty() || total != shape.cols || shards.iter().any(|s| s.1 == 0) {
        return Err(Error::ShapeMismatch {
            what: "shard widths (none empty)",
            got: total,
            expected: shape.cols,
            rows: shape.rows,
            cols: shape.cols,
        });
    }
    let mut first = 0;
    Ok(shards
        .iter()
        .map(|&(_, cols)| {
            let s = Shard {
                rows: shape.rows,
                cols,
                first_col: first,
            };
            first += cols;
            s
        })
        .collect())
}

/// Columns `[first, first + cols)` of every row: a shard's own logits.
fn columns<T: Copy>(x: &[T], shape: Shape, s: Shard) -> Vec<T> {
    x.chunks(shape.cols)
        .flat_map(|row| &row[s.first_col..s.first_col + s.cols])
        .copied()
        .collect()
}

/// Writes a shard's `[rows, cols]` slice into the full `[rows, C]` tensor.
fn put_columns<T: Copy>(full: &mut [T], shape: Shape, s: Shard, slice: &[T]) {
    for (row, part) in full.chunks_mut(shape.cols).zip(slice.chunks(s.cols)) {
        row[s.first_col..s.first_col + s.cols].copy_from_slice(part);
    }
}

/// Softmax, log-softmax or logsumexp of `logits` `[rows, C]` with the vocabulary split over
/// `shards`: the full result, as [`Engine::forward_async`] gives it (logsumexp always).
pub async fn forward_async<T: Element, U: Element>(
    shards: &Shards<'_>,
    op: Forward,
    logits: &[T],
    shape: Shape,
    options: &SoftmaxOptions,
) -> Result<ForwardResult<U>> {
    let layout = layout(shards, shape)?;
    shape.expect_len("logits", logits.len())?;
    let mut parts = Vec::with_capacity(layout.len());
    let mut states = Vec::with_capacity(layout.len());
    for (&(engine, _), &s) in shards.iter().zip(&layout) {
        let x = columns(logits, shape, s);
        states.push(engine.partial_states_async(&x, s, options).await?);
        parts.push(x);
    }
    let merged = merge_all(&states, options.temperature)?;
    let mut values = if op == Forward::LogSumExp {
        Vec::new()
    } else {
        vec![U::from_f32(0.0); shape.len()]
    };
    let mut lse = None;
    for ((&(engine, _), &s), x) in shards.iter().zip(&layout).zip(&parts) {
        let r = engine
            .finish_forward_async::<T, U>(op, x, s, &merged, options)
            .await?;
        if op != Forward::LogSumExp {
            put_columns(&mut values, shape, s, &r.values);
        }
        lse = lse.or(r.lse);
    }
    Ok(ForwardResult { values, lse })
}

fn merge_all(states: &[Vec<PartialState>], temperature: f32) -> Result<Vec<PartialState>> {
    let refs: Vec<&[PartialState]> = states.iter().map(Vec::as_slice).collect();
    merge(&refs, temperature)
}

/// Cross-entropy of `logits` `[rows, C]` against `targets` with the vocabulary split over
/// `shards`: the result [`Engine::cross_entropy_async`] gives, the gradient put together
/// from the shards' slices. `options.weight`, if any, holds all `C` class weights.
pub async fn cross_entropy_async<T: Element>(
    shards: &Shards<'_>,
    logits: &[T],
    targets: &[i64],
    shape: Shape,
    options: &CrossEntropyOptions,
    with_grad: bool,
) -> Result<CrossEntropyResult<T>> {
    let layout = layout(shards, shape)?;
    shape.expect_len("logits", logits.len())?;
    options.validate(shape.cols)?;
    let shard_options = |s: Shard| CrossEntropyOptions {
        weight: options
            .weight
            .as_ref()
            .map(|w| w[s.first_col..s.first_col + s.cols].to_vec()),
        ..options.clone()
    };
    let mut parts = Vec::with_capacity(layout.len());
    let mut states = Vec::with_capacity(layout.len());
    for (&(engine, _), &s) in shards.iter().zip(&layout) {
        let x = columns(logits, shape, s);
        let o = shard_options(s);
        states.push(
            engine
                .cross_entropy_partial_states_async(&x, s, targets, &o)
                .await?,
        );
        parts.push(x);
    }
    let merged = merge_all(&states, options.temperature)?;
    let mut grad = with_grad.then(|| vec![T::from_f32(0.0); shape.len()]);
    let mut result = None;
    for ((&(engine, _), &s), x) in shards.iter().zip(&layout).zip(&parts) {
        let r = engine
            .finish_cross_entropy_async(x, s, targets, &merged, &shard_options(s), with_grad)
            .await?;
        if let (Some(full), Some(g)) = (grad.as_mut(), &r.grad) {
            put_columns(full, shape, s, g);
        }
        result.get_or_insert(r);
    }
    let first = result.expect("at least one shard");
    Ok(CrossEntropyResult {
        grad,
        ..CrossEntropyResult {
            grad: None,
            ..first
        }
    })
}

/// Blocking [`forward_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn forward<T: Element, U: Element>(
    shards: &Shards<'_>,
    op: Forward,
    logits: &[T],
    shape: Shape,
    options: &SoftmaxOptions,
) -> Result<ForwardResult<U>> {
    pollster::block_on(forward_async(shards, op, logits, shape, options))
}

/// Blocking [`cross_entropy_async`].
#[cfg(not(target_arch = "wasm32"))]
pub fn cross_entropy<T: Element>(
    shards: &Shards<'_>,
    logits: &[T],
    targets: &[i64],
    shape: Shape,
    options: &CrossEntropyOptions,
    with_grad: bool,
) -> Result<CrossEntropyResult<T>> {
    pollster::block_on(cross_entropy_async(
        shards, logits, targets, shape, options, with_grad,
    ))
}
