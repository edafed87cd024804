//! Vocabulary-parallel operations: each row's vocabulary split into shards of unequal widths,
//! the partial states merged, each shard finished, and the slices put together, held to the
//! same accuracy contract and edge cases as the unsharded operations (the f64 oracle), on
//! every adapter (CPU adapters with both tunings: the kernels lay work out differently) and
//! across adapters.

mod common;

use common::{check_ce_result, engines, on_every_adapter, on_every_tuning, random_logits};
use softmax_wgpu::accuracy;
use softmax_wgpu::vocab_parallel::{
    across, merge, FinishCrossEntropyArgs, MergeArgs, PartialArgs, PartialOptions, PartialState,
    Shard, STATE_BYTES,
};
use softmax_wgpu::{
    CrossEntropyOptions, DType, Element, Engine, Error, Forward, GradOutput, Reduction, Shape,
    SoftmaxOptions, TensorRef,
};
use wgpu::util::DeviceExt;

/// Widths of 2, 3 and 7 shards of 301 columns: unequal, one of a single column, odd widths
/// and odd first columns (shards whose rows start mid-word in 16-bit dtypes).
const SPLITS: [&[usize]; 3] = [&[123, 178], &[1, 157, 143], &[37, 1, 64, 3, 100, 55, 41]];
const COLS: usize = 301;

/// Rows that stress the merge: random rows, the maximum in one shard and a spike just
/// below it in another, a NaN or a +inf in one shard only, one shard all -inf, every column
/// -inf, -inf at scattered columns, and wide ranges.
fn hard_rows(widths: &[usize]) -> (Vec<f32>, Shape) {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for seed in 0..3 {
        rows.push(random_logits(COLS, 8.0, 40 + seed));
    }
    let last = COLS - 1;
    let mut spike = random_logits(COLS, 3.0, 7);
    spike[0] = 90.0;
    spike[last] = 89.5;
    rows.push(spike);
    let mut nan = random_logits(COLS, 3.0, 8);
    nan[last - 2] = f32::NAN;
    rows.push(nan);
    let mut inf = random_logits(COLS, 3.0, 9);
    inf[widths[0]] = f32::INFINITY;
    rows.push(inf);
    let mut masked = random_logits(COLS, 3.0, 10);
    let (a, b) = (widths[0], widths[0] + widths[1]);
    masked[a..b].fill(f32::NEG_INFINITY);
    rows.push(masked);
    rows.push(vec![f32::NEG_INFINITY; COLS]);
    let mut holes = random_logits(COLS, 20.0, 11);
    for j in (0..COLS).step_by(5) {
        holes[j] = f32::NEG_INFINITY;
    }
    rows.push(holes);
    rows.push(random_logits(COLS, 1000.0, 12));
    let shape = Shape::new(rows.len(), COLS);
    (rows.concat(), shape)
}

/// Targets of the hard rows: the first and the last column among them, an ignored row, a
/// -inf target (row 7's every column, row 8's column 0).
fn hard_targets(rows: usize) -> Vec<i64> {
    let mut t: Vec<i64> = (0..rows).map(|r| (r * 37 % COLS) as i64).collect();
    t[0] = 0;
    t[1] = COLS as i64 - 1;
    t[3] = 0;
    t[6] = 150;
    t[8] = 0;
    t[2] = -100;
    t
}

/// The shards of `widths`, in column order.
fn layout(rows: usize, widths: &[usize]) -> Vec<Shard> {
    let mut first = 0;
    widths
        .iter()
        .map(|&cols| {
            first += cols;
            Shard {
                rows,
                cols,
                first_col: first - cols,
            }
        })
        .collect()
}

/// Shard `s`'s own `[rows, cols]` logits of the `[rows, COLS]` tensor `x`.
fn columns(x: &[f32], s: Shard) -> Vec<f32> {
    x.chunks(COLS)
        .flat_map(|r| &r[s.first_col..s.first_col + s.cols])
        .copied()
        .collect()
}

fn shards_on<'a>(engines: &[&'a Engine], widths: &[usize]) -> Vec<(&'a Engine, usize)> {
    widths
        .iter()
        .enumerate()
        .map(|(k, &w)| (engines[k % engines.len()], w))
        .collect()
}

