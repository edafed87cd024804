//! Cross-entropy with its gradient, and softmax / log_softmax backward, on every adapter
//! against the f64 oracle.

mod common;

use common::{check_backward, check_ce_result, on_default_limits, on_every_tuning, random_logits};
use softmax_wgpu::accuracy::EPS;
use softmax_wgpu::{
    oracle, CrossEntropyArgs, CrossEntropyOptions, DType, Element, Engine, Error, GradOutput,
    Reduction, Shape, TensorRef,
};
use wgpu::util::DeviceExt;

fn check_ce<T: Element>(
    e: &Engine,
    x: &[T],
    targets: &[i64],
    shape: Shape,
    o: &CrossEntropyOptions,
) {
    let got = e.cross_entropy(x, targets, shape, o, true).unwrap();
    // The loss alone (no gradient: another layout on CPU adapters) takes the same checks.
    let alone = e.cross_entropy(x, targets, shape, o, false).unwrap();
    assert!(alone.grad.is_none());
    check_ce_result(
        x,
        targets,
        shape,
        o,
        &[(&got, "with gradient"), (&alone, "alone")],
    );
}

/// Class weights in [0.5, 1.5), random by `seed`.
fn class_weights(cols: usize, seed: u64) -> Vec<f32> {
    random_logits(cols, 1.0, seed)
        .iter()
        .map(|v| 0.5 + v.abs())
        .collect()
}

fn targets(rows: usize, cols: usize, seed: u64) -> Vec<i64> {
    random_logits(rows, 1.0, seed)
        .iter()
        .map(|v| ((v.abs() * cols as f32) as i64).min(cols as i64 - 1))
        .collect()
}

#[test]
fn cross_entropy_matches_pytorch_semantics() {
    // 1001 logits take a workgroup per row (rows starting anywhere in a block: head and tail
    // pairs); 37 a lane per row on CPU adapters (a run of 8 rows in blocks and one row by
    // pairs; odd: 16-bit gradients share words between rows), and a workgroup per row under
    // GPU tuning; 130 rows of 302 a lane per row on CPU adapters (runs of 4 rows, 2 left
    // over); 21 rows of 10 likewise, each run of 4 rows unrolled (`packed_run`, 1 left over).
    on_every_tuning(|e| {
        for (rows, cols) in [(7, 1001), (9, 37), (130, 302), (21, 10)] {
            ce_semantics(e, rows, cols);
        }
    });
}

fn ce_semantics(e: &Engine, rows: usize, cols: usize) {
    {
        let shape = Shape::new(rows, cols);
        let x = random_logits(rows * cols, 8.0, 3);
        let mut t = targets(rows, cols, 4);
        t[2] = -100; // ignored
        let weights = class_weights(cols, 5);
        let cases = [
            CrossEntropyOptions::default(),
            CrossEntropyOptions {
                label_smoothing: 0.1,
                reduction: Reduction::Sum,
                ..Default::default()
            },
            CrossEntropyOptions {
                weight: Some(weights.clone()),
                label_smoothing: 0.2,
                ..Default::default()
            },
            CrossEntropyOptions {
                reduction: Reduction::None,
                z_loss: 1e-4,
                temperature: 0.7,
                grad_scale: 3.0,
                ..Default::default()
            },
            CrossEntropyOptions {
                ignore_index: 5,
                weight: Some(weights),
                ..Default::default()
            },
        ];
        for o in &cases {
            let t: Vec<i64> = t
                .iter()
                .map(|&v| {
                    if v == -100 {
                        i64::from(o.ignore_index)
                    } else {
                        v
                    }
                })
                .collect();
            check_ce(e, &x, &t, shape, o);
        }
        // Half-precision logits and gradient, f32 loss.
        let xh: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        check_ce(e, &xh, &t, shape, &cases[0]);
        check_ce(e, &xh, &t, shape, &cases[1]);
        let xb: Vec<half::bf16> = x.iter().map(|&v| half::bf16::from_f32(v)).collect();
        check_ce(e, &xb, &t, shape, &cases[0]);
    }
}

#[test]
fn cross_entropy_hard_rows() {
    // Rows of 4 and 37 (a lane per row on CPU adapters: runs of 2 rows unrolled, one run of 8
    // rows through windows) and of 600 logits (a workgroup per row on every adapter): the
    // rows below, the longer ones followed by ordinary logits (the all -inf row by more
    // -inf).
    on_every_tuning(|e| {
        for cols in [4, 37, 600] {
            ce_hard_rows(e, cols);
        }
    });
}

