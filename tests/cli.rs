//! The `softmax-wgpu` binary end to end on every adapter: real `.npy` files in and out,
//! results under the library's accuracy contract, one-line errors and no partial outputs.
#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{backend_name, engines, random_logits};
use half::f16;
use npyz::WriterBuilder;
use softmax_wgpu::{accuracy, CrossEntropyOptions, Engine, Forward, Shape, SoftmaxOptions};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_softmax-wgpu"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// The binary pointed at `e`'s adapter.
fn on(e: &Engine) -> Command {
    let mut c = bin();
    c.args([
        "--backend",
        backend_name(e),
        "--adapter",
        &e.info().adapter.name,
    ]);
    c
}

fn save<T: npyz::Serialize + npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    let mut out = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut out)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn load<T: npyz::Deserialize>(path: &Path) -> (Vec<u64>, Vec<T>) {
    let npy = npyz::NpyFile::new(std::fs::File::open(path).unwrap()).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec().unwrap())
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A failure: non-zero exit, one `error:` line naming `needle`, and no `output` file.
fn fails(out: Output, needle: &str, output: &Path) {
    assert!(
        !out.status.success(),
        "expected a failure mentioning {needle}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line of error, got {err:?}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(needle), "{err} should mention {needle}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !output.exists(),
        "no partial output at {}",
        output.display()
    );
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn path(d: &tempfile::TempDir, name: &str) -> PathBuf {
    d.path().join(name)
}

#[test]
fn forward_subcommands_on_every_adapter() {
    let d = dir();
    // Rank 3: two leading batch axes.
    let shape = [2u64, 3, 1000];
    let flat = Shape::new(6, 1000);
    let x = random_logits(flat.len(), 30.0, 9);
    let xin = path(&d, "x.npy");
    save(&xin, &shape, &x);
    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let hin = path(&d, "xh.npy");
    save(&hin, &shape, &xh);
    let t = 0.7;
    let o = SoftmaxOptions::with_temperature(t);
    for e in engines() {
        for (cmd, op) in [
            ("softmax", Forward::Softmax),
            ("log-softmax", Forward::LogSoftmax),
            ("logsumexp", Forward::LogSumExp),
        ] {
            let out = path(&d, &format!("{cmd}.npy"));
            ok(on(e)
                .args([cmd, "--temperature", "0.7", "--input"])
                .arg(&xin)
                .arg("--output")
                .arg(&out)
                .output()
                .unwrap());
            let (s, y) = load::<f32>(&out);
            let want_shape = if op == Forward::LogSumExp {
                &shape[..2]
            } else {
                &shape[..]
            };
            assert_eq!(s, want_shape, "{cmd}");
            let r = accuracy::check(op, &x, flat, &o, &y);
            assert!(r.ok(), "{cmd} on {}: {r}", e.info().adapter.name);

            // f16 in, f16 out (logsumexp: f32).
            let outh = path(&d, &format!("{cmd}-h.npy"));
            ok(on(e)
                .args([cmd, "--temperature", "0.7", "--input"])
                .arg(&hin)
                .arg("--output")
                .arg(&outh)
                .output()
                .unwrap());
            let r = if op == Forward::LogSumExp {
                accuracy::check(op, &xh, flat, &o, &load::<f32>(&outh).1)
            } else {
                accuracy::check(op, &xh, flat, &o, &load::<f16>(&outh).1)
            };
            assert!(r.ok(), "{cmd} f16: {r}");

            // bf16 compute with f32 files on both ends.
            let outb = path(&d, &format!("{cmd}-b.npy"));
            ok(on(e)
                .args([cmd, "--dtype", "bf16", "--input"])
                .arg(&xin)
                .arg("--output")
                .arg(&outb)
                .output()
                .unwrap());
            let xb: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
            let (_, yb) = load::<f32>(&outb);
            let yb: Vec<half::bf16> = yb.iter().map(|&v| half::bf16::from_f32(v)).collect();
            if op != Forward::LogSumExp {
                let r = accuracy::check(op, &xb, flat, &SoftmaxOptions::default(), &yb);
                assert!(r.ok(), "{cmd} bf16: {r}");
            }
        }
    }
}

/// NumPy's default float64: computed in float32 with one note on stderr, or in the dtype
/// `--dtype` names, each logit rounded once from its float64 value.
#[test]
fn float64_logits_on_every_adapter() {
    let d = dir();
    let flat = Shape::new(3, 257);
    let x64: Vec<f64> = random_logits(flat.len(), 20.0, 11)
        .iter()
        .enumerate()
        .map(|(i, &v)| f64::from(v) + 1e-9 * i as f64) // bits below f32's
        .collect();
    let xin = path(&d, "x64.npy");
    save(&xin, &[3, 257], &x64);
    let o = SoftmaxOptions::default();
    for e in engines() {
        // Default: float32, one note.
        let out = path(&d, "p.npy");
        let run = on(e)
            .args(["softmax", "--input"])
            .arg(&xin)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&run.stderr).into_owned();
        ok(run);
        let notes: Vec<&str> = err.lines().collect();
        assert_eq!(notes.len(), 1, "one note: {err:?}");
        assert!(notes[0].starts_with("note: float64"), "{err}");
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let r = accuracy::check(Forward::Softmax, &x32, flat, &o, &load::<f32>(&out).1);
        assert!(r.ok(), "float64 -> f32 softmax: {r}");

        // --dtype f16: rounded once from float64, written as float16, no note.
        let run = on(e)
            .args(["log-softmax", "--dtype", "f16", "--input"])
            .arg(&xin)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        ok(run);
        let xh: Vec<f16> = x64.iter().map(|&v| f16::from_f64(v)).collect();
        let r = accuracy::check(Forward::LogSoftmax, &xh, flat, &o, &load::<f16>(&out).1);
        assert!(r.ok(), "float64 -> f16 log-softmax: {r}");

        // Cross-entropy: the loss of float32 logits.
        let tin = path(&d, "t.npy");
        save(&tin, &[3], &[0i64, 256, 100]);
        let loss = path(&d, "loss.npy");
        ok(on(e)
            .args(["cross-entropy", "--input"])
            .arg(&xin)
            .arg("--targets")
            .arg(&tin)
            .arg("--output")
            .arg(&loss)
            .output()
            .unwrap());
        let ce = CrossEntropyOptions::default();
        let want = softmax_wgpu::oracle::cross_entropy(&x32, &[0, 256, 100], flat, &ce);
        let got = f64::from(load::<f32>(&loss).1[0]);
        // A mean of three f32 log-probabilities: a few f32 ulps of the total.
        assert!(
            (got - want.loss).abs() <= 8.0 * f64::from(f32::EPSILON) * want.loss.abs().max(1.0),
            "{got} vs {}",
            want.loss
        );
    }
}

