//! The crate in a real browser: headless Chromium's WebGPU (SwiftShader, Tint) through
//! `wasm-bindgen-test` (`bash .ci/test-web`). The Rust API's async form, and the JavaScript
//! API with the errors a page can make. Without a WebGPU adapter every test fails, naming
//! what is missing.

use std::cell::RefCell;
use std::rc::Rc;

use half::{bf16, f16};
use js_sys::{Float32Array, Int32Array, Object, Promise, Reflect, Uint16Array};
use softmax_wgpu::accuracy::{self, adversarial_inputs, random_logits, EPS, SOFTMAX};
use softmax_wgpu::{
    oracle, wgpu, CrossEntropyOptions, Element, Engine, EngineOptions, Forward, HalfPath,
    MaskedRows, Reduction, Shape, SoftmaxOptions, Variant,
};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static ENGINE: RefCell<Option<Rc<Engine>>> = const { RefCell::new(None) };
}

/// The browser's WebGPU adapter, on the portable f16 path (SwiftShader has no
/// `shader-f16`; forcing it keeps the test the same where a browser has it). Created once.
async fn engine() -> Rc<Engine> {
    if let Some(e) = ENGINE.with(|e| e.borrow().clone()) {
        return e;
    }
    let options = EngineOptions {
        half_path: HalfPath::Portable,
        ..Default::default()
    };
    let e = match Engine::new(options).await {
        Ok(e) => Rc::new(e),
        Err(err) => panic!(
            "the browser tests need WebGPU: {err}. Install Debian's chromium and \
             chromium-driver, and run Chromium with --enable-unsafe-webgpu (web/webdriver.json)"
        ),
    };
    console_log!("adapter: {}", e.info());
    ENGINE.with(|slot| *slot.borrow_mut() = Some(e.clone()));
    e
}

/// Runs `op` with output in `T` and checks values and logsumexp under the contract.
async fn check_forward<T: Element>(
    e: &Engine,
    op: Forward,
    x: &[T],
    shape: Shape,
    o: &SoftmaxOptions,
) -> accuracy::Report {
    let r = e
        .forward_async::<T, T>(op, x, shape, o, true)
        .await
        .unwrap_or_else(|err| panic!("{op:?} {shape:?} {o:?}: {err}"));
    let lse = r.lse.expect("asked for");
    let lse_report = accuracy::check(Forward::LogSumExp, x, shape, o, &lse);
    assert!(
        lse_report.ok(),
        "logsumexp beside {op:?} {shape:?} {o:?}: {lse_report}"
    );
    if op == Forward::LogSumExp {
        return lse_report;
    }
    let report = accuracy::check(op, x, shape, o, &r.values);
    assert!(
        report.ok(),
        "{op:?} {:?} {shape:?} {o:?}: {report}",
        T::DTYPE
    );
    report
}

const OPS: [Forward; 3] = [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp];

#[wasm_bindgen_test]
async fn the_adapter_is_webgpu_without_subgroups() {
    let e = engine().await;
    assert_eq!(e.info().adapter.backend, wgpu::Backend::BrowserWebGpu);
    // wgpu's WebGPU backend never offers SUBGROUP: the subgroup-free kernels run.
    assert!(!e.info().features.contains(wgpu::Features::SUBGROUP));
}

#[wasm_bindgen_test]
async fn every_forward_variant_in_every_dtype() {
    let e = engine().await;
    let mut ran = Vec::new();
    for (rows, cols) in [(9usize, 37usize), (3, 5000)] {
        let shape = Shape::new(rows, cols);
        let x = random_logits(shape.len(), 8.0, 1);
        for v in Variant::KERNELS {
            let o = SoftmaxOptions::default().with_variant(v);
            if e.forward_variant(Forward::Softmax, shape, &o).is_err() {
                continue;
            }
            ran.push(v);
            for op in OPS {
                check_forward(&e, op, &x, shape, &o).await;
                let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                check_forward(&e, op, &h, shape, &o).await;
                let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                check_forward(&e, op, &b, shape, &o).await;
            }
        }
    }
    for v in Variant::KERNELS {
        assert!(ran.contains(&v), "{v} ran on none of the shapes");
    }
}

