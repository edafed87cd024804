//! Cross-entropy with its gradient over the logits (shaders/cross_entropy.wgsl): PyTorch's
//! `F.cross_entropy` plus a temperature and a z-loss, in one pass over the logits.

use super::f32_ref;
use crate::dtype::{DType, Element};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::decode;
use crate::launch::CrossEntropyCall;
use crate::options::{CrossEntropyOptions, Shape};
use crate::params::CeParams;
use crate::record::TensorRef;

/// Where the cross-entropy gradient goes.
#[derive(Clone, Copy, Debug)]
pub enum GradOutput<'a> {
    /// No gradient.
    None,
    /// Over the logits (the training step then holds no second `[rows, cols]` tensor).
    InPlace,
    /// Into this tensor.
    To(TensorRef<'a>),
}

/// Arguments of [`Engine::record_cross_entropy`]. Every f32/i32 argument is a
/// [`TensorRef`] whose `dtype` is ignored.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyArgs<'a> {
    /// The logits' shape.
    pub shape: Shape,
    /// The logits.
    pub logits: TensorRef<'a>,
    /// `rows` class indices, i32.
    pub targets: TensorRef<'a>,
    /// `cols` class weights, f32, or none (options.weight is for the host API).
    pub weight: Option<TensorRef<'a>>,
    /// The gradient with respect to the logits.
    pub grad: GradOutput<'a>,
    /// `rows` per-row losses, f32.
    pub loss: TensorRef<'a>,
    /// `rows` per-row logsumexp of `logits / T`, f32.
    pub lse: TensorRef<'a>,
    /// Scratch of 16 bytes (STORAGE | COPY_SRC): `[denominator, first invalid row or
    /// u32::MAX, reduced loss, class-weight sum]` after the submission.
    pub meta: &'a wgpu::Buffer,
}

impl<'a> CrossEntropyArgs<'a> {
    /// Checks every tensor against the (validated) shape; the gradient's tensor, if any,
    /// and whether it is the logits (in place).
    fn checked_grad(&self) -> Result<(Option<TensorRef<'a>>, bool)> {
        let (rows, cols) = (self.shape.rows as u64, self.shape.cols as u64);
        self.logits.check("logits", rows * cols)?;
        f32_ref(self.targets).check("targets", rows)?;
        f32_ref(self.loss).check("loss", rows)?;
        f32_ref(self.lse).check("lse", rows)?;
        if let Some(w) = self.weight {
            f32_ref(w).check("weight", cols)?;
        }
        if self.meta.size() < 16 || !self.meta.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidBuffer {
                what: "meta",
                reason: "needs 16 bytes and STORAGE usage".into(),
            });
        }
        Ok(match self.grad {
            GradOutput::None => (None, false),
            GradOutput::InPlace => (Some(self.logits), true),
            GradOutput::To(g) => {
                g.check("grad", rows * cols)?;
                (Some(g), false)
            }
        })
    }
}

/// Result of [`Engine::cross_entropy`].
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyResult<T> {
    /// The reduced loss (the sum for `Reduction::None`).
    pub loss: f32,
    /// Loss of each row (0 for ignored rows).
    pub per_row: Vec<f32>,
    /// logsumexp of each row of `logits / T`.
    pub lse: Vec<f32>,
    /// The gradient with respect to the logits, where asked for.
    pub grad: Option<Vec<T>>,
}

impl CrossEntropyOptions {
    /// The options' part of the kernels' uniforms (`rows`, `cols`, the bases and `chunks`
    /// are the launch's), with `inv_t` from `validate`.
    pub(crate) fn uniforms(&self, inv_t: f32) -> CeParams {
        CeParams {
            ignore_index: self.ignore_index,
            reduction: self.reduction.index(),
            inv_t,
            smoothing: self.label_smoothing,
            z_loss: self.z_loss,
            grad_scale: self.grad_scale,
            ..bytemuck::Zeroable::zeroed()
        }
    }
}

