//! The host-slice API: slices in, vectors out. Each operation is `async` (the form that runs
//! in a browser, where nothing may block) with a blocking twin on native targets. Buffers
//! come from the engine's pool, so repeated calls of similar sizes allocate nothing on the
//! device.

use std::future::Future;

use crate::dtype::{DType, Element};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::options::{Forward, Shape, SoftmaxOptions};
use crate::pool::Pooled;
use crate::record::{ForwardArgs, TensorRef};

/// Result of [`Engine::forward`].
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardResult<U> {
    /// `[rows, cols]` outputs (empty for logsumexp).
    pub values: Vec<U>,
    /// Per-row logsumexp, where asked for (always for logsumexp).
    pub lse: Option<Vec<f32>>,
}

/// Defines the blocking twin of an `async` host operation, for native targets.
macro_rules! blocking {
    ($(#[$doc:meta])* $name:ident => $async_name:ident
        $(<$($g:ident: $b:path),*>)? ($($arg:ident: $ty:ty),*) -> $out:ty) => {
        $(#[$doc])*
        #[cfg(not(target_arch = "wasm32"))]
        pub fn $name$(<$($g: $b),*>)?(&self, $($arg: $ty),*) -> $out {
            pollster::block_on(self.$async_name($($arg),*))
        }
    };
}
pub(crate) use blocking;

impl Engine {
    /// Softmax of each row of `x`, in `x`'s dtype.
    pub async fn softmax_async<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<T>> {
        let r = self.forward_async::<T, T>(Forward::Softmax, x, shape, options, false);
        Ok(r.await?.values)
    }

    /// Log-softmax of each row of `x`, in `x`'s dtype.
    pub async fn log_softmax_async<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<T>> {
        let r = self.forward_async::<T, T>(Forward::LogSoftmax, x, shape, options, false);
        Ok(r.await?.values)
    }

    /// Logsumexp of each row of `x` (`rows` values, f32).
    pub async fn logsumexp_async<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<f32>> {
        let r = self.forward_async::<T, T>(Forward::LogSumExp, x, shape, options, true);
        Ok(r.await?.lse.unwrap_or_default())
    }

    /// Any forward operation with input dtype `T` and output dtype `U` (for example f16
    /// logits to f32 probabilities), and the per-row logsumexp when `with_lse` is set.
    pub async fn forward_async<T: Element, U: Element>(
        &self,
        op: Forward,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
        with_lse: bool,
    ) -> Result<ForwardResult<U>> {
        let with_lse = with_lse || op == Forward::LogSumExp;
        let n = x.len() as u64;
        let ((has_output, has_lse), bytes) = self
            .host_op(|rb| {
                shape.expect_len("logits", x.len())?;
                options.inv_temperature()?;
                let input = rb.upload(x)?;
                let output = match op {
                    Forward::LogSumExp => None,
                    _ => Some(rb.output(U::DTYPE.buffer_bytes(n))?),
                };
                let lse = match with_lse {
                    true => Some(rb.output(4 * shape.rows as u64)?),
                    false => None,
                };
                self.record_forward(
                    &mut rb.encoder,
                    &ForwardArgs {
                        op,
                        shape,
                        input: TensorRef::new(&input, T::DTYPE),
                        output: output.as_ref().map(|b| TensorRef::new(b, U::DTYPE)),
                        lse: lse.as_ref().map(|b| TensorRef::new(b, DType::F32)),
                        options: *options,
                    },
                )?;
                if let Some(o) = &output {
                    rb.read(o, 0, U::DTYPE.buffer_bytes(n))?;
                }
                if let Some(l) = &lse {
                    rb.read(l, 0, 4 * shape.rows as u64)?;
                }
                Ok((output.is_some(), lse.is_some()))
            })
            .await?;
        let mut bytes = bytes.into_iter();
        let values = match has_output {
            true => decode::<U>(&bytes.next().unwrap_or_default(), x.len()),
            false => Vec::new(),
        };
        let lse = has_lse.then(|| decode::<f32>(&bytes.next().unwrap_or_default(), shape.rows));
        Ok(ForwardResult { values, lse })
    }

    blocking! {
        /// Blocking [`Engine::softmax_async`].
        softmax => softmax_async<T: Element>(x: &[T], shape: Shape, options: &SoftmaxOptions)
            -> Result<Vec<T>>
    }

    blocking! {
        /// Blocking [`Engine::log_softmax_async`].
        log_softmax => log_softmax_async<T: Element>(
            x: &[T], shape: Shape, options: &SoftmaxOptions) -> Result<Vec<T>>
    }

    blocking! {
        /// Blocking [`Engine::logsumexp_async`].
        logsumexp => logsumexp_async<T: Element>(
            x: &[T], shape: Shape, options: &SoftmaxOptions) -> Result<Vec<f32>>
    }

    /// Blocking [`Engine::forward_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward<T: Element, U: Element>(
        &self,
        op: Forward,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
        with_lse: bool,
    ) -> Result<ForwardResult<U>> {
        pollster::block_on(self.forward_async(op, x, shape, options, with_lse))
    }

    /// Reads `count` values of `T` from `buffer` (which needs `COPY_SRC` usage) at byte
    /// `offset`, a multiple of 4, through a pooled staging buffer, once the work submitted
    /// before is done. For checking results of recorded work in tests, examples and tools;
    /// a hot path keeps its data on the GPU.
    pub async fn read_buffer_async<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<T>> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        let size = bytes.div_ceil(4) * 4;
        let reason = if !offset.is_multiple_of(4) {
            Some(format!("offset {offset} is not a multiple of 4"))
        } else if offset + size > buffer.size() {
            Some(format!(
                "{count} values at offset {offset} need {} bytes; the buffer has {}",
                offset + size,
                buffer.size()
            ))
        } else if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
            Some("needs COPY_SRC usage to be read back".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.check_alive()?;
            return Err(Error::InvalidBuffer {
                what: "read_buffer",
                reason,
            });
        }
        if count == 0 {
            self.check_alive()?;
            return Ok(Vec::new());
        }
        let ((), read) = self.host_op(|rb| rb.read(buffer, offset, size)).await?;
        Ok(read[0][..bytes as usize]
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect())
    }

    /// Blocking [`Engine::read_buffer_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_buffer<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<T>> {
        pollster::block_on(self.read_buffer_async(buffer, offset, count))
    }

    /// Runs one host operation. `record` validates, uploads and records into the
    /// operation's encoder, and names what to read back ([`Readback::read`]), without
    /// waiting, inside error scopes; then the work is submitted and its readbacks awaited.
    /// Returns `record`'s value and the bytes read, in the order asked. On the GL backend the
    /// host operations of one engine take turns (`host_turn`). wgpu's validation and
    /// out-of-memory errors come back as `Err`, and where the device was lost meanwhile,
    /// that is the error rather than the failure the loss caused.
    pub(crate) async fn host_op<T>(
        &self,
        record: impl FnOnce(&mut Readback<'_>) -> Result<T>,
    ) -> Result<(T, Vec<Vec<u8>>)> {
        let _turn = self.host_turn().await;
        self.check_alive()?;
        let result = self.submit_and_read(record).await;
        if result.is_err() {
            // wgpu reports a loss from its maintenance, which a poll runs.
            #[cfg(not(target_arch = "wasm32"))]
            let _ = self.device.poll(wgpu::PollType::Poll);
            self.check_alive()?;
        }
        result
    }

    async fn submit_and_read<T>(
        &self,
        record: impl FnOnce(&mut Readback<'_>) -> Result<T>,
    ) -> Result<(T, Vec<Vec<u8>>)> {
        let (submitted, caught) = crate::scope::scoped(&self.device, || -> Result<_> {
            let mut rb = Readback {
                engine: self,
                encoder: self.device.create_command_encoder(&Default::default()),
                staging: Vec::new(),
                held: Vec::new(),
            };
            let value = record(&mut rb)?;
            let Readback {
                encoder,
                staging,
                held,
                ..
            } = rb;
            self.queue.submit([encoder.finish()]);
            let mapped: Vec<_> = staging.iter().map(|(b, size)| map_read(b, *size)).collect();
            Ok((value, staging, mapped, held))
        });
        // The operation's buffers go back to the pool once its work is done (at the end).
        let (value, staging, mapped, _held) = submitted?;
        caught.await?;
        wait_for_device(&self.device)?;
        self.check_alive()?;
        let mut out = Vec::with_capacity(staging.len());
        for ((dst, size), mapped) in staging.iter().zip(mapped) {
            mapped.await?;
            let view = dst
                .slice(..*size)
                .get_mapped_range()
                .map_err(|e| Error::Validation(e.to_string()))?;
            out.push(view.to_vec());
            drop(view);
            dst.unmap();
        }
        Ok((value, out))
    }
}

/// One host operation's encoder and the ranges it reads back.
pub(crate) struct Readback<'a> {
    engine: &'a Engine,
    /// The encoder the operation records into.
    pub(crate) encoder: wgpu::CommandEncoder,
    staging: Vec<(Pooled<'a>, u64)>,
    /// The operation's pooled buffers, held until its work is done: returned to the pool
    /// when recorded, another thread's operation could take one and write into it before
    /// this one's submission ran (wrong results from two threads on one engine, seen in
    /// tests/vocab_parallel.rs).
    held: Vec<Pooled<'a>>,
}

impl<'a> Readback<'a> {
    /// Copies `x` into a pooled storage buffer, padded to a whole word, held until the
    /// operation is done.
    pub(crate) fn upload<T: bytemuck::Pod>(&mut self, x: &[T]) -> Result<wgpu::Buffer> {
        let e = self.engine;
        let bytes: &[u8] = bytemuck::cast_slice(x);
        let buffer = e.pool.take(
            &e.device,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            (bytes.len() as u64).div_ceil(4) * 4,
        )?;
        let whole = bytes.len() / 4 * 4;
        e.queue.write_buffer(&buffer, 0, &bytes[..whole]);
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            e.queue.write_buffer(&buffer, whole as u64, &tail);
        }
        Ok(self.hold(buffer))
    }

    /// A pooled storage buffer of `bytes` that can be read back, held until the operation
    /// is done.
    pub(crate) fn output(&mut self, bytes: u64) -> Result<wgpu::Buffer> {
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let buffer = self.engine.pool.take(&self.engine.device, usage, bytes)?;
        Ok(self.hold(buffer))
    }

    /// Keeps `buffer` until the operation is done; a handle to it.
    fn hold(&mut self, buffer: Pooled<'a>) -> wgpu::Buffer {
        let handle = (*buffer).clone();
        self.held.push(buffer);
        handle
    }

    /// Reads `size` bytes (a multiple of 4) of `src` at `offset` (a multiple of 4) once the
    /// operation's work is done, through a pooled staging buffer.
    pub(crate) fn read(&mut self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<()> {
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let dst = self.engine.pool.take(&self.engine.device, usage, size)?;
        self.encoder
            .copy_buffer_to_buffer(src, offset, &dst, 0, size);
        self.staging.push((dst, size));
        Ok(())
    }
}

/// Starts mapping the first `size` bytes of `buffer` for reading; the future resolves once
/// they are mapped (natively, after [`wait_for_device`]).
pub(crate) fn map_read(buffer: &wgpu::Buffer, size: u64) -> impl Future<Output = Result<()>> {
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    buffer
        .slice(..size)
        .map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
    async move {
        rx.receive()
            .await
            .ok_or_else(|| Error::DeviceLost("map callback dropped".into()))?
            .map_err(Error::from)
    }
}

/// Natively, waits until the device has done the work submitted so far, which also runs the
/// callbacks of finished mappings. In a browser the device makes progress on its own and
/// the mappings' futures resolve through promises: nothing to do.
pub(crate) fn wait_for_device(device: &wgpu::Device) -> Result<()> {
    #[cfg(not(target_arch = "wasm32"))]
    device.poll(wgpu::PollType::wait_indefinitely())?;
    #[cfg(target_arch = "wasm32")]
    let _ = device;
    Ok(())
}

/// The first `n` elements of `bytes`.
pub(crate) fn decode<U: Element>(bytes: &[u8], n: usize) -> Vec<U> {
    let size = std::mem::size_of::<U>();
    bytes[..n * size]
        .chunks_exact(size)
        .map(bytemuck::pod_read_unaligned)
        .collect()
}