#[wasm_bindgen_test]
async fn edge_case_table() {
    let e = engine().await;
    const NAN: f32 = f32::NAN;
    const INF: f32 = f32::INFINITY;
    let all_nan = |v: &[f32]| v.iter().all(|x| x.is_nan());
    for masked_rows in [MaskedRows::Nan, MaskedRows::Zeros] {
        let o = SoftmaxOptions {
            masked_rows,
            ..Default::default()
        };
        let run = |row: Vec<f32>| {
            let e = e.clone();
            async move {
                let s = Shape::new(1, row.len());
                (
                    e.softmax_async(&row, s, &o).await.unwrap(),
                    e.log_softmax_async(&row, s, &o).await.unwrap(),
                    e.logsumexp_async(&row, s, &o).await.unwrap()[0],
                )
            }
        };
        let (p, l, s) = run(vec![1.0, NAN, 2.0]).await;
        assert!(
            all_nan(&p) && all_nan(&l) && s.is_nan(),
            "NaN row: {p:?} {l:?} {s}"
        );
        let (p, l, s) = run(vec![-INF, -INF, -INF]).await;
        match masked_rows {
            MaskedRows::Nan => assert!(all_nan(&p) && all_nan(&l), "{p:?} {l:?}"),
            MaskedRows::Zeros => assert!(p == [0.0; 3] && l == [0.0; 3], "{p:?} {l:?}"),
        }
        assert_eq!(s, -INF);
        let (p, l, s) = run(vec![1.0, INF, 2.0]).await;
        assert!(
            all_nan(&p) && all_nan(&l) && s == INF,
            "+inf row: {p:?} {l:?} {s}"
        );
        let (p, l, s) = run(vec![0.0, -INF, 0.0]).await;
        assert_eq!(p, [0.5, 0.0, 0.5]);
        assert_eq!(l[1], -INF);
        let ln2 = std::f32::consts::LN_2;
        assert!((l[0] + ln2).abs() <= 4.0 * f32::EPSILON && (s - ln2).abs() <= 4.0 * f32::EPSILON);
        let (p, l, s) = run(vec![-5.0]).await;
        assert_eq!((p[0], l[0], s), (1.0, 0.0, -5.0));
        let (p, _, _) = run(vec![f32::MAX, f32::MAX]).await;
        assert_eq!(p, [0.5, 0.5]);
    }
}

#[wasm_bindgen_test]
async fn accuracy_contract_on_adversarial_inputs() {
    let e = engine().await;
    for (name, x, shape, o) in adversarial_inputs() {
        for op in OPS {
            let r = check_forward(&e, op, &x, shape, &o).await;
            console_log!("{name:36} {op:?}: worst error/allowed {:.3}", r.worst_ratio);
        }
    }
}

#[wasm_bindgen_test]
async fn rows_past_one_dispatch_dimension_and_a_row_of_a_million() {
    let e = engine().await;
    // More rows than one dispatch dimension has workgroups (65535), one row per workgroup.
    let shape = Shape::new(70_000, 3);
    let x = random_logits(shape.len(), 4.0, 2);
    let o = SoftmaxOptions::default().with_variant(Variant::Online);
    check_forward(&e, Forward::Softmax, &x, shape, &o).await;
    check_forward(
        &e,
        Forward::LogSoftmax,
        &x,
        shape,
        &SoftmaxOptions::default(),
    )
    .await;
    let shape = Shape::new(1, 1 << 20);
    let x = random_logits(shape.len(), 10.0, 3);
    for op in [Forward::Softmax, Forward::LogSumExp] {
        check_forward(&e, op, &x, shape, &SoftmaxOptions::default()).await;
    }
}

