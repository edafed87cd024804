//! wgpu's error scopes around a piece of work: its validation and out-of-memory errors come
//! back as `Err` instead of reaching the device's uncaptured-error handler (which panics by
//! default).

use crate::error::Result;

/// Runs `f` inside validation and out-of-memory error scopes and returns what they caught.
pub(crate) fn capture_errors<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let validation = pollster::block_on(validation.pop());
    let oom = pollster::block_on(oom.pop());
    match oom.or(validation) {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}
