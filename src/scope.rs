//! wgpu's error scopes around a piece of work: its validation and out-of-memory errors come
//! back as `Err` instead of reaching the device's uncaptured-error handler (which panics by
//! default).
//!
//! A scope's result is a future. Natively it is ready as soon as the scope is popped, so
//! [`capture_errors`] waits for it on the spot. In a browser it resolves through a promise,
//! which nothing synchronous may wait for: there [`capture_errors`] runs its work unscoped,
//! and the host operation around it ([`scoped`], awaited in `Engine::host_op`) catches what
//! the work raises. Scopes never stay open across an `await`: operations that interleave on
//! one thread would pop each other's.

use std::future::Future;

use crate::error::Result;

/// Runs `f` inside validation and out-of-memory error scopes, pops them, and returns `f`'s
/// value with a future of what the scopes caught. Public for the browser bindings.
pub fn scoped<T>(
    device: &wgpu::Device,
    f: impl FnOnce() -> T,
) -> (T, impl Future<Output = Result<()>>) {
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let validation = validation.pop();
    let oom = oom.pop();
    let caught = async move {
        let validation = validation.await;
        let oom = oom.await;
        match oom.or(validation) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    };
    (out, caught)
}

/// Runs `f` inside validation and out-of-memory error scopes and returns what they caught.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn capture_errors<T>(device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    let (out, caught) = scoped(device, f);
    pollster::block_on(caught)?;
    Ok(out)
}

/// In a browser: runs `f` unscoped; the enclosing host operation's scope, or the caller's,
/// catches its errors (see the module's documentation).
#[cfg(target_arch = "wasm32")]
pub(crate) fn capture_errors<T>(_device: &wgpu::Device, f: impl FnOnce() -> T) -> Result<T> {
    Ok(f())
}
