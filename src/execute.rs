//! The one executor: records any launch's passes (src/launch/) into the caller's encoder, in
//! one compute pass, on the buffers of the call. The device-level operations check their
//! arguments, ask the planner for the launch and hand it here.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{Binding, Pass};
use crate::scope::capture_errors;
use crate::shader::slot;

impl Engine {
    /// Records `passes` into `encoder` as one compute pass labelled `label`. `args` are the
    /// call's buffers, indexed by the passes' bindings; `scratch_bytes` of split-row scratch
    /// are made ready where the passes bind it.
    pub(crate) fn execute(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        label: &'static str,
        passes: &[Pass],
        scratch_bytes: u64,
        args: &[Option<&wgpu::Buffer>],
    ) -> Result<()> {
        let kernels = passes
            .iter()
            .map(|p| self.pipelines.get(&self.device, &p.key))
            .collect::<Result<Vec<_>>>()?;
        let scratch = match scratch_bytes {
            0 => None,
            bytes => Some(self.split_scratch(bytes)?),
        };
        let tiny = self.tiny_buffer()?;
        let buffer = |arg: usize| {
            args.get(arg).copied().flatten().ok_or_else(|| {
                Error::Validation(format!(
                    "{label}: a pass binds argument {arg}, which the call lacks"
                ))
            })
        };
        let whole = |buffer, offset, size: u64| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: std::num::NonZeroU64::new(size),
            })
        };
        // Every bind group's entries, resolved before the pass begins.
        let mut groups = Vec::with_capacity(passes.len());
        for p in passes {
            let uniform = self.uniforms.get(&self.device, &p.params);
            let mut entries = Vec::with_capacity(p.bindings.len() + 1);
            for &(binding, b) in &p.bindings {
                let resource = match b {
                    Binding::Chunk { arg, chunk } => whole(buffer(arg)?, chunk.offset, chunk.size),
                    Binding::Vectors { arg, chunk, view } => {
                        let size = chunk.size / view * view;
                        if size == 0 {
                            whole(&tiny, 0, view)
                        } else {
                            whole(buffer(arg)?, chunk.offset, size)
                        }
                    }
                    Binding::Head { arg, size } => whole(buffer(arg)?, 0, size),
                    Binding::Scratch { size } => {
                        let s = scratch.as_ref().ok_or_else(|| {
                            Error::Validation(format!(
                                "{label}: a pass binds scratch it has none of"
                            ))
                        })?;
                        whole(s, 0, size.unwrap_or(s.size()))
                    }
                };
                entries.push(wgpu::BindGroupEntry { binding, resource });
            }
            groups.push((uniform, entries));
        }
        capture_errors(&self.device, || {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for ((p, kernel), (uniform, entries)) in passes.iter().zip(&kernels).zip(groups) {
                let mut entries = entries;
                entries.push(wgpu::BindGroupEntry {
                    binding: slot::PARAMS,
                    resource: uniform.as_entire_binding(),
                });
                let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &kernel.layout,
                    entries: &entries,
                });
                pass.set_pipeline(&kernel.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(p.groups.0, p.groups.1, 1);
            }
        })
    }
}
