//! The host-slice forms of the partial and finish steps: upload, record, read back.

use super::device::PartialOptions;
use super::state::check_merged_targets;
use super::{FinishArgs, FinishCrossEntropyArgs, PartialArgs, PartialState, Shard, STATE_BYTES};
use crate::dtype::{DType, Element};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::{decode, ForwardResult};
use crate::options::{CrossEntropyOptions, Forward, SoftmaxOptions};
use crate::record::TensorRef;
use crate::training::{CrossEntropyResult, GradOutput};

/// Class indices as the kernels take them (i32): a target that fits no column (negative,
/// or past 32 bits) becomes one that no shard owns, never `ignore_index`.
fn device_targets(targets: &[i64], ignore_index: i32) -> Vec<i32> {
    let nowhere = if ignore_index == -1 { -2 } else { -1 };
    targets
        .iter()
        .map(|&t| {
            if t == i64::from(ignore_index) {
                ignore_index
            } else {
                i32::try_from(t).ok().filter(|&t| t >= 0).unwrap_or(nowhere)
            }
        })
        .collect()
}

fn expect_rows(what: &'static str, got: usize, shard: Shard) -> Result<()> {
    if got != shard.rows {
        return Err(Error::ShapeMismatch {
            what,
            got,
            expected: shard.rows,
            rows: shard.rows,
            cols: 1,
        });
    }
    Ok(())
}