fn ce_hard_rows(e: &Engine, cols: usize) {
    {
        let inf = f32::INFINITY;
        let rows: [[f32; 4]; 8] = [
            [1e30f32, -1e30, 5.0, 0.0], // huge logits
            [1.0, -inf, 2.0, 3.0],      // -inf at a non-target class
            [-inf, 1.0, 2.0, 3.0],      // -inf at the target: loss +inf
            [1000.0, 1001.0, 999.0, 0.0],
            [1.0, f32::NAN, 2.0, 3.0], // NaN: loss and gradient NaN
            [1.0, 2.0, inf, 3.0],      // +inf: likewise
            [-inf; 4],                 // all -inf (the whole row): likewise
            [0.5, -2.0, 4.0, 1.0],     // ordinary, after them in the same run of rows
        ];
        let n = rows.len();
        let fill = random_logits(n * cols, 3.0, 12);
        let x: Vec<f32> = rows
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                let rest = if i == 6 {
                    vec![-inf; cols - 4]
                } else {
                    fill[i * cols + 4..(i + 1) * cols].to_vec()
                };
                r.iter().copied().chain(rest)
            })
            .collect();
        let t = [0i64, 2, 0, 1, 3, 0, 1, 2];
        let shape = Shape::new(n, cols);
        check_ce(
            e,
            &x,
            &t,
            shape,
            &CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
        );
        let r = e
            .cross_entropy(
                &x,
                &t,
                shape,
                &CrossEntropyOptions {
                    reduction: Reduction::None,
                    ..Default::default()
                },
                true,
            )
            .unwrap();
        assert_eq!(r.per_row[2], f32::INFINITY);
        let grad = r.grad.unwrap();
        assert!(grad[2 * cols..3 * cols].iter().all(|g| g.is_finite()));
        // The edge-case table: NaN loss and gradient for rows 4 to 6.
        for row in 4..7 {
            assert!(r.per_row[row].is_nan(), "row {row}");
            assert!(grad[row * cols..(row + 1) * cols]
                .iter()
                .all(|g| g.is_nan()));
        }
        check_ce(
            e,
            &x,
            &t,
            shape,
            &CrossEntropyOptions {
                label_smoothing: 0.3,
                reduction: Reduction::None,
                ..Default::default()
            },
        );
    }
}

/// Cross-entropy with class weights and its gradient (whose vector views would bind 9 or 10
/// storage buffers: the planner drops them for the 8 WebGPU allows by default), and both
/// backward operations, on a device with exactly WebGPU's default limits (see
/// `common::default_limits_engines`), split-row included (GPU tuning).
#[test]
fn training_within_webgpu_default_limits() {
    on_default_limits(|e| {
        for (k, &(rows, cols)) in [(5, 33), (6, 20_003)].iter().enumerate() {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), 6.0, 80 + k as u64);
            let t: Vec<i64> = (0..rows as i64).map(|r| (r * 7919) % cols as i64).collect();
            let weights = class_weights(cols, 90);
            let o = CrossEntropyOptions {
                weight: Some(weights),
                label_smoothing: 0.1,
                ..Default::default()
            };
            check_ce(e, &x, &t, shape, &o);
            check_backward_in::<f32>(e, shape, 1.0, 0.0);
        }
    });
}