#[test]
fn cross_entropy_subcommand_on_every_adapter() {
    let d = dir();
    let flat = Shape::new(4, 300);
    let x = random_logits(flat.len(), 8.0, 2);
    let xin = path(&d, "x.npy");
    save(&xin, &[4, 300], &x);
    let targets: Vec<i32> = vec![5, -100, 299, 0];
    let tin = path(&d, "t.npy");
    save(&tin, &[4], &targets);
    let t64: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let opts = softmax_wgpu::CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let want = softmax_wgpu::oracle::cross_entropy(&x, &t64, flat, &opts);
    for e in engines() {
        let loss = path(&d, "loss.npy");
        let grad = path(&d, "grad.npy");
        ok(on(e)
            .args(["cross-entropy", "--label-smoothing", "0.1", "--input"])
            .arg(&xin)
            .arg("--targets")
            .arg(&tin)
            .arg("--output")
            .arg(&loss)
            .arg("--grad")
            .arg(&grad)
            .output()
            .unwrap());
        let (s, l) = load::<f32>(&loss);
        assert!(s.is_empty(), "the mean is a scalar");
        // A mean of three rows of f32 logsumexp-sized terms: a few f32 ulps of the total.
        let tol = 8.0 * f64::from(f32::EPSILON) * want.loss.abs().max(1.0);
        assert!(
            (f64::from(l[0]) - want.loss).abs() <= tol,
            "{} vs {}",
            l[0],
            want.loss
        );
        let (gs, g) = load::<f32>(&grad);
        assert_eq!(gs, [4, 300]);
        for (a, b) in g.iter().zip(&want.grad) {
            assert!((f64::from(*a) - b).abs() <= 1e-6, "{a} vs {b}");
        }
        // Per-row losses.
        let rows = path(&d, "rows.npy");
        ok(on(e)
            .args(["cross-entropy", "--reduction", "none", "--input"])
            .arg(&xin)
            .arg("--targets")
            .arg(&tin)
            .arg("--output")
            .arg(&rows)
            .output()
            .unwrap());
        let (s, per_row) = load::<f32>(&rows);
        assert_eq!(s, [4]);
        assert_eq!(per_row[1], 0.0, "ignored row");
    }
}

