//! The [`Engine`]: adapter choice, device, and the caches every operation shares.

use std::sync::{Arc, Mutex};

use crate::dtype::{DType, Storage};
use crate::error::{Error, Result};
use crate::pipeline::PipelineCache;
use crate::pool::{BufferPool, UniformCache};
use crate::scope::capture_errors;

/// Which f16 kernel path to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HalfPath {
    /// Native `f16` storage where the device has SHADER_F16, packed pairs elsewhere;
    /// conversions by WGSL's `pack2x16float`/`unpack2x16float` where a probe at start-up
    /// finds them exact on the adapter, by bit manipulation elsewhere.
    #[default]
    Auto,
    /// Always packed pairs in `u32`, even where SHADER_F16 is available, and conversions by
    /// bit manipulation even where the adapter's conversion builtins are exact.
    Portable,
}

/// How invocations of a workgroup split a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessPattern {
    /// Contiguous on CPU adapters, strided elsewhere.
    #[default]
    Auto,
    /// Each invocation owns one contiguous chunk (fast where lanes run one after another).
    Contiguous,
    /// Invocation `i` takes elements `i, i + WG, ...` (coalesced on GPUs).
    Strided,
}

/// Which kind of adapter the kernels are tuned for: workgroup size, access pattern, how much
/// of a row a lane holds in registers and how many workgroups keep the adapter busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tuning {
    /// CPU tuning on CPU adapters (lavapipe, llvmpipe), GPU tuning elsewhere.
    #[default]
    Auto,
    /// Small workgroups, one contiguous chunk per invocation, long register-resident rows.
    Cpu,
    /// 256-invocation workgroups, strided (coalesced) access, short register-resident rows.
    /// Forcing it on a CPU adapter lets CI run the GPU code paths.
    Gpu,
}

/// How an [`Engine`] is set up. `Default` picks the best adapter, honouring `WGPU_BACKEND`
/// and `WGPU_ADAPTER_NAME`.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Backends to consider; `None` reads `WGPU_BACKEND`, else all.
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive); `None` reads
    /// `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// The f16 kernel path.
    pub half_path: HalfPath,
    /// The access pattern of the kernels (`Auto` follows the tuning).
    pub access: AccessPattern,
    /// What the kernels are tuned for.
    pub tuning: Tuning,
}

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

/// The most iterations one invocation's loop over its share may run on a CPU adapter:
/// half of the 65535 after which Mesa's lavapipe and llvmpipe end a loop.
const MAX_LANE_ITERATIONS: u64 = 32_768;

/// Most subgroup lanes for which the forward kernels take 64-bit words on CPU adapters
/// (`Engine::forward_wide_words`). Mesa loads lane by lane, inserting each lane's component
/// into a vector of the subgroup's lanes: LLVM does that in one masked move where the vector
/// fits a 512-bit register (8 lanes of 64 bits), and in the forward kernels' folds through
/// a store and reload of the whole vector on the stack where it does not (`perf`, 16 lanes).
/// With llvmpipe at 512 bits (`LP_NATIVE_VECTOR_WIDTH=512`: 16 lanes) 64-bit words ran the
/// forward kernels 1.4 to 2.3 times slower than 32-bit ones (f32 and f16 softmax and
/// logsumexp at 256 x 32000, 32 x 128256, one row of 262144 and 1M, log-softmax at all
/// but 32 x 128256; medians of three alternating runs), and the training kernels 1.1 to
/// 1.9 times faster (cross-entropy, softmax backward; not traced further), which keep them.
const WIDE_FORWARD_MAX_LANES: u32 = 8;

/// The features this crate uses where the adapter offers them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::SHADER_INT64);

/// A device with its cached pipelines and buffers. Build it once and reuse it: every
/// operation after the first of its kind compiles nothing.
pub struct Engine {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: EngineInfo,
    pub(crate) options: EngineOptions,
    pub(crate) pipelines: PipelineCache,
    pub(crate) pool: BufferPool,
    pub(crate) uniforms: UniformCache,
    /// Split-row partial states, grown on demand and shared by every operation (each one
    /// writes its partials before it reads them, and the queue orders operations).
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// 16 bytes that stand in for a vector view of a tensor too small to have one.
    tiny: Mutex<Option<wgpu::Buffer>>,
    /// The kernels convert f16 with WGSL's pack/unpack builtins, proven exact on this
    /// adapter (see src/half_probe.rs); bit manipulation otherwise.
    pub(crate) half_builtins: bool,
    /// Held through each host-slice operation on the GL backend (see `host_guard`).
    gl_host: Mutex<()>,
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

fn instance(options: &EngineOptions) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = options
        .backends
        .or_else(wgpu::Backends::from_env)
        .unwrap_or(wgpu::Backends::all());
    wgpu::Instance::new(desc)
}

/// Lower is better: real GPUs first, CPU adapters last; native APIs before GL.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let device = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let backend = u8::from(info.backend == wgpu::Backend::Gl);
    (device, backend)
}

