//! Shared by the GPU tests: every adapter found, and contract checks with adapter names.
#![allow(dead_code)]

use std::sync::OnceLock;

use softmax_wgpu::accuracy::{self, Report, EPS, SOFTMAX};
use softmax_wgpu::{
    oracle, CrossEntropyOptions, CrossEntropyResult, Element, Engine, EngineOptions, Forward,
    Reduction, Shape, SoftmaxOptions,
};

/// One engine per adapter found (lavapipe Vulkan and llvmpipe GL in CI). With none, every
/// GPU test fails and says what to install.
pub fn engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| match Engine::all_blocking(EngineOptions::default()) {
        Ok(list) => list,
        Err(e) => panic!("GPU tests need an adapter: {e}"),
    })
}

/// The name `WGPU_BACKEND` and the CLI's `--backend` give `e`'s backend.
pub fn backend_name(e: &Engine) -> &'static str {
    match e.info().adapter.backend {
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        _ => "vulkan",
    }
}

/// Runs `f` on every adapter; a failure names the adapter.
pub fn on_every_adapter(f: impl Fn(&Engine)) {
    on_each(engines(), f);
}

/// Taken around each engine's share of a test: the tests of one binary run on several
/// threads, and two of Mesa's CPU drivers busy at once in one process slow each other down
/// thirtyfold (measured: tests/half.rs took 168 s on lavapipe and llvmpipe together, 10 s
/// one engine at a time). Each driver already uses every core.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `f` on each engine; a failure names the adapter and its f16 path.
fn on_each<'a>(list: impl IntoIterator<Item = &'a Engine>, f: impl Fn(&Engine)) {
    for e in list {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let info = &e.info().adapter;
        let name = format!(
            "{} ({:?}, {:?}, {:?} tuning)",
            info.name,
            info.backend,
            e.half_path(),
            e.tuning()
        );
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(e)));
        if let Err(p) = r {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("on adapter {name}: {msg}");
        }
    }
}

/// Runs `op` on the GPU with output dtype `U` and checks values (and logsumexp) under the
/// accuracy contract. Returns the report of the main output.
pub fn check_forward<T: Element, U: Element>(
    e: &Engine,
    op: Forward,
    x: &[T],
    shape: Shape,
    options: &SoftmaxOptions,
) -> Report {
    let r = e
        .forward::<T, U>(op, x, shape, options, true)
        .unwrap_or_else(|err| panic!("{op:?} {shape:?} failed: {err}"));
    let lse = r.lse.expect("lse asked for");
    let lse_report = accuracy::check(Forward::LogSumExp, x, shape, options, &lse);
    assert!(
        lse_report.ok(),
        "logsumexp beside {op:?} {shape:?}: {lse_report}"
    );
    if op == Forward::LogSumExp {
        return lse_report;
    }
    let report = accuracy::check(op, x, shape, options, &r.values);
    assert!(report.ok(), "{op:?} {shape:?} {options:?}: {report}");
    report
}

/// All three operations in f32.
pub fn check_all_ops(e: &Engine, x: &[f32], shape: Shape, options: &SoftmaxOptions) {
    for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
        check_forward::<f32, f32>(e, op, x, shape, options);
    }
}

#[allow(unused_imports)]
pub use softmax_wgpu::accuracy::random_logits;

/// Engines forced onto the portable (packed `u32`) f16 path, one per adapter, so that CI
/// covers both f16 paths even on an adapter that has SHADER_F16.
pub fn portable_engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let options = EngineOptions {
            half_path: softmax_wgpu::HalfPath::Portable,
            ..Default::default()
        };
        Engine::all_blocking(options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
    })
}

/// Engines with GPU tuning (256-invocation workgroups, strided access, short resident rows,
/// GPU split thresholds) on every CPU adapter, so that CI runs the code paths a real GPU
/// takes; empty where no CPU adapter is found (a real GPU runs them anyway).
pub fn gpu_tuned_engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let options = EngineOptions {
            tuning: softmax_wgpu::Tuning::Gpu,
            ..Default::default()
        };
        Engine::all_blocking(options)
            .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"))
            .into_iter()
            .filter(|e| e.info().adapter.device_type == wgpu::DeviceType::Cpu)
            .collect()
    })
}