#[test]
fn sample_subcommand_on_every_adapter() {
    use softmax_wgpu::sampling::{uniform, SamplingParams};
    let d = dir();
    // Rank 3, a NaN row among them.
    let (lead, cols) = ([2u64, 3], 500usize);
    let mut x = random_logits(6 * cols, 4.0, 3);
    x[cols + 7] = f32::NAN;
    let xin = path(&d, "x.npy");
    save(&xin, &[2, 3, cols as u64], &x);
    let u: Vec<f32> = (0..6).map(|i| 0.1 + 0.15 * i as f32).collect();
    let uin = path(&d, "u.npy");
    save(&uin, &lead, &u);
    let params = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.8,
        min_p: 0.0,
    };
    let shape = Shape::new(6, cols);
    for e in engines() {
        let ids = path(&d, "ids.npy");
        let lp = path(&d, "lp.npy");
        let out = on(e)
            .args([
                "sample",
                "--temperature",
                "0.9",
                "--top-k",
                "40",
                "--top-p",
                "0.8",
            ])
            .arg("--input")
            .arg(&xin)
            .arg("--uniforms")
            .arg(&uin)
            .arg("--output")
            .arg(&ids)
            .arg("--logprobs")
            .arg(&lp)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stderr).contains("row 1: no token (NanRow)"));
        ok(out);
        let (s, got) = load::<i64>(&ids);
        assert_eq!(s, lead);
        let want = softmax_wgpu::oracle::sample(&x, shape, &[params; 6], &u);
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            match row {
                1 => assert_eq!(*g, -1, "the NaN row"),
                _ if w.margin > 1e-5 && w.filter_margin > 1e-5 => {
                    assert_eq!(*g, i64::from(w.token), "row {row}")
                }
                _ => {}
            }
        }
        let (s, lps) = load::<f32>(&lp);
        assert_eq!(s, lead);
        assert!(lps[1].is_nan() && lps[0] < 0.0);
        // With a seed, each row's uniform is Philox at the row's index.
        ok(on(e)
            .args(["sample", "--top-k", "40", "--seed", "9", "--input"])
            .arg(&xin)
            .arg("--output")
            .arg(&ids)
            .output()
            .unwrap());
        let (_, seeded) = load::<i64>(&ids);
        let u9: Vec<f32> = (0..6).map(|r| uniform(9, r)).collect();
        let p9 = SamplingParams {
            top_k: 40,
            ..Default::default()
        };
        let want = softmax_wgpu::oracle::sample(&x, shape, &[p9; 6], &u9);
        for (row, (g, w)) in seeded.iter().zip(&want).enumerate() {
            if row != 1 && w.margin > 1e-5 && w.filter_margin > 1e-5 {
                assert_eq!(*g, i64::from(w.token), "seeded row {row}");
            }
        }
        // Greedy, and a bad parameter.
        ok(on(e)
            .args(["sample", "--temperature", "0", "--input"])
            .arg(&xin)
            .arg("--output")
            .arg(&ids)
            .output()
            .unwrap());
        let (_, greedy) = load::<i64>(&ids);
        let row0 = &x[..cols];
        let first_max = (0..cols).fold(0, |b, j| if row0[j] > row0[b] { j } else { b });
        assert_eq!(greedy[0], first_max as i64);
        let bad = path(&d, "bad.npy");
        fails(
            on(e)
                .args(["sample", "--top-p", "1.5", "--input"])
                .arg(&xin)
                .arg("--output")
                .arg(&bad)
                .output()
                .unwrap(),
            "top_p",
            &bad,
        );
    }
}