#[test]
fn cross_entropy_split_row() {
    // 6 rows of 20003 logits: split-row under GPU tuning (9 pieces of 278 blocks, about 2224
    // logits each; a workgroup per row under CPU tuning), with the special values and the
    // targets away from piece 0 and the row max in a late piece, so that every piece's
    // partial state, its smoothing sums and the target logit it records all count.
    on_every_tuning(|e| {
        let (rows, cols) = (6, 20_003);
        let mut x = random_logits(rows * cols, 6.0, 61);
        let inf = f32::INFINITY;
        // Row 0: piece 2 all -inf (smoothing with positive weights: loss +inf).
        x[5000..7300].fill(-inf);
        x[cols + 12_000] = inf; // row 1: +inf, a NaN row
        x[2 * cols + 19_000] = f32::NAN; // row 2
        x[3 * cols + 10_001] = -inf; // row 3: -inf at the target, loss +inf
        x[4 * cols + 17_000] = 1e30; // row 4: the max far in a late piece
        x[5 * cols + 8000] = f32::NAN; // row 5, ignored: loss and gradient 0 all the same
        let t = [15_000i64, 3, 4000, 10_001, 9000, -100];
        let weights = class_weights(cols, 62);
        let shape = Shape::new(rows, cols);
        for o in [
            CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            },
            CrossEntropyOptions {
                weight: Some(weights.clone()),
                label_smoothing: 0.2,
                reduction: Reduction::None,
                ..Default::default()
            },
            CrossEntropyOptions {
                label_smoothing: 0.1,
                temperature: 0.5,
                ..Default::default()
            },
        ] {
            check_ce(e, &x, &t, shape, &o);
        }
        // Finite rows only for the mean and the half-precision paths.
        let ordinary = random_logits(rows * cols, 6.0, 63);
        let t = targets(rows, cols, 64);
        // (The z-loss of row 4's lse, 2e30, overflows f32: not above.)
        let o = CrossEntropyOptions {
            weight: Some(weights),
            label_smoothing: 0.1,
            z_loss: 1e-4,
            ..Default::default()
        };
        check_ce(e, &ordinary, &t, shape, &o);
        let h: Vec<half::f16> = ordinary.iter().map(|&v| half::f16::from_f32(v)).collect();
        check_ce(e, &h, &t, shape, &o);
    });
    // One row of 140001 logits: split-row under both tunings (CPU adapters cut a single row
    // past 131072 logits), the max and the target in late pieces; then a +inf in a late
    // piece (a NaN row), and in place, where `finish` may overwrite the target's logit.
    on_every_tuning(|e| {
        let shape = Shape::new(1, 140_001);
        let mut x = random_logits(shape.len(), 6.0, 65);
        x[120_000] = 40.0;
        let weights: Vec<f32> = random_logits(shape.cols, 1.0, 66)
            .iter()
            .map(|v| 0.5 + v.abs())
            .collect();
        let o = CrossEntropyOptions {
            weight: Some(weights),
            label_smoothing: 0.1,
            temperature: 0.7,
            reduction: Reduction::None,
            ..Default::default()
        };
        check_ce(e, &x, &[130_000], shape, &o);
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        check_ce(e, &h, &[130_000], shape, &o);
        in_place_ce(e, &x, &[139_000], shape);
        x[100_000] = f32::INFINITY;
        check_ce(e, &x, &[5], shape, &o);
    });
}

#[test]
fn cross_entropy_errors_and_all_ignored() {
    on_every_tuning(|e| {
        let x = random_logits(12, 1.0, 1);
        let shape = Shape::new(3, 4);
        let r = e.cross_entropy(
            &x,
            &[0, 4, 1],
            shape,
            &CrossEntropyOptions::default(),
            false,
        );
        assert!(
            matches!(
                r,
                Err(Error::InvalidTarget {
                    row: 1,
                    target: 4,
                    cols: 4
                })
            ),
            "{r:?}"
        );
        assert!(r.unwrap_err().to_string().contains("row 1"));
        let r = e.cross_entropy(
            &x,
            &[0, -1, 1],
            shape,
            &CrossEntropyOptions::default(),
            false,
        );
        assert!(
            matches!(
                r,
                Err(Error::InvalidTarget {
                    row: 1,
                    target: -1,
                    ..
                })
            ),
            "{r:?}"
        );
        let r = e.cross_entropy(&x, &[0, 1], shape, &CrossEntropyOptions::default(), false);
        assert!(
            matches!(
                r,
                Err(Error::ShapeMismatch {
                    what: "targets",
                    ..
                })
            ),
            "{r:?}"
        );
        let r = e.cross_entropy(
            &x,
            &[0, 1, 2],
            shape,
            &CrossEntropyOptions {
                label_smoothing: 1.5,
                ..Default::default()
            },
            false,
        );
        assert!(
            matches!(
                r,
                Err(Error::InvalidOption {
                    name: "label_smoothing",
                    ..
                })
            ),
            "{r:?}"
        );
        let all_ignored = e
            .cross_entropy(
                &x,
                &[-100, -100, -100],
                shape,
                &CrossEntropyOptions::default(),
                true,
            )
            .unwrap();
        assert!(
            all_ignored.loss.is_nan(),
            "mean over no rows is NaN, as PyTorch"
        );
        assert!(all_ignored.grad.unwrap().iter().all(|&g| g == 0.0));
    });
}

