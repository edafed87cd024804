//! The [`Engine`]: adapter choice, device, and the caches every operation shares.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::options::{EngineOptions, Forward, HalfPath, Shape, Tuning, Variant};
use crate::pipeline::PipelineCache;
use crate::pool::{BufferPool, UniformCache};
use crate::profile::{DeviceProfile, EngineInfo};
use crate::scope::capture_errors;

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
    /// What the kernel choices know of the device (src/profile.rs).
    pub(crate) profile: DeviceProfile,
    /// Held through each host-slice operation on the GL backend (see `host_turn`).
    gl_host: futures_intrusive::sync::Mutex<()>,
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
    #[cfg(not(target_arch = "wasm32"))]
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
    #[cfg(not(target_arch = "wasm32"))]
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
        let mut engine = Self::from_device_async(device, queue, adapter.get_info(), options).await;
        engine.lost = lost;
        Ok(engine)
    }

    /// Wraps a device the caller already has; its features and limits are read from it.
    /// With [`HalfPath::Auto`] this runs one small kernel on the device and awaits it, to
    /// learn whether the adapter's f16 conversion builtins are exact.
    /// Operations then record into the caller's encoders ([`Engine::record_forward`]).
    pub async fn from_device_async(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: wgpu::AdapterInfo,
        options: EngineOptions,
    ) -> Self {
        let half_builtins = options.half_path == HalfPath::Auto
            && crate::half_probe::builtins_are_exact(&device, &queue).await;
        Self::assemble(device, queue, adapter, options, half_builtins)
    }

    /// Blocking [`Engine::from_device_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: wgpu::AdapterInfo,
        options: EngineOptions,
    ) -> Self {
        pollster::block_on(Self::from_device_async(device, queue, adapter, options))
    }

    fn assemble(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: wgpu::AdapterInfo,
        options: EngineOptions,
        half_builtins: bool,
    ) -> Self {
        let info = EngineInfo {
            adapter,
            features: device.features(),
            limits: device.limits(),
        };
        Engine {
            profile: DeviceProfile::new(&info, &options, half_builtins),
            device,
            queue,
            info,
            options,
            pipelines: PipelineCache::default(),
            pool: BufferPool::default(),
            uniforms: UniformCache::default(),
            scratch: Mutex::new(None),
            tiny: Mutex::new(None),
            gl_host: futures_intrusive::sync::Mutex::new((), false),
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
        self.profile.half_builtins
    }

    /// What the kernels are tuned for, `Auto` resolved from the adapter.
    pub fn tuning(&self) -> Tuning {
        if self.profile.cpu_tuned() {
            Tuning::Cpu
        } else {
            Tuning::Gpu
        }
    }

    /// The cache split-row dispatches are sized to, in bytes (`EngineOptions::cache_bytes`;
    /// 0: off).
    pub fn cache_bytes(&self) -> u64 {
        self.profile.cache_bytes
    }

    /// Whether the engine is in batch-invariant mode (`EngineOptions::batch_invariant`).
    pub fn batch_invariant(&self) -> bool {
        self.profile.batch_invariant
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

    /// Runs `f`, which submits work and waits for it, failing at once on a lost device.
    /// wgpu's validation and out-of-memory errors inside become `Err` instead of reaching
    /// the device's uncaptured-error handler (which panics by default), and where the device
    /// was lost meanwhile, that is the error rather than the failure the loss caused.
    #[cfg(not(target_arch = "wasm32"))]
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

    /// On the GL backend, a guard that makes the host-slice operations of one engine take
    /// turns: wgpu's GL backend holds its one context while a thread waits for the GPU, and
    /// panics when another thread waits more than a second for it (gfx-rs/wgpu#5299), which
    /// a long kernel on llvmpipe reaches. Other backends run operations side by side.
    pub(crate) async fn host_turn(&self) -> Option<futures_intrusive::sync::MutexGuard<'_, ()>> {
        match self.info.adapter.backend == wgpu::Backend::Gl {
            true => Some(self.gl_host.lock().await),
            false => None,
        }
    }
}

impl Engine {
    /// The longest row the resident variant holds in registers on this adapter.
    pub fn resident_cols(&self) -> usize {
        self.profile.resident_cols()
    }

    /// The variant `options.variant` resolves to for operation `op` on `shape`.
    pub fn forward_variant(
        &self,
        op: Forward,
        shape: Shape,
        options: &crate::SoftmaxOptions,
    ) -> Result<Variant> {
        shape.validate()?;
        Ok(self.profile.plan(op, shape, options.variant)?.variant)
    }
}