/// The three forward operations of `x` (rounded to `T`), sharded over `shards`, against the
/// oracle under the contract; logsumexp against it too.
fn check_forward_sharded<T: Element>(
    shards: &[(&Engine, usize)],
    x: &[f32],
    shape: Shape,
    options: &SoftmaxOptions,
) {
    let x: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let widths: Vec<usize> = shards.iter().map(|s| s.1).collect();
    for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
        let r = across::forward::<T, T>(shards, op, &x, shape, options)
            .unwrap_or_else(|e| panic!("{op:?} {widths:?}: {e}"));
        let lse = r.lse.expect("logsumexp");
        let report = accuracy::check(Forward::LogSumExp, &x, shape, options, &lse);
        assert!(
            report.ok(),
            "logsumexp of {op:?}, {:?} shards {widths:?}: {report}",
            T::DTYPE
        );
        if op != Forward::LogSumExp {
            let report = accuracy::check(op, &x, shape, options, &r.values);
            assert!(
                report.ok(),
                "{op:?} {:?} shards {widths:?} {options:?}: {report}",
                T::DTYPE
            );
        }
    }
}

#[test]
fn sharded_forward_meets_the_contract() {
    on_every_tuning(|e| {
        for widths in SPLITS {
            let (x, shape) = hard_rows(widths);
            let shards = shards_on(&[e], widths);
            check_forward_sharded::<f32>(&shards, &x, shape, &SoftmaxOptions::default());
            let hot = SoftmaxOptions {
                temperature: 0.3,
                masked_rows: softmax_wgpu::MaskedRows::Zeros,
                ..Default::default()
            };
            check_forward_sharded::<f32>(&shards, &x, shape, &hot);
            check_forward_sharded::<half::f16>(&shards, &x, shape, &SoftmaxOptions::default());
            check_forward_sharded::<half::bf16>(&shards, &x, shape, &hot);
        }
    });
}

/// Cross-entropy with every option, sharded, against the oracle (loss, per-row loss,
/// logsumexp and gradient).
fn check_ce_sharded<T: Element>(shards: &[(&Engine, usize)], x: &[f32], shape: Shape) {
    let x: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
    let targets = hard_targets(shape.rows);
    let weight: Vec<f32> = (0..shape.cols)
        .map(|j| 0.25 + (j % 7) as f32 * 0.5)
        .collect();
    let cases = [
        CrossEntropyOptions::default(),
        CrossEntropyOptions {
            label_smoothing: 0.1,
            weight: Some(weight.clone()),
            z_loss: 1e-3,
            temperature: 0.7,
            reduction: Reduction::Sum,
            grad_scale: 0.5,
            ..Default::default()
        },
        CrossEntropyOptions {
            label_smoothing: 0.2,
            reduction: Reduction::None,
            ignore_index: 0,
            ..Default::default()
        },
        CrossEntropyOptions {
            weight: Some(weight),
            ..Default::default()
        },
    ];
    for o in &cases {
        // Row 2 is ignored, whatever the ignore_index.
        let mut targets = targets.clone();
        targets[2] = i64::from(o.ignore_index);
        let with = across::cross_entropy(shards, &x, &targets, shape, o, true).unwrap();
        let alone = across::cross_entropy(shards, &x, &targets, shape, o, false).unwrap();
        assert!(alone.grad.is_none());
        check_ce_result(
            &x,
            &targets,
            shape,
            o,
            &[(&with, "sharded"), (&alone, "sharded, loss alone")],
        );
    }
}

#[test]
fn sharded_cross_entropy_meets_the_contract() {
    on_every_tuning(|e| {
        for widths in SPLITS {
            let (x, shape) = hard_rows(widths);
            let shards = shards_on(&[e], widths);
            check_ce_sharded::<f32>(&shards, &x, shape);
        }
        // 16-bit logits, mid-word shard starts: the seven shards.
        let (x, shape) = hard_rows(SPLITS[2]);
        let shards = shards_on(&[e], SPLITS[2]);
        check_ce_sharded::<half::f16>(&shards, &x, shape);
        check_ce_sharded::<half::bf16>(&shards, &x, shape);
    });
}

#[test]
fn shards_across_every_adapter_in_one_process() {
    let all: Vec<&Engine> = engines().iter().collect();
    assert!(!all.is_empty());
    for widths in [SPLITS[0], SPLITS[2]] {
        let (x, shape) = hard_rows(widths);
        let shards = shards_on(&all, widths);
        check_forward_sharded::<f32>(&shards, &x, shape, &SoftmaxOptions::default());
        check_ce_sharded::<f32>(&shards, &x, shape);
    }
    // A longer vocabulary once: shards wider than a workgroup's lanes many times over.
    let (rows, cols) = (3, 70_001);
    let x = random_logits(rows * cols, 30.0, 5);
    let shards = shards_on(&all, &[20_000, 1, 50_000]);
    check_forward_sharded::<f32>(
        &shards,
        &x,
        Shape::new(rows, cols),
        &SoftmaxOptions::default(),
    );
}