/// Engines whose devices have exactly WebGPU's default limits (`wgpu::Limits::default()`:
/// 16 KiB of workgroup memory, 256 invocations, 8 storage buffers per stage, 128 MiB per
/// binding) and no optional feature, as a browser gives (wgpu's WebGPU backend never offers
/// SUBGROUP, SwiftShader no `shader-f16`), with GPU tuning, on every adapter that offers those
/// limits; at least one must, so that a kernel that needs more fails here first.
pub fn default_limits_engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let options = EngineOptions {
            tuning: softmax_wgpu::Tuning::Gpu,
            ..Default::default()
        };
        let list: Vec<Engine> = pollster::block_on(softmax_wgpu::adapters(&options))
            .into_iter()
            .filter(|a| wgpu::Limits::default().check_limits(&a.limits()))
            .map(|a| {
                let (device, queue) =
                    pollster::block_on(a.request_device(&wgpu::DeviceDescriptor {
                        label: Some("default limits"),
                        required_features: wgpu::Features::empty(),
                        required_limits: wgpu::Limits::default(),
                        ..Default::default()
                    }))
                    .unwrap_or_else(|e| panic!("a device with the default limits: {e}"));
                Engine::from_device(device, queue, a.get_info(), options.clone())
            })
            .collect();
        assert!(
            !list.is_empty(),
            "no adapter offers WebGPU's default limits (lavapipe does: mesa-vulkan-drivers)"
        );
        list
    })
}

/// Every default-limits engine, named (see `default_limits_engines`).
pub fn on_default_limits(f: impl Fn(&Engine)) {
    on_each(default_limits_engines(), f);
}

/// Every engine, and each CPU adapter once more with GPU tuning.
pub fn on_every_tuning(f: impl Fn(&Engine)) {
    on_each(engines().iter().chain(gpu_tuned_engines()), f);
}

/// Engines in batch-invariant mode (`EngineOptions::batch_invariant`), one per adapter,
/// and each CPU adapter once more with GPU tuning.
pub fn batch_invariant_engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let with = |tuning| EngineOptions {
            tuning,
            batch_invariant: true,
            ..Default::default()
        };
        let fail = |e| panic!("GPU tests need an adapter: {e}");
        let mut list = Engine::all_blocking(with(softmax_wgpu::Tuning::Auto)).unwrap_or_else(fail);
        list.extend(
            Engine::all_blocking(with(softmax_wgpu::Tuning::Gpu))
                .unwrap_or_else(fail)
                .into_iter()
                .filter(|e| e.info().adapter.device_type == wgpu::DeviceType::Cpu),
        );
        list
    })
}

/// Every batch-invariant engine, named (see `batch_invariant_engines`).
pub fn on_batch_invariant(f: impl Fn(&Engine)) {
    on_each(batch_invariant_engines(), f);
}

/// Checks softmax (or, `log`, log-softmax) backward `got` of f32 `y` and `dy` against the
/// f64 oracle. dx_i = y_i (dy_i - s), s = sum_j dy_j y_j: the row sum's error, at most
/// eps (depth) sum_j |dy_j y_j|, reaches dx_i times y_i; log_softmax: dx_i = dy_i - exp(y_i) s,
/// s = sum_j dy_j, times exp(y_i). So each element gets its own bound,
/// eps (8 + 3 log2 C) |y_i| (|dy_i| + sum_j |dy_j y_j|) (log: |dy_i| + exp(y_i) sum_j |dy_j|):
/// a piece of a row summed twice or left out shows on every element, however long the row.
pub fn check_backward(log: bool, y: &[f32], dy: &[f32], shape: Shape, got: &[f32]) {
    let cols = shape.cols;
    let want = oracle::softmax_backward(log, y, dy, shape);
    let row_abs: Vec<f64> = dy
        .chunks(cols)
        .zip(y.chunks(cols))
        .map(|(d, y)| {
            d.iter()
                .zip(y)
                .map(|(&d, &y)| {
                    let d = f64::from(d.abs());
                    if log {
                        d
                    } else {
                        d * f64::from(y.abs())
                    }
                })
                .sum::<f64>()
        })
        .collect();
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let (yi, di) = (f64::from(y[i]), f64::from(dy[i].abs()));
        let terms = if log {
            di + yi.exp() * row_abs[i / cols]
        } else {
            yi.abs() * (di + row_abs[i / cols])
        };
        let tol = EPS * (8.0 + 3.0 * (cols as f64).log2()) * terms + f64::from(f32::MIN_POSITIVE);
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "log={log} [{i}] {g} want {w} tol {tol:e}"
        );
    }
}

/// Every engine of both f16 paths, named.
pub fn on_every_half_path(f: impl Fn(&Engine)) {
    on_each(engines().iter().chain(portable_engines()), f);
}

/// Reads `n` f32 values from `buf` at byte `offset` (a multiple of 4).
pub fn read_f32(e: &Engine, buf: &wgpu::Buffer, offset: u64, n: usize) -> Vec<f32> {
    let d = e.device();
    let staging = d.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = d.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, offset, &staging, 0, (n * 4) as u64);
    e.queue().submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let v = bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    v
}

