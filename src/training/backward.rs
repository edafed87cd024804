//! Softmax and log_softmax backward (shaders/backward.wgsl): `dx` from the forward output
//! `y` and the upstream gradient `dy`, row-wise.

use crate::dtype::Element;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::host::decode;
use crate::launch::BackwardCall;
use crate::options::Shape;
use crate::record::TensorRef;

/// Checks the shape, the three tensors against it, their dtypes (`dy` as `y`) and that `dx`
/// is a buffer of its own.
fn check_tensors(shape: Shape, y: &TensorRef, dy: &TensorRef, dx: &TensorRef) -> Result<()> {
    shape.validate()?;
    let n = shape.len() as u64;
    y.check("y", n)?;
    dy.check("dy", n)?;
    dx.check("dx", n)?;
    if dy.dtype != y.dtype {
        return Err(Error::UnsupportedDType {
            dtype: dy.dtype,
            reason: "dy must have y's dtype",
        });
    }
    if dx.buffer == y.buffer || dx.buffer == dy.buffer {
        return Err(Error::InvalidBuffer {
            what: "dx",
            reason: "must be a different buffer from y and dy".into(),
        });
    }
    Ok(())
}

impl Engine {
    /// Records `dx = y * (dy - sum(dy * y))` (softmax backward, `log = false`) or
    /// `dx = dy - exp(y) * sum(dy)` (log_softmax backward, `log = true`), row-wise. `y` and
    /// `dy` share a dtype; `dx` may differ.
    pub fn record_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        log: bool,
        shape: Shape,
        y: TensorRef,
        dy: TensorRef,
        dx: TensorRef,
    ) -> Result<()> {
        self.check_alive()?;
        check_tensors(shape, &y, &dy, &dx)?;
        let launch = self.profile.launch_backward(&BackwardCall {
            log,
            shape,
            y: y.place(),
            dy: dy.place(),
            dx: dx.place(),
        })?;
        self.execute(
            encoder,
            "softmax-wgpu backward",
            &launch.passes(),
            launch.scratch_bytes,
            &[Some(y.buffer), Some(dy.buffer), Some(dx.buffer)],
        )
    }

    /// Softmax backward (`log = false`) or log_softmax backward (`log = true`) of host
    /// slices: `y` the forward output, `dy` the upstream gradient.
    pub async fn softmax_backward_async<T: Element>(
        &self,
        log: bool,
        y: &[T],
        dy: &[T],
        shape: Shape,
    ) -> Result<Vec<T>> {
        let n = y.len() as u64;
        let ((), bytes) = self
            .host_op(|rb| {
                shape.expect_len("y", y.len())?;
                shape.expect_len("dy", dy.len())?;
                let yb = rb.upload(y)?;
                let db = rb.upload(dy)?;
                let out = rb.output(T::DTYPE.buffer_bytes(n))?;
                self.record_backward(
                    &mut rb.encoder,
                    log,
                    shape,
                    TensorRef::new(&yb, T::DTYPE),
                    TensorRef::new(&db, T::DTYPE),
                    TensorRef::new(&out, T::DTYPE),
                )?;
                rb.read(&out, 0, T::DTYPE.buffer_bytes(n))
            })
            .await?;
        Ok(decode(&bytes[0], y.len()))
    }

    crate::host::blocking! {
        /// Blocking [`Engine::softmax_backward_async`].
        softmax_backward => softmax_backward_async<T: Element>(
            log: bool, y: &[T], dy: &[T], shape: Shape) -> Result<Vec<T>>
    }
}