#[wasm_bindgen_test]
async fn cross_entropy_with_its_gradient() {
    let e = engine().await;
    let (rows, cols) = (6usize, 3001usize);
    let shape = Shape::new(rows, cols);
    let x = random_logits(shape.len(), 5.0, 4);
    let targets: Vec<i64> = vec![0, 17, -100, 3000, 1500, 2];
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        weight: Some((0..cols).map(|j| 0.5 + (j % 3) as f32).collect()),
        temperature: 1.5,
        z_loss: 1e-3,
        reduction: Reduction::Mean,
        ..Default::default()
    };
    let got = e
        .cross_entropy_async(&x, &targets, shape, &o, true)
        .await
        .unwrap();
    let want = oracle::cross_entropy(&x, &targets, shape, &o);
    // Each loss is a weighted sum of log-probabilities, whose error the log_softmax
    // contract bounds (~eps (8 + 4|a| + 2 log2 C) with |a| <= 10 / 1.5 here), times the
    // weights (<= 2.5), plus the z-loss term's; 4x margin.
    let a = 10.0 / 1.5;
    let loss_tol =
        |w: f64| EPS * (8.0 + 4.0 * a + 2.0 * (cols as f64).log2()) * (1.0 + w.abs()) * 4.0 * 2.5;
    for (i, (&g, &w)) in got.per_row.iter().zip(&want.per_row).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= loss_tol(w),
            "row {i}: loss {g} want {w}"
        );
    }
    assert!((f64::from(got.loss) - want.loss).abs() <= loss_tol(want.loss) * 3.0);
    assert_eq!(got.per_row[2], 0.0, "the ignored row");
    // Gradient: the softmax contract times the coefficient of p (<= w_max (1 + eps) + 2 zl
    // |lse|, times the mean's 1 / (sum of weights) and 1 / T).
    let grad = got.grad.unwrap();
    let denom: f64 = [0usize, 17, 3000, 1500, 2]
        .iter()
        .map(|&t| 0.5 + (t % 3) as f64)
        .sum();
    let scale = 1.0 / denom / 1.5;
    for (i, (&g, &w)) in grad.iter().zip(&want.grad).enumerate() {
        let lse = want.lse[i / cols].abs();
        let coef = scale * (2.5 * 1.1 + 2e-3 * lse);
        let tol = coef
            * (EPS
                * (SOFTMAX.base
                    + SOFTMAX.per_arg * a
                    + SOFTMAX.per_log_cols * (cols as f64).log2())
                + f64::from(f32::MIN_POSITIVE))
            + 8.0 * EPS * w.abs();
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "grad[{i}] {g} want {w} tol {tol:e}"
        );
    }
    assert!(
        grad[2 * cols..3 * cols].iter().all(|&g| g == 0.0),
        "ignored row's gradient"
    );
}

#[wasm_bindgen_test]
async fn softmax_and_log_softmax_backward() {
    let e = engine().await;
    let (rows, cols) = (5usize, 2049usize);
    let shape = Shape::new(rows, cols);
    let z = random_logits(shape.len(), 6.0, 5);
    let dy = random_logits(shape.len(), 1.0, 6);
    let o = SoftmaxOptions::default();
    for log in [false, true] {
        let y = match log {
            false => e.softmax_async(&z, shape, &o).await.unwrap(),
            true => e.log_softmax_async(&z, shape, &o).await.unwrap(),
        };
        let got = e.softmax_backward_async(log, &y, &dy, shape).await.unwrap();
        let want = oracle::softmax_backward(log, &y, &dy, shape);
        // The bound of the native test: eps (8 + 3 log2 C) times the terms of each element.
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            let row = i / cols * cols..(i / cols + 1) * cols;
            let (yi, di) = (f64::from(y[i]), f64::from(dy[i].abs()));
            let terms = match log {
                false => {
                    let s: f64 = row.map(|j| f64::from((dy[j] * y[j]).abs())).sum();
                    yi.abs() * (di + s)
                }
                true => di + yi.exp() * row.map(|j| f64::from(dy[j].abs())).sum::<f64>(),
            };
            let tol =
                EPS * (8.0 + 3.0 * (cols as f64).log2()) * terms + f64::from(f32::MIN_POSITIVE);
            assert!(
                (f64::from(g) - w).abs() <= tol,
                "log={log} [{i}] {g} want {w}"
            );
        }
    }
}

