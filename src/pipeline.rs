//! Compiled pipelines, built once per [`KernelKey`] and shared.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::error::Result;
use crate::shader::{Access, PipelineKey};

/// A compiled kernel and the layout its bind groups use.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Pipelines keyed by what varies: operation, dtypes, variant.
#[derive(Default)]
pub(crate) struct PipelineCache {
    kernels: RwLock<HashMap<PipelineKey, Arc<Kernel>>>,
}

impl PipelineCache {
    /// The kernel of `key`, compiled on first use. Read lock first; on a miss, compile, then
    /// take the write lock and keep whichever copy got there first.
    pub(crate) fn get(&self, device: &wgpu::Device, key: &PipelineKey) -> Result<Arc<Kernel>> {
        if let Some(k) = self
            .kernels
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return Ok(k.clone());
        }
        let kernel = Arc::new(build(device, key)?);
        let mut map = self.kernels.write().unwrap_or_else(|e| e.into_inner());
        Ok(map.entry(*key).or_insert(kernel).clone())
    }

    /// Number of compiled pipelines (tests check that repeated calls compile nothing).
    pub(crate) fn len(&self) -> usize {
        self.kernels.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn build(device: &wgpu::Device, key: &PipelineKey) -> Result<Kernel> {
    crate::scope::capture_errors(device, || {
        let label = format!("softmax-wgpu {key:?}");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(key.source().into()),
        });
        // The layout of the bindings the kernel declares (src/shader/spec.rs).
        let entries: Vec<wgpu::BindGroupLayoutEntry> = key
            .bindings()
            .iter()
            .map(|b| wgpu::BindGroupLayoutEntry {
                binding: b.slot,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b.access {
                        Access::Uniform => wgpu::BufferBindingType::Uniform,
                        Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Access::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(key.entry_point()),
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: key.reads_workgroup_memory_unwritten(),
                ..Default::default()
            },
            cache: None,
        });
        Kernel { pipeline, layout }
    })
}