#[test]
fn cross_entropy_large_vocabulary() {
    on_every_tuning(|e| {
        let (rows, cols) = (3, 262_144);
        let x = random_logits(rows * cols, 10.0, 8);
        check_ce(
            e,
            &x,
            &targets(rows, cols, 9),
            Shape::new(rows, cols),
            &CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            },
        );
    });
}

#[test]
fn past_the_loop_limit_of_cpu_adapters() {
    // Mesa's CPU adapters end a shader loop after 65535 iterations per invocation: rows of
    // more than 16 x 65535 classes, and batches of more than 16 x 65535 rows, take wider
    // workgroups there (Engine::workgroup_for). Both came out wrong before.
    on_every_tuning(|e| {
        let (rows, cols) = (1, (1 << 20) + 64);
        let x = random_logits(rows * cols, 10.0, 31);
        check_ce(
            e,
            &x,
            &targets(rows, cols, 32),
            Shape::new(rows, cols),
            &CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            },
        );
        let (rows, cols) = (1_100_000, 3);
        let x = random_logits(rows * cols, 4.0, 33);
        check_ce(
            e,
            &x,
            &targets(rows, cols, 34),
            Shape::new(rows, cols),
            &CrossEntropyOptions::default(),
        );
    });
}

#[test]
fn softmax_and_log_softmax_backward() {
    on_every_tuning(|e| {
        // 70000 rows: more workgroups than one dispatch dimension holds (ROW_LOOP).
        for (rows, cols) in [
            (5usize, 7usize),
            (3, 1025),
            // A few long rows: split-row under GPU tuning, each row in pieces over several
            // workgroups.
            (2, 65537),
            (1, (1 << 20) + 64),
            (70_000, 5),
            // A lane per row on CPU adapters (up to 128 logits, or more with enough rows), in
            // runs of rows that fill whole blocks (8 rows of 13 unrolled, 8 of 33 through
            // windows, 2 of 100 and 4 of 302 in loops) with rows left over, and a workgroup
            // per row (6 rows of 129).
            (19, 13),
            (17, 33),
            (33, 100),
            (131, 302),
            (6, 129),
        ] {
            let shape = Shape::new(rows, cols);
            let z = random_logits(rows * cols, 6.0, 21);
            let dy = random_logits(rows * cols, 1.0, 22);
            let y = e.softmax(&z, shape, &Default::default()).unwrap();
            let ly = e.log_softmax(&z, shape, &Default::default()).unwrap();
            for (log, y) in [(false, &y), (true, &ly)] {
                let got = e.softmax_backward(log, y, &dy, shape).unwrap();
                check_backward(log, y, &dy, shape, &got);
            }
        }
    });
}

/// Softmax and log_softmax backward of `T` inputs (rounded from f32) against the f64 oracle
/// on the same rounded values: the f32 bound of `softmax_and_log_softmax_backward` plus the
/// final rounding to `T` (`unit`: its unit roundoff; `tiny`: its smallest subnormal).
fn check_backward_in<T: Element>(e: &Engine, shape: Shape, unit: f64, tiny: f64) {
    let n = shape.len();
    let z = random_logits(n, 6.0, 31);
    let dy: Vec<T> = random_logits(n, 1.0, 32)
        .into_iter()
        .map(T::from_f32)
        .collect();
    let dy32: Vec<f32> = dy.iter().map(|v| v.to_f32()).collect();
    for log in [false, true] {
        let y32 = if log {
            oracle::log_softmax(&z, shape, &Default::default())
        } else {
            oracle::softmax(&z, shape, &Default::default())
        };
        let y: Vec<T> = y32.iter().map(|&v| T::from_f32(v as f32)).collect();
        let yf: Vec<f32> = y.iter().map(|v| v.to_f32()).collect();
        let got = e.softmax_backward(log, &y, &dy, shape).unwrap();
        let want = oracle::softmax_backward(log, &yf, &dy32, shape);
        let cols = shape.cols;
        for (i, (g, &w)) in got.iter().zip(&want).enumerate() {
            let sum_abs: f64 = dy32[i / cols * cols..][..cols]
                .iter()
                .map(|v| f64::from(v.abs()))
                .sum();
            let scale = if log { 1.0 + sum_abs } else { 2.0 };
            let tol = EPS * (8.0 + 3.0 * (cols as f64).log2()) * scale + unit * w.abs() + tiny;
            let g = f64::from(g.to_f32());
            assert!(
                (g - w).abs() <= tol,
                "{:?} log={log} [{i}] {g} want {w} tol {tol:e}",
                T::DTYPE
            );
        }
    }
}