#[wasm_bindgen_test]
async fn sampling_against_the_oracle() {
    use softmax_wgpu::sampling::{SampleStatus, SamplingParams, Uniforms, NO_TOKEN};
    let e = engine().await;
    // Mixed per-row parameters over rows of one piece, and top-k + top-p over a row of
    // several pieces; the caller's uniforms, so that the oracle gives the tokens.
    let kinds = [
        SamplingParams::default(),
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.7,
            top_k: 50,
            top_p: 0.9,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.8,
            min_p: 0.02,
            ..Default::default()
        },
    ];
    for (rows, cols) in [(8usize, 32000usize), (1, 200_003)] {
        let shape = Shape::new(rows, cols);
        let x = random_logits(rows * cols, 6.0, 77);
        let params: Vec<SamplingParams> = (0..rows)
            .map(|r| kinds[(r + cols % 3) % kinds.len()])
            .collect();
        let u: Vec<f32> = (0..rows).map(|r| (r as f32 * 0.37 + 0.11) % 1.0).collect();
        let got = e
            .sample_async(&x, shape, &params, Uniforms::Given(&u))
            .await
            .unwrap();
        let want = oracle::sample(&x, shape, &params, &u);
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.status, w.status, "{rows}x{cols} row {row}");
            // Where u, or a filter's boundary, lies within 1e-5 of a step, f32 sums may
            // fall either side (tests/sampling.rs states the bound).
            if w.margin > 1e-5 {
                assert_eq!(g.token, w.token, "{rows}x{cols} row {row}: {g:?} {w:?}");
            }
            if w.filter_margin > 1e-5 {
                assert_eq!(g.kept as usize, w.kept, "{rows}x{cols} row {row}");
            }
        }
    }
    // Rows without a token.
    let x = [1.0f32, f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY];
    let got = e
        .sample_async(
            &x,
            Shape::new(2, 2),
            &[SamplingParams::default()],
            Uniforms::Given(&[0.5, 0.5]),
        )
        .await
        .unwrap();
    assert_eq!(got[0].status, SampleStatus::NanRow);
    assert_eq!(got[1].status, SampleStatus::AllMasked);
    assert_eq!(got[1].token, NO_TOKEN);
}

/// The JavaScript API's engine (`Engine.create()`), once.
async fn js_engine() -> softmax_wgpu_web::Engine {
    softmax_wgpu_web::Engine::create(JsValue::UNDEFINED)
        .await
        .unwrap_or_else(|e| panic!("Engine.create: {}", message(&e)))
}

fn message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_else(|| format!("not an Error: {e:?}"))
}

