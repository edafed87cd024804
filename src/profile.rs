//! What every kernel choice knows of a device, resolved once when the engine is made: its
//! type, features, limits and subgroup sizes, and the engine's options. The choices
//! themselves (workgroup sizes, storage of each dtype, the variant and layout of a forward
//! operation in src/plan.rs, the training kernels' layouts in src/training/mod.rs) are
//! methods of [`DeviceProfile`], pure functions of a profile and a call, so tests plan for
//! a lavapipe, llvmpipe or H100 profile without an adapter.

use crate::dtype::{DType, Storage};
use crate::error::{Error, Result};
use crate::options::{AccessPattern, EngineOptions, HalfPath, Tuning};
use crate::tuning::{MAX_LANE_ITERATIONS, WIDE_FORWARD_MAX_LANES};

/// What an engine runs on.
#[derive(Clone, Debug)]
pub struct EngineInfo {
    /// The adapter's name, driver and backend.
    pub adapter: wgpu::AdapterInfo,
    /// Features enabled on the device (those of SHADER_F16, SUBGROUP, TIMESTAMP_QUERY it has).
    pub features: wgpu::Features,
    /// The device's limits (the adapter's own, not wgpu's defaults).
    pub limits: wgpu::Limits,
}

impl std::fmt::Display for EngineInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = &self.adapter;
        let has = |feat| {
            if self.features.contains(feat) {
                "yes"
            } else {
                "no"
            }
        };
        write!(
            f,
            "{} ({:?}, {:?}, driver {} {}); SHADER_F16 {}, SUBGROUP {}, TIMESTAMP_QUERY {}",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.driver_info,
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::SUBGROUP),
            has(wgpu::Features::TIMESTAMP_QUERY),
        )
    }
}

/// Threads a CPU adapter runs workgroups on: `LP_NUM_THREADS` where set (Mesa's CPU
/// drivers read it too), the machine's otherwise.
fn cpu_threads() -> u32 {
    std::env::var("LP_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(4)
        .clamp(1, 64) as u32
}

/// What the kernel choices know of a device (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeviceProfile {
    /// CPU implementations (lavapipe, llvmpipe) get their own tuning under `Tuning::Auto`.
    pub device_type: wgpu::DeviceType,
    /// The device's features.
    pub features: wgpu::Features,
    /// The device's limits.
    pub limits: wgpu::Limits,
    /// The adapter's subgroup sizes (placeholders without SUBGROUP).
    pub subgroup_min_size: u32,
    /// See `subgroup_min_size`.
    pub subgroup_max_size: u32,
    /// The tuning asked for.
    pub tuning: Tuning,
    /// The access pattern asked for.
    pub access: AccessPattern,
    /// The f16 path asked for.
    pub half_path: HalfPath,
    /// The kernels convert f16 with WGSL's pack/unpack builtins, proven exact on this
    /// adapter (see src/half_probe.rs); bit manipulation otherwise.
    pub half_builtins: bool,
    /// Threads a CPU adapter runs workgroups on (`cpu_threads`).
    pub cpu_threads: u32,
    /// `EngineOptions::batch_invariant`: every launch chooses its layout by the row length
    /// alone and sums rows in their columns' order (src/plan.rs, `invariant_plan`).
    pub batch_invariant: bool,
    /// `EngineOptions::cache_bytes`: split-row dispatches sized to the cache (`cache_rows`).
    pub cache_bytes: u64,
}

impl DeviceProfile {
    /// The profile of a device described by `info`, for an engine with `options`.
    pub(crate) fn new(info: &EngineInfo, options: &EngineOptions, half_builtins: bool) -> Self {
        DeviceProfile {
            device_type: info.adapter.device_type,
            features: info.features,
            limits: info.limits.clone(),
            subgroup_min_size: info.adapter.subgroup_min_size,
            subgroup_max_size: info.adapter.subgroup_max_size,
            tuning: options.tuning,
            access: options.access,
            half_path: options.half_path,
            half_builtins,
            cpu_threads: cpu_threads(),
            batch_invariant: options.batch_invariant,
            cache_bytes: options.cache_bytes,
        }
    }