#[test]
fn bad_input_gives_one_line_and_no_output() {
    let d = dir();
    let out = path(&d, "out.npy");
    let good = path(&d, "good.npy");
    save(&good, &[2, 5], &[0.0f32; 10]);
    let ints = path(&d, "ints.npy");
    save(&ints, &[2, 5], &[0i32; 10]);
    let scalar = path(&d, "scalar.npy");
    save(&scalar, &[], &[1.0f32]);
    let empty = path(&d, "empty.npy");
    save::<f32>(&empty, &[3, 0], &[]);
    let garbage = path(&d, "garbage.npy");
    std::fs::write(&garbage, b"not a numpy file").unwrap();
    let e = &engines()[0];
    let run = |args: &[&str], input: &Path| {
        on(e)
            .args(args)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap()
    };
    fails(
        run(&["softmax"], &path(&d, "missing.npy")),
        "cannot read",
        &out,
    );
    fails(run(&["softmax"], &garbage), "not a valid .npy", &out);
    fails(
        run(&["softmax"], &ints),
        "float32, float16 or float64",
        &out,
    );
    fails(run(&["softmax"], &scalar), "rank-0", &out);
    fails(run(&["softmax"], &empty), "zero-size", &out);
    fails(
        run(&["softmax", "--temperature", "0"], &good),
        "temperature",
        &out,
    );
    fails(
        run(&["softmax", "--temperature", "inf"], &good),
        "temperature",
        &out,
    );
    // Targets of the wrong shape, and out of range.
    let targets = path(&d, "t.npy");
    save(&targets, &[3], &[0i64, 1, 2]);
    let ce = |t: &Path| {
        on(e)
            .args(["cross-entropy", "--input"])
            .arg(&good)
            .arg("--targets")
            .arg(t)
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap()
    };
    fails(ce(&targets), "targets have shape", &out);
    let far = path(&d, "far.npy");
    save(&far, &[2], &[0i64, 5]);
    fails(ce(&far), "target", &out);
    // A backend that does not exist.
    let o = bin()
        .args(["--backend", "nonsense", "info"])
        .output()
        .unwrap();
    fails(o, "backend", &out);
    // Bench shapes that are not ROWSxCOLS, or empty.
    for shape in ["256", "0x32000", "2xabc"] {
        let o = bin()
            .args(["bench", "--op", "softmax", "--shapes", shape])
            .output()
            .unwrap();
        fails(o, "shape", &out);
    }
}

#[test]
fn bench_writes_json_and_plot() {
    let d = dir();
    let json = path(&d, "bench.json");
    let svg = path(&d, "bench.svg");
    for e in engines() {
        ok(on(e)
            .args([
                "bench",
                "--shapes",
                "2x4096,2X8192",
                "--device-copy-mib",
                "16",
                "--dtype",
                "f32,f16",
                "--op",
                "softmax,cross-entropy,log-softmax-backward",
                "--runs",
                "2",
                "--json",
            ])
            .arg(&json)
            .arg("--plot")
            .arg(&svg)
            .output()
            .unwrap());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let records = v.as_array().unwrap();
        assert_eq!(records.len(), 12, "2 shapes x 2 dtypes x 3 ops");
        let shapes: Vec<(u64, u64)> = records
            .iter()
            .map(|r| (r["rows"].as_u64().unwrap(), r["cols"].as_u64().unwrap()))
            .collect();
        assert!(
            shapes.iter().all(|&s| s == (2, 4096) || s == (2, 8192)),
            "{shapes:?}"
        );
        for r in records {
            for key in [
                "op",
                "dtype",
                "rows",
                "cols",
                "variant",
                "seconds",
                "gbps",
                "copy_gbps",
                "ratio_to_copy",
            ] {
                assert!(r.get(key).is_some(), "{key} missing in {r}");
            }
            assert!(r["seconds"].as_f64().unwrap() > 0.0);
            assert!(r["ratio_to_copy"].as_f64().unwrap() > 0.0);
            let word = r["copy_word_bytes"].as_u64().unwrap();
            assert!(word == 16 || word == 32, "copy word of {word} bytes");
            // The roofline: the fastest copy method, timed again while it spread too much.
            let method = r["copy_method"].as_str().unwrap();
            let methods = ["kernel-16", "kernel-32", "copy_buffer_to_buffer"];
            assert!(methods.contains(&method), "{r}");
            assert!(r["copy_spread"].as_f64().unwrap() >= 0.0, "{r}");
            let attempts = r["attempts"].as_u64().unwrap();
            assert!((1..=3).contains(&attempts), "{r}");
            // The device's copy over 16 MiB, and the case's GB/s over it.
            let device = r["device_copy_gbps"].as_f64().unwrap();
            let ratio = r["ratio_to_device_copy"].as_f64().unwrap();
            let gbps = r["gbps"].as_f64().unwrap();
            assert!(
                device > 0.0 && (ratio - gbps / device).abs() <= 1e-9 * ratio,
                "{r}"
            );
            // The exp ceiling is timed for every dtype but not for the backward operations;
            // only the forward operations have kernel variants.
            let op = r["op"].as_str().unwrap();
            // Both also read rows twice (online): the two-pass bound, below the ceiling
            // (each run's adds a pass to the same copy and exp ceiling).
            match op {
                "softmax" | "cross-entropy" => {
                    let ceiling = r["ceiling"].as_f64().unwrap();
                    let two_pass = r["two_pass_bound"].as_f64().unwrap();
                    assert!(ceiling > 0.0 && two_pass > 0.0 && two_pass < ceiling, "{r}")
                }
                _ => {
                    assert!(r["ceiling"].is_null(), "{r}");
                    assert!(r["two_pass_bound"].is_null(), "{r}");
                }
            }
            let variant = r["variant"].as_str().unwrap();
            assert_eq!(variant == "-", op != "softmax", "{r}");
            // The bytes GB/s counts (tools/gpu_vs_pytorch.py checks PyTorch's against them).
            let size = if r["dtype"] == "f32" { 4 } else { 2 };
            let n = 2 * r["cols"].as_u64().unwrap() * size;
            let bytes = match op {
                "softmax" => 2 * n,
                "cross-entropy" => 2 * n + 12 * 2,
                _ => 3 * n,
            };
            assert_eq!(r["bytes"].as_u64(), Some(bytes), "{r}");
        }
        let plot = std::fs::read_to_string(&svg).unwrap();
        assert!(plot.starts_with("<svg") && plot.contains("copy (roofline)"));
    }
}