/// Quiets a false alarm of headless Linux machines: where no Wayland session can exist
/// (neither `WAYLAND_DISPLAY` nor `XDG_RUNTIME_DIR` is set, as on a server or in CI), sets
/// `NODEVICE_SELECT=1`, which turns off Mesa's Vulkan device-select layer. That layer looks
/// for a Wayland compositor whenever a Vulkan instance lists its devices, and without one
/// libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set in the environment.`,
/// which reads as a failure but is none. The crate ranks adapters itself ([`adapters`]), so
/// the layer's ordering is not needed.
///
/// It sets an environment variable: call it first thing in `main`, before any other thread
/// starts. It does nothing where either variable, or `NODEVICE_SELECT`, is already set, and
/// on other systems.
pub fn quiet_headless_vulkan() {
    let set = |name| std::env::var_os(name).is_some();
    if cfg!(target_os = "linux")
        && !set("WAYLAND_DISPLAY")
        && !set("XDG_RUNTIME_DIR")
        && !set("NODEVICE_SELECT")
    {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// Every adapter the options allow, best first, filtered by name where one is asked for.
pub async fn adapters(options: &EngineOptions) -> Vec<wgpu::Adapter> {
    let inst = instance(options);
    let mut list = inst.enumerate_adapters(wgpu::Backends::all()).await;
    let name = options
        .adapter_name
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .map(|n| n.to_lowercase());
    if let Some(name) = name {
        list.retain(|a| a.get_info().name.to_lowercase().contains(&name));
    }
    list.sort_by_key(|a| rank(&a.get_info()));
    list
}

fn no_adapter(options: &EngineOptions) -> Error {
    let mut detail = String::new();
    if let Some(b) = options.backends.or_else(wgpu::Backends::from_env) {
        detail += &format!(" for backends {b:?}");
    }
    if let Some(n) = options
        .adapter_name
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
    {
        detail += &format!(" named like {n:?}");
    }
    Error::NoAdapter { detail }
}

impl Engine {
    /// The best adapter (honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`), with a device
    /// that has the adapter's own limits and whichever of SHADER_F16, SUBGROUP and
    /// TIMESTAMP_QUERY it offers.
    pub async fn new(options: EngineOptions) -> Result<Self> {
        let adapter = adapters(&options)
            .await
            .into_iter()
            .next()
            .ok_or_else(|| no_adapter(&options))?;
        Self::from_adapter(&adapter, options).await
    }

    /// Blocking [`Engine::new`].
    pub fn new_blocking(options: EngineOptions) -> Result<Self> {
        pollster::block_on(Self::new(options))
    }

    /// One engine per adapter found, best first (tests and benchmarks run on all of them).
    pub async fn all(options: EngineOptions) -> Result<Vec<Self>> {
        let mut out = Vec::new();
        for adapter in adapters(&options).await {
            let engine = Self::from_adapter(&adapter, options.clone())
                .await
                .map_err(|e| {
                    let info = adapter.get_info();
                    Error::Adapter {
                        adapter: format!("{} ({:?})", info.name, info.backend),
                        source: Box::new(e),
                    }
                })?;
            out.push(engine);
        }
        if out.is_empty() {
            return Err(no_adapter(&options));
        }
        Ok(out)
    }

    /// Blocking [`Engine::all`].
    pub fn all_blocking(options: EngineOptions) -> Result<Vec<Self>> {
        pollster::block_on(Self::all(options))
    }

    /// A device on `adapter`.
    pub async fn from_adapter(adapter: &wgpu::Adapter, options: EngineOptions) -> Result<Self> {
        let features = adapter.features() & WANTED_FEATURES;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("softmax-wgpu"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await?;
        let lost = Arc::new(Mutex::new(None));
        let flag = lost.clone();
        // Destroyed counts too: a device the caller destroys through `Engine::device` is
        // gone for the engine as well.
        device.set_device_lost_callback(move |reason, message| {
            *flag.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("{reason:?}: {message}"));
        });
        let mut engine = Self::from_device(device, queue, adapter.get_info(), options);
        engine.lost = lost;
        Ok(engine)
    }

    /// Wraps a device the caller already has; its features and limits are read from it.
    /// With [`HalfPath::Auto`] this runs one small kernel on the device and waits for it,
    /// to learn whether the adapter's f16 conversion builtins are exact.
    /// Operations then record into the caller's encoders ([`Engine::record_forward`]).
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: wgpu::AdapterInfo,
        options: EngineOptions,
    ) -> Self {
        let info = EngineInfo {
            adapter,
            features: device.features(),
            limits: device.limits(),
        };
        let half_builtins = options.half_path == HalfPath::Auto
            && crate::half_probe::builtins_are_exact(&device, &queue);
        Engine {
            half_builtins,
            device,
            queue,
            info,
            options,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            uniforms: UniformCache::default(),
            scratch: Mutex::new(None),
            tiny: Mutex::new(None),
            gl_host: Mutex::new(()),
            lost: Arc::new(Mutex::new(None)),
        }
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Adapter, features and limits in use.
    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The f16 path this engine was asked for.
    pub fn half_path(&self) -> HalfPath {
        self.options.half_path
    }

    /// Whether the kernels convert f16 with WGSL's builtins (found exact on this adapter)
    /// rather than by bit manipulation.
    pub fn half_builtins(&self) -> bool {
        self.half_builtins
    }

    /// What the kernels are tuned for, `Auto` resolved from the adapter.
    pub fn tuning(&self) -> Tuning {
        if self.cpu_tuned() {
            Tuning::Cpu
        } else {
            Tuning::Gpu
        }
    }

    /// Number of pipelines compiled so far.
    pub fn compiled_pipelines(&self) -> usize {
        self.pipelines.len()
    }

    /// Frees the idle buffers the host-slice API keeps for reuse.
    pub fn release_buffers(&self) {
        self.pool.clear();
    }

    /// The split-row scratch buffer, at least `bytes` long.
    pub(crate) fn split_scratch(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let mut slot = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = slot.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(b.clone());
        }
        let size = bytes.max(4096).next_power_of_two();
        let buffer = capture_errors(&self.device, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("softmax-wgpu split-row partials"),
                size,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })?;
        *slot = Some(buffer.clone());
        Ok(buffer)
    }

    /// The 32-byte stand-in buffer (see `tiny`).
    pub(crate) fn tiny_buffer(&self) -> Result<wgpu::Buffer> {
        let mut slot = self.tiny.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let buffer = capture_errors(&self.device, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("softmax-wgpu stand-in"),
                size: 32,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })?;
        *slot = Some(buffer.clone());
        Ok(buffer)
    }

    /// Runs one host-slice operation (`guarded`), one at a time where the backend needs it
    /// (`host_guard`).
    pub(crate) fn host_op<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _turn = self.host_guard();
        self.guarded(f)
    }

    /// Runs `f`, which submits work and waits for it, failing at once on a lost device.
    /// wgpu's validation and out-of-memory errors inside become `Err` instead of reaching
    /// the device's uncaptured-error handler (which panics by default), and where the device
    /// was lost meanwhile, that is the error rather than the failure the loss caused.
    pub(crate) fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.check_alive()?;
        let result = capture_errors(&self.device, f).and_then(|r| r);
        if result.is_err() {
            // wgpu reports a loss from its maintenance, which a poll runs.
            let _ = self.device.poll(wgpu::PollType::Poll);
            self.check_alive()?;
        }
        result
    }

    /// Fails with [`Error::DeviceLost`] once the device is gone.
    pub(crate) fn check_alive(&self) -> Result<()> {
        match &*self.lost.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(msg) => Err(Error::DeviceLost(msg.clone())),
            None => Ok(()),
        }
    }

    /// How `dtype` is stored in shaders on this device.
    pub(crate) fn storage(&self, dtype: DType) -> Storage {
        match dtype {
            DType::F32 => Storage::F32,
            DType::BF16 => Storage::Bf16Packed,
            DType::F16 => {
                let native = self.info.features.contains(wgpu::Features::SHADER_F16)
                    && self.options.half_path == HalfPath::Auto;
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
        match self.options.access {
            AccessPattern::Contiguous => true,
            AccessPattern::Strided => false,
            AccessPattern::Auto => self.cpu_tuned(),
        }
    }

    /// On the GL backend, a guard that makes the host-slice operations of one engine take
    /// turns: wgpu's GL backend holds its one context while a thread waits for the GPU, and
    /// panics when another thread waits more than a second for it (gfx-rs/wgpu#5299), which
    /// a long kernel on llvmpipe reaches. Other backends run operations side by side.
    pub(crate) fn host_guard(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        (self.info.adapter.backend == wgpu::Backend::Gl)
            .then(|| self.gl_host.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the kernels are tuned for a CPU adapter (see [`Tuning`]).
    pub(crate) fn cpu_tuned(&self) -> bool {
        match self.options.tuning {
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
        self.cpu_tuned() && self.info.features.contains(wgpu::Features::SHADER_INT64)
    }

    /// `wide_words` for the forward kernels: not where the device has SUBGROUP and its
    /// subgroups' lanes of one 64-bit component overflow a 512-bit register
    /// (`WIDE_FORWARD_MAX_LANES`); without SUBGROUP the sizes an adapter reports are
    /// placeholders (llvmpipe's GL: 4 to 128).
    pub(crate) fn forward_wide_words(&self) -> bool {
        let wider = self.info.features.contains(wgpu::Features::SUBGROUP)
            && self.info.adapter.subgroup_min_size > WIDE_FORWARD_MAX_LANES;
        self.wide_words() && !wider
    }

    /// Bytes per element of the vector view of a tensor of `dtype`, 64-bit words or not
    /// (see `shader::view_bytes`).
    pub(crate) fn view_bytes(&self, dtype: DType, wide: bool) -> u64 {
        crate::shader::view_bytes(self.storage(dtype), wide)
    }

    /// Whether the adapter is a CPU implementation (whatever the tuning).
    pub(crate) fn runs_on_cpu(&self) -> bool {
        self.info.adapter.device_type == wgpu::DeviceType::Cpu
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
            .info
            .limits
            .max_compute_invocations_per_workgroup
            .min(self.info.limits.max_compute_workgroup_size_x)
            .min(wanted);
        1 << (31 - max.max(1).leading_zeros())
    }
}