/// Any order and grouping of the same states gives results within the contract: shards
/// merged left to right, right to left, as a balanced tree, and on the device.
#[test]
fn the_merge_is_associative_within_the_contract() {
    on_every_adapter(|e| {
        let widths = SPLITS[2];
        let (x, shape) = hard_rows(widths);
        let o = SoftmaxOptions {
            temperature: 0.8,
            ..Default::default()
        };
        let mut shards = Vec::new();
        for s in layout(shape.rows, widths) {
            let part = columns(&x, s);
            let states = e.partial_states(&part, s, &o).unwrap();
            shards.push((s, part, states));
        }
        let t = o.temperature;
        let states: Vec<&[PartialState]> = shards.iter().map(|s| s.2.as_slice()).collect();
        let left = merge(&states, t).unwrap();
        let rev: Vec<&[PartialState]> = states.iter().rev().copied().collect();
        let right = merge(&rev, t).unwrap();
        let pairs: Vec<Vec<PartialState>> =
            states.chunks(2).map(|c| merge(c, t).unwrap()).collect();
        let quads: Vec<Vec<PartialState>> = pairs
            .chunks(2)
            .map(|c| merge(&c.iter().map(Vec::as_slice).collect::<Vec<_>>(), t).unwrap())
            .collect();
        let tree = merge(&quads.iter().map(Vec::as_slice).collect::<Vec<_>>(), t).unwrap();
        let on_device = device_merge(e, &states, t);
        for (name, merged) in [
            ("left", &left),
            ("right", &right),
            ("tree", &tree),
            ("device", &on_device),
        ] {
            let mut probs = vec![0.0f32; shape.len()];
            let mut lse = Vec::new();
            for (s, part, _) in &shards {
                let r = e
                    .finish_forward::<f32, f32>(Forward::Softmax, part, *s, merged, &o)
                    .unwrap();
                for (row, slice) in r.values.chunks(s.cols).enumerate() {
                    probs[row * COLS + s.first_col..][..s.cols].copy_from_slice(slice);
                }
                lse = r.lse.unwrap();
            }
            let report = accuracy::check(Forward::Softmax, &x, shape, &o, &probs);
            assert!(report.ok(), "{name}: {report}");
            let report = accuracy::check(Forward::LogSumExp, &x, shape, &o, &lse);
            assert!(report.ok(), "{name} logsumexp: {report}");
        }
    });
}

/// Merges `states` (shard-major) with `record_merge_states`.
fn device_merge(e: &Engine, states: &[&[PartialState]], t: f32) -> Vec<PartialState> {
    let rows = states[0].len();
    let flat: Vec<PartialState> = states.iter().flat_map(|s| s.iter().copied()).collect();
    let input = storage(e, bytemuck::cast_slice(&flat));
    let out = storage(e, &vec![0u8; rows * STATE_BYTES]);
    let mut enc = e.device().create_command_encoder(&Default::default());
    e.record_merge_states(
        &mut enc,
        &MergeArgs {
            rows,
            count: states.len(),
            states: TensorRef::new(&input, DType::F32),
            merged: TensorRef::new(&out, DType::F32),
        },
        t,
    )
    .unwrap();
    e.queue().submit([enc.finish()]);
    e.read_buffer::<PartialState>(&out, 0, rows).unwrap()
}

fn storage(e: &Engine, bytes: &[u8]) -> wgpu::Buffer {
    e.device()
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        })
}

