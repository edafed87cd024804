//! Reused device buffers for the host-slice API and interned uniform buffers.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// How many idle buffers the pool keeps before dropping the oldest.
const MAX_IDLE: usize = 12;

/// Idle buffers by usage; `take` hands out the smallest that fits.
#[derive(Default)]
pub(crate) struct BufferPool {
    idle: Mutex<Vec<wgpu::Buffer>>,
}

/// A pooled buffer, returned to its pool when dropped.
pub(crate) struct Pooled<'a> {
    pool: &'a BufferPool,
    buffer: Option<wgpu::Buffer>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.push(b);
            if idle.len() > MAX_IDLE {
                idle.remove(0);
            }
        }
    }
}

impl BufferPool {
    /// A buffer of at least `size` bytes with exactly `usage`; new ones are rounded up to a
    /// power of two (capped at the device's maximum) so that nearby sizes share buffers.
    pub(crate) fn take(
        &self,
        device: &wgpu::Device,
        usage: wgpu::BufferUsages,
        size: u64,
    ) -> Result<Pooled<'_>> {
        let size = size.max(4).div_ceil(4) * 4;
        let max = device.limits().max_buffer_size;
        if size > max {
            return Err(Error::TooLarge {
                what: "a buffer",
                needed: size,
                limit_name: "max_buffer_size",
                limit: max,
            });
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let best = idle
                .iter()
                .enumerate()
                .filter(|(_, b)| b.usage() == usage && b.size() >= size && b.size() <= 2 * size)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i);
            if let Some(i) = best {
                return Ok(Pooled {
                    pool: self,
                    buffer: Some(idle.swap_remove(i)),
                });
            }
        }
        let rounded = size.next_power_of_two().min(max / 4 * 4).max(size);
        let buffer = crate::scope::capture_errors(device, || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("softmax-wgpu pooled"),
                size: rounded,
                usage,
                mapped_at_creation: false,
            })
        })?;
        Ok(Pooled {
            pool: self,
            buffer: Some(buffer),
        })
    }

    /// Drops every idle buffer.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// How many distinct uniform buffers are kept before the map starts afresh.
const MAX_UNIFORMS: usize = 4096;

/// Immutable uniform buffers, one per distinct content. A uniform is never rewritten, so
/// operations recorded into one encoder cannot see each other's parameters, and repeated
/// calls with the same shape allocate nothing.
#[derive(Default)]
pub(crate) struct UniformCache {
    buffers: Mutex<HashMap<Vec<u8>, wgpu::Buffer>>,
}

impl UniformCache {
    /// The uniform buffer holding exactly `bytes`.
    pub(crate) fn get(&self, device: &wgpu::Device, bytes: &[u8]) -> wgpu::Buffer {
        let mut map = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = map.get(bytes) {
            return b.clone();
        }
        if map.len() >= MAX_UNIFORMS {
            map.clear();
        }
        let b = buffer_init(
            device,
            "softmax-wgpu params",
            bytes,
            wgpu::BufferUsages::UNIFORM,
        );
        map.insert(bytes.to_vec(), b.clone());
        b
    }
}

/// A buffer holding `contents` (padded to 4 bytes), as `wgpu::util::DeviceExt::
/// create_buffer_init` makes it, except that a lost device gives an invalid buffer and a
/// validation error for the surrounding error scope instead of a panic.
pub(crate) fn buffer_init(
    device: &wgpu::Device,
    label: &str,
    contents: &[u8],
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (contents.len() as u64).div_ceil(4) * 4,
        usage,
        mapped_at_creation: true,
    });
    if let Ok(mut view) = b.slice(..).get_mapped_range_mut() {
        view.slice(..contents.len()).copy_from_slice(contents);
    }
    b.unmap();
    b
}