impl Engine {
    /// The partial states of a shard's `[rows, cols]` logits for softmax, log-softmax and
    /// logsumexp (`options.temperature`; the other options matter at the finish).
    pub async fn partial_states_async<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        options: &SoftmaxOptions,
    ) -> Result<Vec<PartialState>> {
        self.partial_states_of(logits, shard, None, &PartialOptions::from(options), None)
            .await
    }

    /// The partial states of a shard for cross-entropy: as [`Engine::partial_states_async`],
    /// with each row's target logit and class weight where this shard owns the target
    /// (`targets` are global class indices), and label smoothing's sums. `options.weight`,
    /// if any, is this shard's `cols` class weights.
    pub async fn cross_entropy_partial_states_async<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        targets: &[i64],
        options: &CrossEntropyOptions,
    ) -> Result<Vec<PartialState>> {
        options.validate(shard.cols)?;
        expect_rows("targets", targets.len(), shard)?;
        self.partial_states_of(
            logits,
            shard,
            Some(targets),
            &PartialOptions::from(options),
            options.weight.as_deref(),
        )
        .await
    }

    async fn partial_states_of<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        targets: Option<&[i64]>,
        options: &PartialOptions,
        weight: Option<&[f32]>,
    ) -> Result<Vec<PartialState>> {
        let bytes = (shard.rows * STATE_BYTES) as u64;
        let ((), out) = self
            .host_op(|rb| {
                shard.validate()?;
                shard.shape().expect_len("logits", logits.len())?;
                let x = rb.upload(logits)?;
                let t = targets
                    .map(|t| rb.upload(&device_targets(t, options.ignore_index)))
                    .transpose()?;
                let w = weight.map(|w| rb.upload(w)).transpose()?;
                let states = rb.output(bytes)?;
                self.record_partial_states(
                    &mut rb.encoder,
                    &PartialArgs {
                        shard,
                        logits: TensorRef::new(&x, T::DTYPE),
                        targets: t.as_ref().map(|t| TensorRef::new(t, DType::F32)),
                        weight: w.as_ref().map(|w| TensorRef::new(w, DType::F32)),
                        states: TensorRef::new(&states, DType::F32),
                    },
                    options,
                )?;
                rb.read(&states, 0, bytes)
            })
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&out[0][..bytes as usize]))
    }

    /// Finishes a shard's forward operation from the merged states: its `[rows, cols]`
    /// slice of the softmax or log-softmax in dtype `U` (empty for logsumexp), and the rows'
    /// logsumexp (the same on every shard).
    pub async fn finish_forward_async<T: Element, U: Element>(
        &self,
        op: Forward,
        logits: &[T],
        shard: Shard,
        merged: &[PartialState],
        options: &SoftmaxOptions,
    ) -> Result<ForwardResult<U>> {
        let (rows, n) = (shard.rows, shard.rows * shard.cols);
        let out_bytes = U::DTYPE.buffer_bytes(n as u64);
        let with_values = op != Forward::LogSumExp;
        let ((), out) = self
            .host_op(|rb| {
                shard.validate()?;
                shard.shape().expect_len("logits", logits.len())?;
                expect_rows("merged states", merged.len(), shard)?;
                let x = rb.upload(logits)?;
                let m = rb.upload(merged)?;
                let y = with_values.then(|| rb.output(out_bytes)).transpose()?;
                let lse = rb.output(4 * rows as u64)?;
                self.record_finish_forward(
                    &mut rb.encoder,
                    &FinishArgs {
                        op,
                        shard,
                        logits: TensorRef::new(&x, T::DTYPE),
                        merged: TensorRef::new(&m, DType::F32),
                        output: y.as_ref().map(|y| TensorRef::new(y, U::DTYPE)),
                        lse: Some(TensorRef::new(&lse, DType::F32)),
                    },
                    options,
                )?;
                rb.read(&lse, 0, 4 * rows as u64)?;
                if let Some(y) = &y {
                    rb.read(y, 0, out_bytes)?;
                }
                Ok(())
            })
            .await?;
        Ok(ForwardResult {
            values: if with_values {
                decode(&out[1], n)
            } else {
                Vec::new()
            },
            lse: Some(decode(&out[0], rows)),
        })
    }

    /// Finishes a shard's cross-entropy from the merged states: the loss (reduced and per
    /// row) and the rows' logsumexp, the same on every shard, and where asked the gradient
    /// of the shard's `[rows, cols]` slice. A row not ignored whose target no shard held is
    /// `Error::InvalidTarget`. `options.weight`, if any, is this shard's class weights.
    pub async fn finish_cross_entropy_async<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        targets: &[i64],
        merged: &[PartialState],
        options: &CrossEntropyOptions,
        with_grad: bool,
    ) -> Result<CrossEntropyResult<T>> {
        let (rows, n) = (shard.rows as u64, shard.rows * shard.cols);
        let grad_bytes = T::DTYPE.buffer_bytes(n as u64);
        let ((), out) = self
            .host_op(|rb| {
                shard.validate()?;
                shard.shape().expect_len("logits", logits.len())?;
                expect_rows("targets", targets.len(), shard)?;
                expect_rows("merged states", merged.len(), shard)?;
                options.validate(shard.cols)?;
                check_merged_targets(merged, targets, options.ignore_index)?;
                let x = rb.upload(logits)?;
                let t = rb.upload(&device_targets(targets, options.ignore_index))?;
                let m = rb.upload(merged)?;
                let w = options
                    .weight
                    .as_deref()
                    .map(|w| rb.upload(w))
                    .transpose()?;
                let grad = with_grad.then(|| rb.output(grad_bytes)).transpose()?;
                let loss = rb.output(4 * rows)?;
                let lse = rb.output(4 * rows)?;
                let meta = rb.output(16)?;
                self.record_finish_cross_entropy(
                    &mut rb.encoder,
                    &FinishCrossEntropyArgs {
                        shard,
                        logits: TensorRef::new(&x, T::DTYPE),
                        targets: TensorRef::new(&t, DType::F32),
                        weight: w.as_ref().map(|w| TensorRef::new(w, DType::F32)),
                        merged: TensorRef::new(&m, DType::F32),
                        grad: grad.as_ref().map_or(GradOutput::None, |g| {
                            GradOutput::To(TensorRef::new(g, T::DTYPE))
                        }),
                        loss: TensorRef::new(&loss, DType::F32),
                        lse: TensorRef::new(&lse, DType::F32),
                        meta: &meta,
                    },
                    &CrossEntropyOptions {
                        weight: None,
                        ..options.clone()
                    },
                )?;
                rb.read(&loss, 0, 4 * rows)?;
                rb.read(&lse, 0, 4 * rows)?;
                rb.read(&meta, 0, 16)?;
                if let Some(g) = &grad {
                    rb.read(g, 0, grad_bytes)?;
                }
                Ok(())
            })
            .await?;
        let meta: Vec<f32> = decode(&out[2], 4);
        Ok(CrossEntropyResult {
            loss: meta[2],
            per_row: decode(&out[0], shard.rows),
            lse: decode(&out[1], shard.rows),
            grad: with_grad.then(|| decode(&out[3], n)),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Engine {
    /// Blocking [`Engine::partial_states_async`].
    pub fn partial_states<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        options: &SoftmaxOptions,
    ) -> Result<Vec<PartialState>> {
        pollster::block_on(self.partial_states_async(logits, shard, options))
    }

    /// Blocking [`Engine::cross_entropy_partial_states_async`].
    pub fn cross_entropy_partial_states<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        targets: &[i64],
        options: &CrossEntropyOptions,
    ) -> Result<Vec<PartialState>> {
        pollster::block_on(self.cross_entropy_partial_states_async(logits, shard, targets, options))
    }

    /// Blocking [`Engine::finish_forward_async`].
    pub fn finish_forward<T: Element, U: Element>(
        &self,
        op: Forward,
        logits: &[T],
        shard: Shard,
        merged: &[PartialState],
        options: &SoftmaxOptions,
    ) -> Result<ForwardResult<U>> {
        pollster::block_on(self.finish_forward_async(op, logits, shard, merged, options))
    }

    /// Blocking [`Engine::finish_cross_entropy_async`].
    pub fn finish_cross_entropy<T: Element>(
        &self,
        logits: &[T],
        shard: Shard,
        targets: &[i64],
        merged: &[PartialState],
        options: &CrossEntropyOptions,
        with_grad: bool,
    ) -> Result<CrossEntropyResult<T>> {
        pollster::block_on(
            self.finish_cross_entropy_async(logits, shard, targets, merged, options, with_grad),
        )
    }
}