/// The device-level steps on the caller's buffers: partial states into one shard-major
/// buffer, the merge on the device, and each shard's cross-entropy finished with its
/// gradient in place; against the oracle.
#[test]
fn device_level_steps_with_the_gradient_in_place() {
    on_every_tuning(|e| {
        let widths = SPLITS[1];
        let (x, shape) = hard_rows(widths);
        let targets = hard_targets(shape.rows);
        let t32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
        let o = CrossEntropyOptions {
            label_smoothing: 0.05,
            temperature: 1.5,
            ..Default::default()
        };
        let rows = shape.rows;
        let tb = storage(e, bytemuck::cast_slice(&t32));
        let states = storage(e, &vec![0u8; widths.len() * rows * STATE_BYTES]);
        let merged = storage(e, &vec![0u8; rows * STATE_BYTES]);
        let mut parts = Vec::new();
        let mut enc = e.device().create_command_encoder(&Default::default());
        for (k, s) in layout(rows, widths).into_iter().enumerate() {
            let part = columns(&x, s);
            let buf = storage(e, bytemuck::cast_slice(&part));
            // Each shard's states at its own offset: k * rows states in, aligned for binding.
            let at = (k * rows * STATE_BYTES) as u64;
            let align = u64::from(e.info().limits.min_storage_buffer_offset_alignment);
            let args = PartialArgs {
                shard: s,
                logits: TensorRef::new(&buf, DType::F32),
                targets: Some(TensorRef::new(&tb, DType::F32)),
                weight: None,
                states: TensorRef::new(&states, DType::F32).at(at),
            };
            let r = e.record_partial_states(&mut enc, &args, &PartialOptions::from(&o));
            if at.is_multiple_of(align) {
                r.unwrap();
            } else {
                // States must start where the adapter can bind them: refused, and computed
                // at offset 0 of a buffer of their own, then copied into place.
                assert!(matches!(r, Err(Error::InvalidBuffer { .. })), "{r:?}");
                let own = storage(e, &vec![0u8; rows * STATE_BYTES]);
                e.record_partial_states(
                    &mut enc,
                    &PartialArgs {
                        states: TensorRef::new(&own, DType::F32),
                        ..args
                    },
                    &PartialOptions::from(&o),
                )
                .unwrap();
                enc.copy_buffer_to_buffer(&own, 0, &states, at, (rows * STATE_BYTES) as u64);
            }
            parts.push((s, buf));
        }
        e.record_merge_states(
            &mut enc,
            &MergeArgs {
                rows,
                count: widths.len(),
                states: TensorRef::new(&states, DType::F32),
                merged: TensorRef::new(&merged, DType::F32),
            },
            o.temperature,
        )
        .unwrap();
        let meta = storage(e, &[0u8; 16]);
        let loss = storage(e, &vec![0u8; 4 * rows]);
        let lse = storage(e, &vec![0u8; 4 * rows]);
        for (s, buf) in &parts {
            e.record_finish_cross_entropy(
                &mut enc,
                &FinishCrossEntropyArgs {
                    shard: *s,
                    logits: TensorRef::new(buf, DType::F32),
                    targets: TensorRef::new(&tb, DType::F32),
                    weight: None,
                    merged: TensorRef::new(&merged, DType::F32),
                    grad: GradOutput::InPlace,
                    loss: TensorRef::new(&loss, DType::F32),
                    lse: TensorRef::new(&lse, DType::F32),
                    meta: &meta,
                },
                &o,
            )
            .unwrap();
        }
        e.queue().submit([enc.finish()]);
        let mut grad = vec![0.0f32; shape.len()];
        for (s, buf) in &parts {
            let g = e.read_buffer::<f32>(buf, 0, rows * s.cols).unwrap();
            for (row, slice) in g.chunks(s.cols).enumerate() {
                grad[row * COLS + s.first_col..][..s.cols].copy_from_slice(slice);
            }
        }
        let m = e.read_buffer::<f32>(&meta, 0, 4).unwrap();
        assert_eq!(m[1].to_bits(), u32::MAX, "no invalid row");
        let got = softmax_wgpu::CrossEntropyResult {
            loss: m[2],
            per_row: e.read_buffer(&loss, 0, rows).unwrap(),
            lse: e.read_buffer(&lse, 0, rows).unwrap(),
            grad: Some(grad),
        };
        check_ce_result(&x, &targets, shape, &o, &[(&got, "device level, in place")]);
    });
}

