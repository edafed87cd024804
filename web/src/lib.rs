//! softmax-wgpu in the browser: the crate's kernels and automatic choices on WebGPU, called
//! from JavaScript. Built with `wasm-bindgen` for `wasm32-unknown-unknown`
//! (`examples/web/serve.sh` builds it and serves the demo page).
//!
//! ```js
//! import init, { Engine } from "./pkg/softmax_wgpu_web.js";
//! await init();
//! const engine = await Engine.create();
//! const p = await engine.softmax(new Float32Array([1000, 1001, 999]), { rows: 1, cols: 3 });
//! const { tokens } = await engine.sample(logits, { rows, cols, topK: 50, topP: 0.9, seed: 7 });
//! ```
//!
//! Every method returns a promise. Errors reject it with a JavaScript `Error` whose message
//! is the Rust error's: bad shapes, dtypes, temperatures and targets are refused before any
//! GPU work, and wgpu's own errors are caught in error scopes.

mod bench;
mod convert;
mod options;

use std::rc::Rc;

use js_sys::{Float32Array, Object, Promise, Reflect};
use softmax_wgpu as sw;
use sw::{wgpu, Forward};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use convert::{by_dtype, from_js, js_error, targets_from_js, to_js};
use options::{CrossEntropyOpts, EngineOpts, SampleOpts, ShapeOpts};

/// A WebGPU device with the crate's cached pipelines and buffers. Create it once
/// (`await Engine.create()`) and reuse it.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<sw::Engine>,
}

/// What the page's message says when the browser has no WebGPU.
const NO_WEBGPU: &str = "this browser has no WebGPU (navigator.gpu is undefined): use a \
    browser with WebGPU; headless Chromium needs --enable-unsafe-webgpu (and --no-sandbox \
    as root)";

#[wasm_bindgen]
impl Engine {
    /// The best WebGPU adapter, with a device that has the adapter's limits and whichever of
    /// `shader-f16` and `timestamp-query` it offers. `options` (optional):
    /// `{ halfPath: "auto" | "portable", tuning: "auto" | "cpu" | "gpu", batchInvariant: bool }`.
    pub async fn create(options: JsValue) -> Result<Engine, JsValue> {
        let options = EngineOpts::parse(options)?.into_engine_options()?;
        if !has_webgpu() {
            return Err(js_error(NO_WEBGPU));
        }
        let inner = sw::Engine::new(options)
            .await
            .map_err(|e| js_error(format!("{e} ({NO_WEBGPU}, or its adapter was refused)")))?;
        Ok(Engine {
            inner: Rc::new(inner),
        })
    }