#[test]
fn backward_in_half_precision() {
    // Odd cols: rows start anywhere in a block, and packed words are shared by two rows;
    // 1 x 3 holds no whole vector (one element at a time, no stand-in views).
    on_every_tuning(|e| {
        for (rows, cols) in [
            (3usize, 1029usize),
            (4, 64),
            (2, 7),
            (1, 3),
            (19, 13),
            (9, 37),
        ] {
            let shape = Shape::new(rows, cols);
            check_backward_in::<half::f16>(e, shape, 2f64.powi(-11), 2f64.powi(-25));
            check_backward_in::<half::bf16>(e, shape, 2f64.powi(-8), 0.0);
        }
    });
}

#[test]
fn backward_at_offsets_aligned_and_not() {
    // y, dy and dx at the same offset modulo 8 elements (blocks on CPU adapters), and at
    // different ones (one element at a time).
    on_every_tuning(|e| {
        // A workgroup per row, (13 logits) a lane per row: two runs of 8 rows and 3 rows
        // left over where dx starts on a block, otherwise all by pairs, and (2 rows of
        // 20003, under GPU tuning; one of 140001 under both) split-row: each row in pieces
        // over several workgroups.
        for shape in [
            Shape::new(5, 1001),
            Shape::new(19, 13),
            Shape::new(2, 20_003),
            Shape::new(1, 140_001),
        ] {
            backward_at_offsets(e, shape);
        }
    });
}

fn backward_at_offsets(e: &Engine, shape: Shape) {
    {
        let n = shape.len();
        let z = random_logits(n, 6.0, 41);
        let dy = random_logits(n, 1.0, 42);
        let y: Vec<f32> = oracle::softmax(&z, shape, &Default::default())
            .iter()
            .map(|&v| v as f32)
            .collect();
        let want = oracle::softmax_backward(false, &y, &dy, shape);
        let d = e.device();
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        // Elements 8, 4 and 1 into their bindings: runs of short rows need dx on a block.
        for offsets in [[32u64, 32, 32], [16, 16, 16], [0, 4, 12], [4, 36, 68]] {
            let padded = |v: &[f32], off: u64| {
                let mut p = vec![0f32; off as usize / 4];
                p.extend_from_slice(v);
                d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&p),
                    usage,
                })
            };
            let yb = padded(&y, offsets[0]);
            let db = padded(&dy, offsets[1]);
            let xb = padded(&vec![0.0; n], offsets[2]);
            let mut enc = d.create_command_encoder(&Default::default());
            e.record_backward(
                &mut enc,
                false,
                shape,
                TensorRef::new(&yb, DType::F32).at(offsets[0]),
                TensorRef::new(&db, DType::F32).at(offsets[1]),
                TensorRef::new(&xb, DType::F32).at(offsets[2]),
            )
            .unwrap();
            e.queue().submit([enc.finish()]);
            let got = common::read_f32(e, &xb, offsets[2], n);
            let tol = EPS * (8.0 + 3.0 * (shape.cols as f64).log2()) * 2.0;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= tol,
                    "offsets {offsets:?} [{i}] {g} want {w}"
                );
            }
        }
    }
}

#[test]
fn cross_entropy_in_place_matches_out_of_place() {
    // The gradient over the logits (GradOutput::InPlace) equals the gradient into another
    // tensor bit for bit, with the same losses and logsumexps: f32 and f16 (odd cols: rows
    // share words), a lane per row (7 and 37 logits on CPU adapters, 7 on GPUs) and a
    // workgroup per row (1001).
    common::on_every_half_path(|e| {
        for (rows, cols) in [(9, 7), (9, 37), (3, 1001)] {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), 8.0, 50);
            let t = targets(rows, cols, 51);
            in_place_ce(e, &x, &t, shape);
            let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
            in_place_ce(e, &h, &t, shape);
        }
    });
    // Split-row under GPU tuning: `finish` may overwrite a target's logit before piece 0
    // writes the loss, which therefore takes it from the partials.
    on_every_tuning(|e| {
        let shape = Shape::new(2, 20_003);
        let x = random_logits(shape.len(), 8.0, 52);
        let t = [19_000i64, 7000];
        in_place_ce(e, &x, &t, shape);
        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
        in_place_ce(e, &h, &t, shape);
    });
}