#[test]
fn bench_runs_an_odd_count_of_16_bit_logits() {
    // 3 x 33 f16 logits are 198 bytes: the upload rounds them up to whole 4-byte words
    // (it once panicked in wgpu's validation).
    for e in engines() {
        for dtype in ["f16", "bf16"] {
            ok(on(e)
                .args(["bench", "--rows", "3", "--cols", "33", "--dtype", dtype])
                .args([
                    "--op",
                    "softmax",
                    "--runs",
                    "1",
                    "--no-cpu",
                    "--device-copy-mib",
                    "0",
                ])
                .output()
                .unwrap());
        }
    }
}

/// `explain` prints the plan the automatic choice makes on each adapter (the variant the
/// library reports) and, with `--wgsl`, shaders that naga accepts, for the forward and the
/// training operations; bad shapes are one line.
#[test]
fn explain_prints_the_plan_and_the_shaders() {
    for e in engines() {
        for (rows, cols) in [(1usize, 1_048_576usize), (256, 32_000), (4096, 64)] {
            let out = on(e)
                .args([
                    "explain",
                    "--rows",
                    &rows.to_string(),
                    "--cols",
                    &cols.to_string(),
                ])
                .arg("--wgsl")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            ok(out);
            let variant = e
                .forward_variant(
                    Forward::Softmax,
                    Shape::new(rows, cols),
                    &SoftmaxOptions::default(),
                )
                .unwrap();
            assert!(
                text.contains(&format!("variant {variant}")),
                "{rows} x {cols}: {text}"
            );
            let wgsl: Vec<&str> = text.split("\n// ---- ").skip(1).collect();
            assert!(!wgsl.is_empty(), "no shader printed");
            for module in wgsl {
                let source = module.split_once('\n').unwrap().1;
                naga::front::wgsl::parse_str(source).expect("the printed WGSL parses");
            }
        }
    }
    // The training operations: every pass listed with its bindings, and modules naga parses.
    for e in engines() {
        for op in [
            &["--op", "cross-entropy", "--grad", "--weighted"][..],
            &["--op", "cross-entropy"],
            &["--op", "softmax-backward", "--out-dtype", "f32"],
            &["--op", "log-softmax-backward"],
        ] {
            let out = on(e)
                .args([
                    "explain", "--rows", "3", "--cols", "262144", "--dtype", "bf16",
                ])
                .args(op)
                .arg("--wgsl")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            ok(out);
            assert!(
                text.contains(" pass(es)") && text.contains("x_buf = "),
                "{op:?}: {text}"
            );
            let wgsl: Vec<&str> = text.split("\n// ---- ").skip(1).collect();
            assert!(!wgsl.is_empty(), "{op:?}: no shader printed");
            for module in wgsl {
                let source = module.split_once('\n').unwrap().1;
                naga::front::wgsl::parse_str(source).expect("the printed WGSL parses");
            }
        }
    }
    let d = dir();
    let out = path(&d, "none.npy");
    fails(
        on(&engines()[0])
            .args(["explain", "--rows", "0", "--cols", "5"])
            .output()
            .unwrap(),
        "shape",
        &out,
    );
}