impl Engine {
    /// Records cross-entropy (loss, logsumexp and, where asked, the gradient) into `encoder`:
    /// three dispatches in one compute pass. A target outside `[0, cols)` never indexes
    /// memory: its row's loss is NaN, its gradient 0, and `meta[1]` names the first such row.
    pub fn record_cross_entropy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &CrossEntropyArgs,
        options: &CrossEntropyOptions,
    ) -> Result<()> {
        self.check_alive()?;
        let shape = args.shape;
        shape.validate()?;
        let inv_t = options.validate(shape.cols)?;
        let (grad, in_place) = args.checked_grad()?;
        let (targets, loss, lse) = (f32_ref(args.targets), f32_ref(args.loss), f32_ref(args.lse));
        let weight = args.weight.map(f32_ref);
        let launch = self.profile.launch_cross_entropy(&CrossEntropyCall {
            shape,
            logits: args.logits.place(),
            grad: grad.map(|g| g.place()),
            in_place,
            targets: targets.place(),
            loss: loss.place(),
            lse: lse.place(),
            weight: weight.map(|w| w.place()),
            options: options.uniforms(inv_t),
        })?;
        let buffers = [
            Some(args.logits.buffer),
            grad.map(|g| g.buffer),
            Some(lse.buffer),
            Some(targets.buffer),
            weight.map(|w| w.buffer),
            Some(loss.buffer),
            Some(args.meta),
        ];
        self.execute(
            encoder,
            "softmax-wgpu cross-entropy",
            &launch.passes(),
            launch.scratch_bytes,
            &buffers,
        )
    }

    /// Cross-entropy of `logits` against `targets` (class indices), with the gradient with
    /// respect to the logits when `with_grad` is set.
    pub async fn cross_entropy_async<T: Element>(
        &self,
        logits: &[T],
        targets: &[i64],
        shape: Shape,
        options: &CrossEntropyOptions,
        with_grad: bool,
    ) -> Result<CrossEntropyResult<T>> {
        let n = logits.len() as u64;
        let rows = shape.rows as u64;
        let ((), out) = self
            .host_op(|rb| {
                shape.expect_len("logits", logits.len())?;
                if targets.len() != shape.rows {
                    return Err(Error::ShapeMismatch {
                        what: "targets",
                        got: targets.len(),
                        expected: shape.rows,
                        rows: shape.rows,
                        cols: 1,
                    });
                }
                options.validate(shape.cols)?;
                let ignore = i64::from(options.ignore_index);
                let mut t32 = Vec::with_capacity(targets.len());
                for (row, &t) in targets.iter().enumerate() {
                    if t != ignore && !(0..shape.cols as i64).contains(&t) {
                        return Err(Error::invalid_target(row, t, shape.cols));
                    }
                    t32.push(t as i32);
                }
                let x = rb.upload(logits)?;
                let tb = rb.upload(&t32)?;
                let wb = options
                    .weight
                    .as_deref()
                    .map(|w| rb.upload(w))
                    .transpose()?;
                let grad = match with_grad {
                    true => Some(rb.output(T::DTYPE.buffer_bytes(n))?),
                    false => None,
                };
                let loss = rb.output(4 * rows)?;
                let lse = rb.output(4 * rows)?;
                let meta = rb.output(16)?;
                self.record_cross_entropy(
                    &mut rb.encoder,
                    &CrossEntropyArgs {
                        shape,
                        logits: TensorRef::new(&x, T::DTYPE),
                        targets: TensorRef::new(&tb, DType::F32),
                        weight: wb.as_ref().map(|w| TensorRef::new(w, DType::F32)),
                        grad: grad.as_ref().map_or(GradOutput::None, |g| {
                            GradOutput::To(TensorRef::new(g, T::DTYPE))
                        }),
                        loss: TensorRef::new(&loss, DType::F32),
                        lse: TensorRef::new(&lse, DType::F32),
                        meta: &meta,
                    },
                    options,
                )?;
                rb.read(&loss, 0, 4 * rows)?;
                rb.read(&lse, 0, 4 * rows)?;
                rb.read(&meta, 0, 16)?;
                if let Some(g) = &grad {
                    rb.read(g, 0, T::DTYPE.buffer_bytes(n))?;
                }
                Ok(())
            })
            .await?;
        let f32s = |b: &[u8], n: usize| -> Vec<f32> { bytemuck::pod_collect_to_vec(&b[..4 * n]) };
        let meta = f32s(&out[2], 4);
        Ok(CrossEntropyResult {
            loss: meta[2],
            per_row: f32s(&out[0], shape.rows),
            lse: f32s(&out[1], shape.rows),
            grad: with_grad.then(|| decode(&out[3], logits.len())),
        })
    }

    /// Blocking [`Engine::cross_entropy_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn cross_entropy<T: Element>(
        &self,
        logits: &[T],
        targets: &[i64],
        shape: Shape,
        options: &CrossEntropyOptions,
        with_grad: bool,
    ) -> Result<CrossEntropyResult<T>> {
        pollster::block_on(self.cross_entropy_async(logits, targets, shape, options, with_grad))
    }
}