/// Loss: each term is a log-probability, whose error the log_softmax contract bounds
/// (`~eps (8 + 4|a| + 2 log2 C)`), times its weight; plus the rounding of the sum.
pub fn loss_tol(want: f64, cols: usize, max_abs_a: f64) -> f64 {
    EPS * (8.0 + 4.0 * max_abs_a + 2.0 * (cols as f64).log2()) * (1.0 + want.abs()) * 4.0
}

/// Checks cross-entropy results against the f64 oracle: each result's losses and
/// logsumexp, and the first result's gradient (which it must have).
pub fn check_ce_result<T: Element>(
    x: &[T],
    targets: &[i64],
    shape: Shape,
    o: &CrossEntropyOptions,
    results: &[(&CrossEntropyResult<T>, &str)],
) {
    // The options for messages, with the class weights' count in place of their values.
    let o_name = format!(
        "{:?} {shape:?}, {:?}, {} class weights",
        T::DTYPE,
        CrossEntropyOptions {
            weight: None,
            ..o.clone()
        },
        o.weight.as_ref().map_or(0, Vec::len)
    );
    let want = oracle::cross_entropy(x, targets, shape, o);
    // Each row's largest |a| = |z - m| / T: the spread of its finite logits over T (rows are
    // computed independently, so each gets its own bound).
    let row_a: Vec<f64> = x
        .chunks(shape.cols)
        .map(|row| {
            let finite = row
                .iter()
                .map(|v| f64::from(v.to_f32()))
                .filter(|v| v.is_finite());
            let (lo, hi) = finite.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            (hi - lo).max(0.0) / f64::from(o.temperature)
        })
        .collect();
    let max_a = row_a.iter().cloned().fold(0.0, f64::max);
    let same =
        |g: f64, w: f64, tol: f64| (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol;
    for &(r, what) in results {
        for (i, (&g, &w)) in r.per_row.iter().zip(&want.per_row).enumerate() {
            assert!(
                same(f64::from(g), w, loss_tol(w, shape.cols, row_a[i])),
                "{what}: row {i} loss {g} want {w} ({o_name})"
            );
        }
        for (i, (&g, &w)) in r.lse.iter().zip(&want.lse).enumerate() {
            assert!(
                same(
                    f64::from(g),
                    w,
                    loss_tol(w, shape.cols, 0.0) + EPS * 4.0 * w.abs()
                ),
                "{what}: row {i} lse {g} want {w}"
            );
        }
        let lw = want.loss;
        let tol = loss_tol(lw, shape.cols, max_a) * (shape.rows as f64).log2().max(1.0);
        assert!(
            same(f64::from(r.loss), lw, tol),
            "{what}: reduced loss {} want {lw} ({o_name})",
            r.loss
        );
    }
    // Gradient: f [(1 - eps) w_t (p - onehot) + eps / C (W p - w_j) + 2 zl lse p], p obeys
    // the softmax contract; the coefficient of p is at most f (w_max (1 + eps) + 2 zl |lse|)
    // (W <= C w_max), which bounds the error of each element of the row.
    let grad = results[0].0.grad.as_ref().expect("a gradient");
    let w_max = o
        .weight
        .as_ref()
        .map_or(1.0, |w| w.iter().cloned().fold(0.0f32, f32::max)) as f64;
    let mut scale = f64::from(o.grad_scale) / f64::from(o.temperature);
    if o.reduction == Reduction::Mean {
        scale /= want
            .per_row
            .iter()
            .zip(targets)
            .filter(|(_, &t)| t != i64::from(o.ignore_index))
            .count()
            .max(1) as f64
            / w_max.max(1e-30);
    }
    let coef = |row: usize| {
        let lse = want.lse[row];
        let lse = if lse.is_finite() { lse.abs() } else { 0.0 };
        scale.abs()
            * (w_max * (1.0 + f64::from(o.label_smoothing)) + 2.0 * f64::from(o.z_loss) * lse)
    };
    let half_ulp = match T::DTYPE {
        softmax_wgpu::DType::F32 => 0.0,
        d => 1.0 * softmax_wgpu::accuracy::ulp(d, 1.0),
    };
    for (i, (g, &w)) in grad.iter().zip(&want.grad).enumerate() {
        let g = f64::from(g.to_f32());
        let row = i / shape.cols;
        let tol = coef(row)
            * (EPS
                * (SOFTMAX.base
                    + SOFTMAX.per_arg * row_a[row]
                    + SOFTMAX.per_log_cols * (shape.cols as f64).log2())
                + f64::from(f32::MIN_POSITIVE))
            + 8.0 * EPS * w.abs()
            + softmax_wgpu::accuracy::ulp(T::DTYPE, w) * f64::from(half_ulp > 0.0);
        assert!(
            same(g, w, tol),
            "grad[{i}] = {g}, want {w}, tol {tol:e} ({o_name})"
        );
    }
}