    /// How `dtype` is stored in shaders on this device.
    pub(crate) fn storage(&self, dtype: DType) -> Storage {
        match dtype {
            DType::F32 => Storage::F32,
            DType::BF16 => Storage::Bf16Packed,
            DType::F16 => {
                let native = self.features.contains(wgpu::Features::SHADER_F16)
                    && self.half_path == HalfPath::Auto;
                if native {
                    Storage::F16Native
                } else {
                    Storage::F16Packed
                }
            }
        }
    }

    /// Whether kernels give each invocation one contiguous chunk.
    pub(crate) fn contiguous(&self) -> bool {
        match self.access {
            AccessPattern::Contiguous => true,
            AccessPattern::Strided => false,
            AccessPattern::Auto => self.cpu_tuned(),
        }
    }

    /// Whether the kernels are tuned for a CPU adapter (see [`Tuning`]).
    pub(crate) fn cpu_tuned(&self) -> bool {
        match self.tuning {
            Tuning::Cpu => true,
            Tuning::Gpu => false,
            Tuning::Auto => self.runs_on_cpu(),
        }
    }

    /// Whether the training kernels load and store their vector views as 64-bit words: with
    /// CPU tuning where the device has SHADER_INT64. CPU adapters move each component of each
    /// lane on its own, so wider components mean fewer moves (see `vector_view` in
    /// src/shader/views.rs); GPUs already load 16 bytes per instruction.
    pub(crate) fn wide_words(&self) -> bool {
        self.cpu_tuned() && self.features.contains(wgpu::Features::SHADER_INT64)
    }

    /// `wide_words` for the forward kernels: not where the device has SUBGROUP and its
    /// subgroups' lanes of one 64-bit component overflow a 512-bit register
    /// (`WIDE_FORWARD_MAX_LANES`); without SUBGROUP the sizes an adapter reports are
    /// placeholders (llvmpipe's GL: 4 to 128).
    pub(crate) fn forward_wide_words(&self) -> bool {
        let wider = self.features.contains(wgpu::Features::SUBGROUP)
            && self.subgroup_min_size > WIDE_FORWARD_MAX_LANES;
        self.wide_words() && !wider
    }

    /// Bytes per element of the vector view of a tensor of `dtype`, 64-bit words or not
    /// (see `shader::view_bytes`).
    pub(crate) fn view_bytes(&self, dtype: DType, wide: bool) -> u64 {
        crate::shader::view_bytes(self.storage(dtype), wide)
    }