/// An object from `(key, value)` pairs.
fn object(pairs: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn shape(rows: f64, cols: f64) -> Vec<(&'static str, JsValue)> {
    vec![("rows", rows.into()), ("cols", cols.into())]
}

async fn resolve(p: Promise) -> Result<JsValue, String> {
    JsFuture::from(p).await.map_err(|e| message(&e))
}

#[wasm_bindgen_test]
async fn the_javascript_api_computes() {
    let e = js_engine().await;
    let x = Float32Array::from(&[1000.0f32, 1001.0, 999.0][..]);
    let p = resolve(e.softmax(x.clone().into(), object(&shape(1.0, 3.0))))
        .await
        .unwrap();
    let p: Vec<f32> = p.dyn_into::<Float32Array>().unwrap().to_vec();
    let want = [0.244_728_48f32, 0.665_240_94, 0.090_030_57];
    for (g, w) in p.iter().zip(want) {
        assert!((g - w).abs() <= 2.0 * f32::EPSILON, "{p:?}");
    }
    let s = resolve(e.logsumexp(x.into(), object(&shape(1.0, 3.0))))
        .await
        .unwrap();
    let s = s.dyn_into::<Float32Array>().unwrap().to_vec();
    assert!((s[0] - 1_001.407_6).abs() < 1e-3, "{s:?}");
    // f16 logits at the top of the f16 range, as bits.
    let h = Uint16Array::from(
        &[
            f16::from_f32(65504.0).to_bits(),
            f16::from_f32(65504.0).to_bits(),
        ][..],
    );
    let mut o = shape(1.0, 2.0);
    o.push(("dtype", "f16".into()));
    let p = resolve(e.softmax(h.into(), object(&o))).await.unwrap();
    let p = p.dyn_into::<Uint16Array>().unwrap().to_vec();
    assert_eq!(p, vec![f16::from_f32(0.5).to_bits(); 2]);
    // Cross-entropy with its gradient, as an object.
    let x = Float32Array::from(&[0.0f32, 0.0, 0.0, 0.0][..]);
    let t = Int32Array::from(&[1i32, 0][..]);
    let r = resolve(e.cross_entropy(x.into(), t.into(), object(&shape(2.0, 2.0))))
        .await
        .unwrap();
    let loss = Reflect::get(&r, &"loss".into()).unwrap().as_f64().unwrap();
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
    let grad = Reflect::get(&r, &"grad".into())
        .unwrap()
        .dyn_into::<Float32Array>()
        .unwrap();
    assert_eq!(grad.to_vec(), vec![0.25, -0.25, -0.25, 0.25]);
    assert_eq!(
        e.variant("softmax", object(&shape(1.0, 1e6))).unwrap(),
        "split-row"
    );
    // Sampling: greedy and top-k 1 pick the maximum, Philox under a seed is reproducible,
    // a NaN row has no token.
    let x = || JsValue::from(Float32Array::from(&[0.0f32, 3.0, 1.0, 2.0, 5.0, 4.0][..]));
    let sample = |extra: &[(&'static str, JsValue)], rows: f64| {
        let mut o = shape(rows, 6.0 / rows);
        o.extend_from_slice(extra);
        e.sample(x(), object(&o))
    };
    let tokens = |r: &JsValue| -> Vec<i32> {
        Reflect::get(r, &"tokens".into())
            .unwrap()
            .dyn_into::<Int32Array>()
            .unwrap()
            .to_vec()
    };
    let greedy = resolve(sample(
        &[("temperature", 0.0.into()), ("seed", 1.0.into())],
        2.0,
    ))
    .await
    .unwrap();
    assert_eq!(tokens(&greedy), vec![1, 1]);
    let top1 = resolve(sample(
        &[
            ("topK", 1.0.into()),
            (
                "uniforms",
                js_sys::Array::of2(&0.9.into(), &0.1.into()).into(),
            ),
        ],
        2.0,
    ))
    .await
    .unwrap();
    assert_eq!(tokens(&top1), vec![1, 1]);
    let seeded = |seed: f64| sample(&[("seed", seed.into()), ("topP", 0.9.into())], 1.0);
    let a = tokens(&resolve(seeded(42.0)).await.unwrap());
    assert_eq!(a, tokens(&resolve(seeded(42.0)).await.unwrap()));
    assert!((0..6).contains(&a[0]));
    let nan = JsValue::from(Float32Array::from(&[f32::NAN, 1.0][..]));
    let mut o = shape(1.0, 2.0);
    o.push(("seed", 3.0.into()));
    let r = resolve(e.sample(nan, object(&o))).await.unwrap();
    assert_eq!(tokens(&r), vec![-1]);
    let status = Reflect::get(&r, &"status".into()).unwrap();
    assert_eq!(
        js_sys::Array::from(&status).get(0).as_string().unwrap(),
        "nan"
    );
}

#[wasm_bindgen_test]
async fn bad_arguments_from_javascript_reject_cleanly() {
    let e = js_engine().await;
    let x = || JsValue::from(Float32Array::from(&[1.0f32, 2.0, 3.0, 4.0][..]));
    let with = |extra: &[(&'static str, JsValue)], rows: f64, cols: f64| {
        let mut o = shape(rows, cols);
        o.extend_from_slice(extra);
        object(&o)
    };
    let cases: Vec<(&str, Promise, &str)> = vec![
        (
            "wrong length",
            e.softmax(x(), with(&[], 3.0, 2.0)),
            "logits",
        ),
        ("zero rows", e.softmax(x(), with(&[], 0.0, 4.0)), "rows"),
        ("zero cols", e.log_softmax(x(), with(&[], 1.0, 0.0)), "cols"),
        (
            "negative rows",
            e.softmax(x(), with(&[], -1.0, 4.0)),
            "non-negative integer",
        ),
        (
            "no options",
            e.softmax(x(), JsValue::UNDEFINED),
            "rows, cols",
        ),
        (
            "zero temperature",
            e.softmax(x(), with(&[("temperature", 0.0.into())], 1.0, 4.0)),
            "temperature",
        ),
        (
            "NaN temperature",
            e.logsumexp(x(), with(&[("temperature", f64::NAN.into())], 1.0, 4.0)),
            "temperature",
        ),
        (
            "negative temperature",
            e.softmax(x(), with(&[("temperature", (-1.0).into())], 1.0, 4.0)),
            "temperature",
        ),
        (
            "unknown option",
            e.softmax(x(), with(&[("temprature", 2.0.into())], 1.0, 4.0)),
            "temprature",
        ),
        (
            "bad dtype",
            e.softmax(x(), with(&[("dtype", "f64".into())], 1.0, 4.0)),
            "dtype",
        ),
        (
            "f16 as Float32Array",
            e.softmax(x(), with(&[("dtype", "f16".into())], 1.0, 4.0)),
            "Uint16Array",
        ),
        (
            "not an array",
            e.softmax(JsValue::from("1,2"), with(&[], 1.0, 2.0)),
            "Float32Array",
        ),
        (
            "bad variant",
            e.softmax(x(), with(&[("variant", "fast".into())], 1.0, 4.0)),
            "variant",
        ),
        (
            "target out of range",
            e.cross_entropy(
                x(),
                Int32Array::from(&[0i32, 2][..]).into(),
                with(&[], 2.0, 2.0),
            ),
            "row 1",
        ),
        (
            "targets of the wrong length",
            e.cross_entropy(
                x(),
                Int32Array::from(&[0i32][..]).into(),
                with(&[], 2.0, 2.0),
            ),
            "targets",
        ),
        (
            "bad label smoothing",
            e.cross_entropy(
                x(),
                Int32Array::from(&[0i32, 1][..]).into(),
                with(&[("labelSmoothing", 2.0.into())], 2.0, 2.0),
            ),
            "label_smoothing",
        ),
        (
            "backward with dy short",
            e.softmax_backward(
                x(),
                Float32Array::from(&[1.0f32][..]).into(),
                with(&[], 2.0, 2.0),
            ),
            "dy",
        ),
    ];
    let bench = |op: &str, rows: f64, cols: f64| {
        e.bench(object(&[
            ("op", op.into()),
            ("rows", rows.into()),
            ("cols", cols.into()),
        ]))
    };
    let cases = cases.into_iter().chain([
        (
            "bench past the device's buffers",
            bench("softmax", 2.0, 1e9),
            "bytes",
        ),
        (
            "bench of an unknown operation",
            bench("sample", 1.0, 8.0),
            "op",
        ),
        ("bench of zero rows", bench("softmax", 0.0, 8.0), "rows"),
        (
            "sample without seed or uniforms",
            e.sample(x(), with(&[], 1.0, 4.0)),
            "seed",
        ),
        (
            "sample with seed and uniforms",
            e.sample(
                x(),
                with(
                    &[
                        ("seed", 1.0.into()),
                        ("uniforms", js_sys::Array::of1(&0.5.into()).into()),
                    ],
                    1.0,
                    4.0,
                ),
            ),
            "one or the other",
        ),
        (
            "sample with top-p 2",
            e.sample(
                x(),
                with(&[("seed", 1.0.into()), ("topP", 2.0.into())], 1.0, 4.0),
            ),
            "top_p",
        ),
        (
            "sample with a negative top-k",
            e.sample(
                x(),
                with(&[("seed", 1.0.into()), ("topK", (-1.0).into())], 1.0, 4.0),
            ),
            "topK",
        ),
        (
            "sample with a uniform of 1",
            e.sample(
                x(),
                with(
                    &[("uniforms", js_sys::Array::of1(&1.0.into()).into())],
                    1.0,
                    4.0,
                ),
            ),
            "row 0",
        ),
        (
            "sample with too few uniforms",
            e.sample(
                x(),
                with(
                    &[("uniforms", js_sys::Array::of1(&0.5.into()).into())],
                    2.0,
                    2.0,
                ),
            ),
            "uniforms",
        ),
        (
            "sample with a misspelt option",
            e.sample(
                x(),
                with(&[("seed", 1.0.into()), ("topk", 5.0.into())], 1.0, 4.0),
            ),
            "topk",
        ),
        (
            "rows past what wasm addresses",
            e.softmax(x(), with(&[], 1e20, 4.0)),
            "non-negative integer",
        ),
    ]);
    for (what, promise, needle) in cases {
        match resolve(promise).await {
            Ok(v) => panic!("{what}: resolved to {v:?}"),
            Err(m) => assert!(m.contains(needle), "{what}: message {m:?} lacks {needle:?}"),
        }
    }
    // The engine still works after every refusal.
    let p = resolve(e.softmax(x(), with(&[], 2.0, 2.0))).await.unwrap();
    assert_eq!(p.dyn_into::<Float32Array>().unwrap().length(), 4);
}