fn in_place_ce<T: Element>(e: &Engine, x: &[T], t: &[i64], shape: Shape) {
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let want = e.cross_entropy(x, t, shape, &o, true).unwrap();
    let d = e.device();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let mut bytes = bytemuck::cast_slice::<_, u8>(x).to_vec();
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    let init = |contents: &[u8]| {
        d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents,
            usage,
        })
    };
    let logits = init(&bytes);
    let t32: Vec<i32> = t.iter().map(|&v| v as i32).collect();
    let targets = init(bytemuck::cast_slice(&t32));
    let zeros = vec![0u8; 4 * shape.rows];
    let (loss, lse, meta) = (init(&zeros), init(&zeros), init(&[0u8; 16]));
    let f32s = |b| TensorRef::new(b, DType::F32);
    let mut enc = d.create_command_encoder(&Default::default());
    e.record_cross_entropy(
        &mut enc,
        &CrossEntropyArgs {
            shape,
            logits: TensorRef::new(&logits, T::DTYPE),
            targets: f32s(&targets),
            weight: None,
            grad: GradOutput::InPlace,
            loss: f32s(&loss),
            lse: f32s(&lse),
            meta: &meta,
        },
        &o,
    )
    .unwrap();
    e.queue().submit([enc.finish()]);
    let words = common::read_f32(e, &logits, 0, bytes.len() / 4);
    let got: &[T] = &bytemuck::cast_slice::<_, T>(&words)[..shape.len()];
    let what = format!("{:?} {shape:?}", T::DTYPE);
    let bits = |v: &[T]| bytemuck::cast_slice::<_, u8>(v).to_vec();
    assert_eq!(
        bits(got),
        bits(&want.grad.unwrap()),
        "gradient in place, {what}"
    );
    assert_eq!(
        common::read_f32(e, &loss, 0, shape.rows),
        want.per_row,
        "{what}"
    );
    assert_eq!(common::read_f32(e, &lse, 0, shape.rows), want.lse, "{what}");
}

/// Split-row dispatches sized to a cache (`EngineOptions::cache_bytes`, GPU tuning): 600
/// rows of 4100 logits (a workgroup per row without it) run split-row in dispatches of 40
/// rows (cross-entropy: the logits) and of 20 (backward: `y` and `dy`), with special rows at
/// a dispatch boundary; cross-entropy (smoothing, class weights, an ignored row) and both
/// backward operations stay within the bounds of the tests above.
#[test]
fn cache_sized_split_row_dispatches() {
    let (rows, cols) = (600, 4100);
    let options = softmax_wgpu::EngineOptions {
        tuning: softmax_wgpu::Tuning::Gpu,
        cache_bytes: 40 * cols as u64 * 4,
        ..Default::default()
    };
    let engines =
        Engine::all_blocking(options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let shape = Shape::new(rows, cols);
    let mut x = random_logits(rows * cols, 6.0, 71);
    x[39 * cols + 5] = f32::NAN;
    x[40 * cols..41 * cols].fill(f32::NEG_INFINITY);
    x[41 * cols + 4000] = f32::INFINITY;
    x[599 * cols + 1] = 1e30;
    let mut t = targets(rows, cols, 72);
    t[300] = -100;
    let weights = class_weights(cols, 73);
    let o = CrossEntropyOptions {
        weight: Some(weights),
        label_smoothing: 0.1,
        reduction: Reduction::None,
        ..Default::default()
    };
    let z = random_logits(rows * cols, 6.0, 74);
    let dy = random_logits(rows * cols, 1.0, 75);
    for e in &engines {
        let plan = e
            .explain_cross_entropy(shape, DType::F32, Some(DType::F32), true, &o)
            .unwrap()
            .plan;
        assert!(plan.contains("partials"), "split-row: {plan}");
        let plan = e
            .explain_backward(false, shape, DType::F32, DType::F32)
            .unwrap()
            .plan;
        assert!(plan.contains("partials"), "split-row: {plan}");
        check_ce(e, &x, &t, shape, &o);
        let y = e.softmax(&z, shape, &Default::default()).unwrap();
        let ly = e.log_softmax(&z, shape, &Default::default()).unwrap();
        for (log, y) in [(false, &y), (true, &ly)] {
            let got = e.softmax_backward(log, y, &dy, shape).unwrap();
            check_backward(log, y, &dy, shape, &got);
        }
    }
}