    /// The adapter and what the kernels use of it: `{ name, backend, deviceType, driver,
    /// features: [...], tuning, halfBuiltins, limits: {...} }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let info = self.inner.info();
        let out = Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
        let a = &info.adapter;
        set("name", a.name.clone().into())?;
        set("backend", format!("{:?}", a.backend).into())?;
        set("deviceType", format!("{:?}", a.device_type).into())?;
        set(
            "driver",
            format!("{} {}", a.driver, a.driver_info).trim().into(),
        )?;
        let features = js_sys::Array::new();
        for (flag, name) in [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
        ] {
            if info.features.contains(flag) {
                features.push(&name.into());
            }
        }
        set("features", features.into())?;
        set("tuning", format!("{:?}", self.inner.tuning()).into())?;
        set("halfBuiltins", self.inner.half_builtins().into())?;
        let limits = Object::new();
        let l = &info.limits;
        for (k, v) in [
            (
                "maxStorageBufferBindingSize",
                l.max_storage_buffer_binding_size,
            ),
            ("maxBufferSize", l.max_buffer_size),
            (
                "maxComputeWorkgroupStorageSize",
                l.max_compute_workgroup_storage_size.into(),
            ),
            (
                "maxComputeInvocationsPerWorkgroup",
                l.max_compute_invocations_per_workgroup.into(),
            ),
            (
                "maxComputeWorkgroupsPerDimension",
                l.max_compute_workgroups_per_dimension.into(),
            ),
            (
                "maxStorageBuffersPerShaderStage",
                l.max_storage_buffers_per_shader_stage.into(),
            ),
        ] {
            Reflect::set(&limits, &k.into(), &(v as f64).into())?;
        }
        set("limits", limits.into())?;
        Ok(out.into())
    }

    /// Softmax of each row. `logits`: a `Float32Array` (dtype `"f32"`, the default) or a
    /// `Uint16Array` of f16 or bf16 bits (dtype `"f16"`, `"bf16"`); `options`:
    /// `{ rows, cols, dtype?, temperature?, maskedRows?: "nan" | "zeros", variant? }`.
    /// Resolves to an array of the logits' type.
    pub fn softmax(&self, logits: JsValue, options: JsValue) -> Promise {
        self.forward(Forward::Softmax, logits, options)
    }

    /// Log-softmax of each row; arguments and result as [`Engine::softmax`].
    #[wasm_bindgen(js_name = logSoftmax)]
    pub fn log_softmax(&self, logits: JsValue, options: JsValue) -> Promise {
        self.forward(Forward::LogSoftmax, logits, options)
    }

    /// Logsumexp of each row: resolves to a `Float32Array` of `rows` values.
    pub fn logsumexp(&self, logits: JsValue, options: JsValue) -> Promise {
        self.forward(Forward::LogSumExp, logits, options)
    }

    /// Cross-entropy against `targets` (an `Int32Array`, `BigInt64Array` or array of class
    /// indices, one per row). `options`: `{ rows, cols, dtype?, temperature?, ignoreIndex?,
    /// labelSmoothing?, reduction?: "mean" | "sum" | "none", weight?, zLoss?, gradScale?,
    /// grad?: boolean }`. Resolves to `{ loss, perRow, lse, grad? }` (`grad` in the logits'
    /// type, when asked for).
    #[wasm_bindgen(js_name = crossEntropy)]
    pub fn cross_entropy(&self, logits: JsValue, targets: JsValue, options: JsValue) -> Promise {
        let engine = self.inner.clone();
        future_to_promise(async move {
            let o = CrossEntropyOpts::parse(options)?;
            let (shape, dtype) = o.shape_and_dtype()?;
            let targets = targets_from_js(&targets)?;
            let options = o.to_options()?;
            by_dtype!(dtype, T => {
                let x = from_js::<T>(&logits, "logits")?;
                let r = engine
                    .cross_entropy_async(&x, &targets, shape, &options, o.grad)
                    .await
                    .map_err(js_error)?;
                let out = Object::new();
                Reflect::set(&out, &"loss".into(), &r.loss.into())?;
                Reflect::set(&out, &"perRow".into(), &Float32Array::from(&r.per_row[..]))?;
                Reflect::set(&out, &"lse".into(), &Float32Array::from(&r.lse[..]))?;
                if let Some(g) = &r.grad {
                    Reflect::set(&out, &"grad".into(), &to_js(g))?;
                }
                Ok(out.into())
            })
        })
    }

    /// One token per row. `logits` as for [`Engine::softmax`]; `options`: `{ rows, cols,
    /// dtype?, temperature?, topK?, topP?, minP?, seed?, offsets?, uniforms? }`: the
    /// parameters for every row (temperature 0: greedy), and either `seed` (Philox4x32-10 at
    /// `offsets`, one integer per row, default each row's index) or `uniforms` (one `u` in
    /// [0, 1) per row). Resolves to `{ tokens: Int32Array (-1: no token), status: ["ok" |
    /// "nan" | "pos-inf" | "all-masked"], logprobs: Float32Array, kept: Uint32Array }`.
    pub fn sample(&self, logits: JsValue, options: JsValue) -> Promise {
        let engine = self.inner.clone();
        future_to_promise(async move {
            let o = SampleOpts::parse(options)?;
            let (shape, dtype) = o.shape_and_dtype()?;
            let params = o.params()?;
            let uniforms = o.uniforms(shape.rows)?;
            by_dtype!(dtype, T => {
                let x = from_js::<T>(&logits, "logits")?;
                let picks = engine
                    .sample_async(&x, shape, &[params], uniforms.view())
                    .await
                    .map_err(js_error)?;
                let tokens: Vec<i32> = picks
                    .iter()
                    .map(|s| if s.token == sw::sampling::NO_TOKEN { -1 } else { s.token as i32 })
                    .collect();
                let status = js_sys::Array::new();
                for s in &picks {
                    status.push(&status_name(s.status).into());
                }
                let logprobs: Vec<f32> = picks.iter().map(|s| s.logprob).collect();
                let kept: Vec<u32> = picks.iter().map(|s| s.kept).collect();
                let out = Object::new();
                Reflect::set(&out, &"tokens".into(), &js_sys::Int32Array::from(&tokens[..]))?;
                Reflect::set(&out, &"status".into(), &status)?;
                Reflect::set(&out, &"logprobs".into(), &Float32Array::from(&logprobs[..]))?;
                Reflect::set(&out, &"kept".into(), &js_sys::Uint32Array::from(&kept[..]))?;
                Ok(out.into())
            })
        })
    }

    /// Softmax backward: `y` the softmax output, `dy` the upstream gradient, both of the
    /// logits' type; `options`: `{ rows, cols, dtype? }`. Resolves to the gradient.
    #[wasm_bindgen(js_name = softmaxBackward)]
    pub fn softmax_backward(&self, y: JsValue, dy: JsValue, options: JsValue) -> Promise {
        self.backward(false, y, dy, options)
    }

    /// Log-softmax backward; arguments as [`Engine::softmax_backward`], `y` the log-softmax
    /// output.
    #[wasm_bindgen(js_name = logSoftmaxBackward)]
    pub fn log_softmax_backward(&self, y: JsValue, dy: JsValue, options: JsValue) -> Promise {
        self.backward(true, y, dy, options)
    }

    /// The kernel variant the automatic choice takes for `op` (`"softmax"`, `"log-softmax"`,
    /// `"logsumexp"`) on `{ rows, cols, dtype?, variant? }`.
    pub fn variant(&self, op: &str, options: JsValue) -> Result<String, JsValue> {
        let o = ShapeOpts::parse(options)?;
        let (shape, _) = o.shape_and_dtype()?;
        let variant = self
            .inner
            .forward_variant(options::forward_op(op)?, shape, &o.softmax_options()?)
            .map_err(js_error)?;
        Ok(variant.name().into())
    }

    /// Times `{ op, rows, cols, dtype?, runs? }` beside the copy kernel over the same bytes,
    /// in alternation, on deterministic logits, and returns the medians with a few rows of
    /// logits and results for the page to check: `{ variant, seconds, copySeconds, gbps,
    /// copyGbps, ratio, checked: [{ row, logits, values }] }`.
    pub fn bench(&self, options: JsValue) -> Promise {
        let engine = self.inner.clone();
        future_to_promise(async move { bench::run(&engine, options).await })
    }
}