#[test]
fn bad_layouts_and_targets_are_errors() {
    let e = &engines()[0];
    let (x, shape) = hard_rows(SPLITS[0]);
    let shards = shards_on(&[e], &[100, 100]);
    let o = SoftmaxOptions::default();
    // Widths that do not cover the vocabulary.
    let r = across::forward::<f32, f32>(&shards, Forward::Softmax, &x, shape, &o);
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
    // A target owned by no shard: past the vocabulary, or in a column no shard holds.
    let mut targets = hard_targets(shape.rows);
    targets[4] = COLS as i64;
    let shards = shards_on(&[e], SPLITS[1]);
    let r = across::cross_entropy(&shards, &x, &targets, shape, &Default::default(), true);
    assert!(
        matches!(r, Err(Error::InvalidTarget { row: 4, .. })),
        "{r:?}"
    );
    targets[4] = -7;
    let r = across::cross_entropy(&shards, &x, &targets, shape, &Default::default(), false);
    assert!(
        matches!(r, Err(Error::InvalidTarget { row: 4, .. })),
        "{r:?}"
    );
    // Shard 0 of two whose second shard is missing: the merged states cover 123 columns and
    // own no target past them.
    let s0 = Shard {
        rows: shape.rows,
        cols: 123,
        first_col: 0,
    };
    let part: Vec<f32> = x.chunks(COLS).flat_map(|r| &r[..123]).copied().collect();
    let targets = hard_targets(shape.rows);
    let co = CrossEntropyOptions::default();
    let states = e
        .cross_entropy_partial_states(&part, s0, &targets, &co)
        .unwrap();
    let merged = merge(&[&states], 1.0).unwrap();
    let r = e.finish_cross_entropy(&part, s0, &targets, &merged, &co, true);
    assert!(
        matches!(r, Err(Error::InvalidTarget { row: 1, .. })),
        "{r:?}"
    );
    // Bad temperatures, states of another batch, logits of another shape.
    let bad = SoftmaxOptions {
        temperature: 0.0,
        ..Default::default()
    };
    assert!(matches!(
        e.partial_states(&part, s0, &bad),
        Err(Error::InvalidTemperature { .. })
    ));
    assert!(merge(&[&states, &states[1..]], 1.0).is_err());
    let r = e.finish_forward::<f32, f32>(Forward::Softmax, &part, s0, &merged[1..], &o);
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
    let r = e.partial_states(&part[1..], s0, &o);
    assert!(matches!(r, Err(Error::ShapeMismatch { .. })), "{r:?}");
    let empty = Shard { cols: 0, ..s0 };
    assert!(matches!(
        e.partial_states::<f32>(&[], empty, &o),
        Err(Error::InvalidShape { .. })
    ));
}

/// Shards wide enough that GPU tuning cuts a few rows into pieces over many workgroups
/// (merged by a second dispatch): the same contract, with a NaN, a masked shard and the
/// target in pieces other than the first.
#[test]
fn wide_shards_cut_into_pieces() {
    on_every_tuning(|e| {
        let widths = [1usize, 9000, 12_288];
        let cols: usize = widths.iter().sum();
        let rows = 5;
        let mut x = random_logits(rows * cols, 6.0, 77);
        x[cols + 5000] = f32::NAN;
        x[2 * cols + 1..2 * cols + 9001].fill(f32::NEG_INFINITY);
        x[3 * cols + 20_000] = 60.0;
        let shape = Shape::new(rows, cols);
        let shards = shards_on(&[e], &widths);
        check_forward_sharded::<f32>(&shards, &x, shape, &SoftmaxOptions::default());
        check_forward_sharded::<half::bf16>(&shards, &x, shape, &SoftmaxOptions::default());
        let targets = vec![0i64, 4097, 8999, 20_000, cols as i64 - 1];
        let weight: Vec<f32> = (0..cols).map(|j| 0.5 + (j % 5) as f32 * 0.25).collect();
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            weight: Some(weight),
            ..Default::default()
        };
        let got = across::cross_entropy(&shards, &x, &targets, shape, &o, true).unwrap();
        check_ce_result(&x, &targets, shape, &o, &[(&got, "wide shards")]);
    });
}

/// More rows than one dispatch dimension holds (65535 workgroups): every step takes rows in
/// turns.
#[test]
fn rows_past_one_dispatch_dimension() {
    on_every_adapter(|e| {
        let (rows, cols) = (70_000, 5);
        let x = random_logits(rows * cols, 4.0, 9);
        let shape = Shape::new(rows, cols);
        let shards = shards_on(&[e], &[2, 3]);
        check_forward_sharded::<f32>(&shards, &x, shape, &SoftmaxOptions::default());
        let targets: Vec<i64> = (0..rows).map(|r| (r % cols) as i64).collect();
        let o = CrossEntropyOptions::default();
        let got = across::cross_entropy(&shards, &x, &targets, shape, &o, true).unwrap();
        check_ce_result(&x, &targets, shape, &o, &[(&got, "70000 rows")]);
    });
}
