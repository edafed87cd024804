//! The host-slice API: slices in, vectors out, blocking. Buffers come from the engine's
//! pool, so repeated calls of similar sizes allocate nothing on the device.

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

impl Engine {
    /// Softmax of each row of `x`, in `x`'s dtype.
    pub fn softmax<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<T>> {
        Ok(self
            .forward::<T, T>(Forward::Softmax, x, shape, options, false)?
            .values)
    }

    /// Log-softmax of each row of `x`, in `x`'s dtype.
    pub fn log_softmax<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<T>> {
        Ok(self
            .forward::<T, T>(Forward::LogSoftmax, x, shape, options, false)?
            .values)
    }

    /// Logsumexp of each row of `x` (`rows` values, f32).
    pub fn logsumexp<T: Element>(
        &self,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<f32>> {
        let r = self.forward::<T, T>(Forward::LogSumExp, x, shape, options, true)?;
        Ok(r.lse.unwrap_or_default())
    }

    /// Any forward operation with input dtype `T` and output dtype `U` (for example f16
    /// logits to f32 probabilities), and the per-row logsumexp when `with_lse` is set.
    pub fn forward<T: Element, U: Element>(
        &self,
        op: Forward,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
        with_lse: bool,
    ) -> Result<ForwardResult<U>> {
        self.host_op(|| {
            shape.expect_len("logits", x.len())?;
            options.inv_temperature()?;
            let n = x.len() as u64;
            let with_lse = with_lse || op == Forward::LogSumExp;
            let storage = wgpu::BufferUsages::STORAGE;
            let input = self.upload(x)?;
            let output = match op {
                Forward::LogSumExp => None,
                _ => Some(self.pool.take(
                    &self.device,
                    storage | wgpu::BufferUsages::COPY_SRC,
                    U::DTYPE.buffer_bytes(n),
                )?),
            };
            let lse = match with_lse {
                true => Some(self.pool.take(
                    &self.device,
                    storage | wgpu::BufferUsages::COPY_SRC,
                    4 * shape.rows as u64,
                )?),
                false => None,
            };
            let mut encoder = self.device.create_command_encoder(&Default::default());
            self.record_forward(
                &mut encoder,
                &ForwardArgs {
                    op,
                    shape,
                    input: TensorRef::new(&input, T::DTYPE),
                    output: output.as_ref().map(|b| TensorRef::new(b, U::DTYPE)),
                    lse: lse.as_ref().map(|b| TensorRef::new(b, DType::F32)),
                    options: *options,
                },
            )?;
            let mut reads = Vec::new();
            if let Some(o) = &output {
                reads.push((&**o, U::DTYPE.buffer_bytes(n)));
            }
            if let Some(l) = &lse {
                reads.push((&**l, 4 * shape.rows as u64));
            }
            let bytes = self.submit_and_read(encoder, &reads)?;
            let mut bytes = bytes.into_iter();
            let values = match output {
                Some(_) => decode::<U>(&bytes.next().unwrap_or_default(), x.len()),
                None => Vec::new(),
            };
            let lse = lse.map(|_| decode::<f32>(&bytes.next().unwrap_or_default(), shape.rows));
            Ok(ForwardResult { values, lse })
        })
    }

    /// Reads `count` values of `T` from `buffer` (which needs `COPY_SRC` usage) at byte
    /// `offset`, a multiple of 4: submits a copy into a pooled staging buffer and waits for
    /// it. For checking results of recorded work in tests, examples and tools; a hot path
    /// keeps its data on the GPU.
    pub fn read_buffer<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<T>> {
        self.check_alive()?;
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
            return Err(Error::InvalidBuffer {
                what: "read_buffer",
                reason,
            });
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let encoder = self.device.create_command_encoder(&Default::default());
        let read = self.submit_and_read_ranges(encoder, &[(buffer, offset, size)])?;
        Ok(read[0][..bytes as usize]
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect())
    }

    /// Copies `x` into a pooled storage buffer, padded to a whole word.
    pub(crate) fn upload<T: bytemuck::Pod>(&self, x: &[T]) -> Result<Pooled<'_>> {
        let bytes: &[u8] = bytemuck::cast_slice(x);
        let buffer = self.pool.take(
            &self.device,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            (bytes.len() as u64).div_ceil(4) * 4,
        )?;
        let whole = bytes.len() / 4 * 4;
        self.queue.write_buffer(&buffer, 0, &bytes[..whole]);
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.queue.write_buffer(&buffer, whole as u64, &tail);
        }
        Ok(buffer)
    }

    /// Copies each `(buffer, bytes)` into a pooled readback buffer, submits `encoder`, waits,
    /// and returns the bytes.
    pub(crate) fn submit_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let ranges: Vec<_> = reads.iter().map(|&(b, size)| (b, 0, size)).collect();
        self.submit_and_read_ranges(encoder, &ranges)
    }

    /// `submit_and_read` of `(buffer, offset, size)` ranges (multiples of 4 bytes).
    pub(crate) fn submit_and_read_ranges(
        &self,
        mut encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        let mut staging = Vec::with_capacity(reads.len());
        for &(src, offset, size) in reads {
            let dst = self.pool.take(
                &self.device,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                size,
            )?;
            encoder.copy_buffer_to_buffer(src, offset, &dst, 0, size);
            staging.push((dst, size));
        }
        let commands = crate::scope::capture_errors(&self.device, || encoder.finish())?;
        self.queue.submit([commands]);
        let mut receivers = Vec::with_capacity(staging.len());
        for (dst, size) in &staging {
            let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
            dst.slice(..*size).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
            receivers.push(rx);
        }
        self.device.poll(wgpu::PollType::wait_indefinitely())?;
        self.check_alive()?;
        let mut out = Vec::with_capacity(staging.len());
        for ((dst, size), rx) in staging.iter().zip(receivers) {
            pollster::block_on(rx.receive())
                .ok_or_else(|| Error::DeviceLost("map callback dropped".into()))??;
            let view = dst
                .slice(..*size)
                .get_mapped_range()
                .map_err(|e| Error::Validation(e.to_string()))?;
            out.push(view.to_vec());
            drop(view);
            dst.unmap();
        }
        Ok(out)
    }
}

/// The first `n` elements of `bytes`.
fn decode<U: Element>(bytes: &[u8], n: usize) -> Vec<U> {
    let size = std::mem::size_of::<U>();
    bytes[..n * size]
        .chunks_exact(size)
        .map(bytemuck::pod_read_unaligned)
        .collect()
}