impl Engine {
    fn forward(&self, op: Forward, logits: JsValue, options: JsValue) -> Promise {
        let engine = self.inner.clone();
        future_to_promise(async move {
            let o = ShapeOpts::parse(options)?;
            let (shape, dtype) = o.shape_and_dtype()?;
            let options = o.softmax_options()?;
            by_dtype!(dtype, T => {
                let x = from_js::<T>(&logits, "logits")?;
                let r = engine
                    .forward_async::<T, T>(op, &x, shape, &options, false)
                    .await
                    .map_err(js_error)?;
                Ok(match op {
                    Forward::LogSumExp => Float32Array::from(&r.lse.unwrap_or_default()[..]).into(),
                    _ => to_js(&r.values),
                })
            })
        })
    }

    fn backward(&self, log: bool, y: JsValue, dy: JsValue, options: JsValue) -> Promise {
        let engine = self.inner.clone();
        future_to_promise(async move {
            let o = ShapeOpts::parse(options)?;
            let (shape, dtype) = o.shape_and_dtype()?;
            by_dtype!(dtype, T => {
                let y = from_js::<T>(&y, "y")?;
                let dy = from_js::<T>(&dy, "dy")?;
                let dx = engine
                    .softmax_backward_async(log, &y, &dy, shape)
                    .await
                    .map_err(js_error)?;
                Ok(to_js(&dx))
            })
        })
    }
}

/// A row's status as `sample` reports it.
fn status_name(s: sw::sampling::SampleStatus) -> &'static str {
    use sw::sampling::SampleStatus::*;
    match s {
        Ok => "ok",
        NanRow => "nan",
        PosInfRow => "pos-inf",
        AllMasked => "all-masked",
        InvalidParams => "invalid-params",
    }
}

/// Whether `navigator.gpu` exists (in a window or a worker).
fn has_webgpu() -> bool {
    let gpu = Reflect::get(&js_sys::global(), &"navigator".into())
        .and_then(|n| Reflect::get(&n, &"gpu".into()));
    matches!(gpu, Ok(g) if !g.is_undefined() && !g.is_null())
}

/// The Rust API, for the browser tests.
pub use softmax_wgpu;