    /// Whether the adapter is a CPU implementation (whatever the tuning).
    pub(crate) fn runs_on_cpu(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// The workgroup size of the softmax-family kernels: 256 with GPU tuning; 16 with CPU
    /// tuning, since CPU adapters run a workgroup's lanes in SIMD batches one after another
    /// and pay for every batch at each barrier (measured on lavapipe: 256 lanes take 1.6 times as long as 16).
    /// Never above what the device allows.
    pub(crate) fn workgroup_size(&self) -> u32 {
        let wanted = if self.cpu_tuned() { 16 } else { 256 };
        self.largest_workgroup(wanted)
    }

    /// The workgroup size for kernels whose invocations each loop over a share of
    /// `items` (a row's logits or blocks, or the rows of a batch): `workgroup_size()`, but on
    /// CPU adapters as large as it takes to keep every share within
    /// `MAX_LANE_ITERATIONS`, since Mesa's CPU drivers silently end a shader loop after
    /// 65535 iterations per invocation (measured: cross-entropy over 16 x 65534 logits on
    /// 16 lanes came out wrong).
    pub(crate) fn workgroup_for(&self, what: &'static str, items: u64) -> Result<u32> {
        let base = self.workgroup_size();
        if !self.runs_on_cpu() {
            return Ok(base);
        }
        let needed = items.div_ceil(MAX_LANE_ITERATIONS).next_power_of_two();
        let wg = self.largest_workgroup(u32::try_from(needed).unwrap_or(u32::MAX).max(base));
        if items.div_ceil(u64::from(wg)) > MAX_LANE_ITERATIONS {
            return Err(Error::RowTooLong {
                what,
                items,
                limit: u64::from(wg) * MAX_LANE_ITERATIONS,
            });
        }
        Ok(wg)
    }

    /// The largest power of two up to `wanted` the device allows as a workgroup size.
    pub(crate) fn largest_workgroup(&self, wanted: u32) -> u32 {
        let max = self
            .limits
            .max_compute_invocations_per_workgroup
            .min(self.limits.max_compute_workgroup_size_x)
            .min(wanted);
        1 << (31 - max.max(1).leading_zeros())
    }

    /// `(rows per dispatch, binding offset alignment, max workgroups per dimension)` for rows
    /// of `row_bytes` in their widest binding: every binding of a chunk must fit the
    /// binding-size limit, with room for the slack of aligning its offset down.
    pub(crate) fn chunking(&self, row_bytes: u64) -> Result<(u64, u64, u64)> {
        let limits = &self.limits;
        let align = u64::from(limits.min_storage_buffer_offset_alignment);
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            / 4
            * 4;
        let slack = align + 4;
        let usable = max_binding.saturating_sub(slack);
        if row_bytes > usable {
            return Err(Error::TooLarge {
                what: "one row with its binding's alignment slack",
                needed: row_bytes + slack,
                limit_name: "max_storage_buffer_binding_size",
                limit: max_binding,
            });
        }
        let rows_per_chunk = (usable / row_bytes.max(4)).min(u64::from(u32::MAX));
        Ok((
            rows_per_chunk,
            align,
            u64::from(limits.max_compute_workgroups_per_dimension),
        ))
    }
}

/// Described devices for the planner's tests: lavapipe (Vulkan), llvmpipe through GL and an
/// NVIDIA H100, as `softmax-wgpu info` (and the H100's bench records) describe them.
#[cfg(test)]
pub(crate) mod described {
    use super::DeviceProfile;
    use crate::options::{AccessPattern, HalfPath, Tuning};
    use wgpu::Features as F;

    /// A device as `softmax-wgpu info` describes it, with two CPU threads.
    fn profile(
        device_type: wgpu::DeviceType,
        features: wgpu::Features,
        subgroup: (u32, u32),
    ) -> DeviceProfile {
        DeviceProfile {
            device_type,
            features,
            limits: wgpu::Limits {
                max_storage_buffer_binding_size: 1 << 27,
                max_compute_invocations_per_workgroup: 1024,
                max_compute_workgroup_size_x: 1024,
                ..wgpu::Limits::default()
            },
            subgroup_min_size: subgroup.0,
            subgroup_max_size: subgroup.1,
            tuning: Tuning::Auto,
            access: AccessPattern::Auto,
            half_path: HalfPath::Auto,
            half_builtins: true,
            cpu_threads: 2,
            batch_invariant: false,
            cache_bytes: 0,
        }
    }

    pub(crate) fn lavapipe() -> DeviceProfile {
        let f = F::SHADER_F16 | F::SUBGROUP | F::TIMESTAMP_QUERY | F::SHADER_INT64;
        profile(wgpu::DeviceType::Cpu, f, (8, 8))
    }

    pub(crate) fn llvmpipe_gl() -> DeviceProfile {
        profile(wgpu::DeviceType::Cpu, F::TIMESTAMP_QUERY, (4, 128))
    }

    pub(crate) fn h100() -> DeviceProfile {
        let f = F::SHADER_F16 | F::SUBGROUP | F::TIMESTAMP_QUERY | F::SHADER_INT64;
        profile(wgpu::DeviceType::DiscreteGpu, f, (32, 32))
    }
}
