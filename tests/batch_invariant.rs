//! Batch-invariant mode (`EngineOptions::batch_invariant`): a row's results are the same
//! bits whatever the batch around it, its place in that batch, the dispatch and binding it
//! falls in and the variant asked for; and they still meet the accuracy contract. On every
//! adapter, CPU adapters with both tunings.

mod common;

use common::{check_ce_result, check_forward, on_batch_invariant, random_logits};
use softmax_wgpu::{
    CrossEntropyOptions, Element, Engine, EngineOptions, Forward, Reduction, Shape, SoftmaxOptions,
    Variant,
};

/// Row lengths on both sides of every threshold of the batch-invariant plan (a lane per
/// row up to 32 logits with GPU tuning and 128 with CPU tuning; split-row past 4096 and
/// 131072) and of the usual planner (multi-row 256 / 512, resident 4096 / 32768, a lane per
/// row looped up to 8192 on CPU adapters), odd lengths among them so that rows start
/// anywhere in a block of 8.
const COLS: [usize; 14] = [
    2, 7, 32, 33, 128, 129, 264, 520, 4096, 4097, 8200, 32_776, 131_072, 131_073,
];

/// Batch sizes each row is computed in besides alone: 2, 64, 513 (up to `max_elements`
/// logits in all, 2 always), and past one dispatch dimension (65535 workgroups) for short rows.
fn batch_sizes(cols: usize, max_elements: usize) -> Vec<usize> {
    let mut out: Vec<usize> = [2, 64, 513]
        .into_iter()
        .filter(|&r| r == 2 || r * cols <= max_elements)
        .collect();
    if cols <= 33 {
        out.push(70_000);
    }
    out
}

/// The most logits of an f32 batch (and of a 16-bit one): rows of 131073 go in batches of
/// 2 only, 32776 in batches of 64, 4097 in batches of 513.
const F32_ELEMENTS: usize = 1 << 22;
const HALF_ELEMENTS: usize = 1 << 20;

/// Where the row under test sits in a batch of `rows`: first, middle, last.
fn positions(rows: usize) -> [usize; 3] {
    [0, rows / 2, rows - 1]
}

/// A batch of `rows` rows of random values holding `row` at each of `positions(rows)`.
fn batch_with<T: Copy>(row: &[T], rows: usize, fill: impl Fn(usize) -> Vec<T>) -> Vec<T> {
    let cols = row.len();
    let mut x = fill(rows * cols);
    for p in positions(rows) {
        x[p * cols..][..cols].copy_from_slice(row);
    }
    x
}

/// Asserts that each of `positions(rows)` of `batch` (rows of `width`) holds `alone` bit
/// for bit.
fn assert_same_bits<T: Element>(what: &str, alone: &[T], batch: &[T], rows: usize) {
    let width = alone.len();
    for p in positions(rows) {
        let got = &batch[p * width..][..width];
        let differ = got
            .iter()
            .zip(alone)
            .filter(|(a, b)| a.to_f32().to_bits() != b.to_f32().to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "{what}: row {p} of {rows} differs from the row alone in {differ} of {width} values"
        );
    }
}

/// The row under test: random logits of spread 12, a few -inf (masked) among them.
fn test_row<T: Element>(cols: usize, seed: u64) -> Vec<T> {
    let mut row = random_logits(cols, 12.0, seed);
    for j in (3..cols).step_by(11) {
        row[j] = f32::NEG_INFINITY;
    }
    row.into_iter().map(T::from_f32).collect()
}

fn random<T: Element>(n: usize, scale: f32, seed: u64) -> Vec<T> {
    random_logits(n, scale, seed)
        .into_iter()
        .map(T::from_f32)
        .collect()
}

/// Softmax and log-softmax (each with its logsumexp) and logsumexp alone of one row, in
/// every batch: bit-identical.
fn forward_invariant<T: Element>(e: &Engine, cols: usize, max_elements: usize) {
    let row: Vec<T> = test_row(cols, cols as u64);
    let o = SoftmaxOptions::default();
    let one = Shape::new(1, cols);
    let alone: Vec<_> = [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp]
        .map(|op| e.forward::<T, T>(op, &row, one, &o, true).unwrap())
        .into();
    for rows in batch_sizes(cols, max_elements) {
        let x = batch_with(&row, rows, |n| random::<T>(n, 12.0, rows as u64));
        let shape = Shape::new(rows, cols);
        for (k, op) in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp]
            .into_iter()
            .enumerate()
        {
            let what = format!("{:?} {op:?} of {cols} in {rows} rows", T::DTYPE);
            let got = e.forward::<T, T>(op, &x, shape, &o, true).unwrap();
            assert_same_bits(&what, &alone[k].values, &got.values, rows);
            let lse = got.lse.unwrap();
            assert_same_bits(
                &format!("{what}, lse"),
                alone[k].lse.as_ref().unwrap(),
                &lse,
                rows,
            );
        }
    }
}

/// Cross-entropy with label smoothing, class weights and reduction `none`: each row's loss,
/// logsumexp and gradient, in every batch: bit-identical. (With the mean, the gradient is
/// divided by the batch's weight: not a row's own.)
fn cross_entropy_invariant<T: Element>(e: &Engine, cols: usize, max_elements: usize) {
    let row: Vec<T> = test_row(cols, cols as u64 + 1);
    let target = (cols / 3) as i64;
    let o = CrossEntropyOptions {
        label_smoothing: 0.1,
        reduction: Reduction::None,
        weight: Some(
            random_logits(cols, 0.5, 7)
                .iter()
                .map(|w| 1.0 + w)
                .collect(),
        ),
        ..Default::default()
    };
    let alone = e
        .cross_entropy(&row, &[target], Shape::new(1, cols), &o, true)
        .unwrap();
    for rows in batch_sizes(cols, max_elements) {
        let x = batch_with(&row, rows, |n| random::<T>(n, 12.0, rows as u64 + 1));
        let targets = batch_with(&[target], rows, |n| {
            (0..n).map(|i| ((i * 7919) % cols) as i64).collect()
        });
        let got = e
            .cross_entropy(&x, &targets, Shape::new(rows, cols), &o, true)
            .unwrap();
        let what = format!("{:?} cross-entropy of {cols} in {rows} rows", T::DTYPE);
        assert_same_bits(&format!("{what}, loss"), &alone.per_row, &got.per_row, rows);
        assert_same_bits(&format!("{what}, lse"), &alone.lse, &got.lse, rows);
        let (a, g) = (alone.grad.as_ref().unwrap(), got.grad.as_ref().unwrap());
        assert_same_bits(&format!("{what}, gradient"), a, g, rows);
    }
}

/// Softmax and log-softmax backward of one row (y, dy), in every batch: bit-identical.
fn backward_invariant<T: Element>(e: &Engine, cols: usize, max_elements: usize) {
    let y: Vec<T> = random(cols, 1.0, cols as u64 + 2);
    let dy: Vec<T> = random(cols, 1.0, cols as u64 + 3);
    let one = Shape::new(1, cols);
    for log in [false, true] {
        let alone = e.softmax_backward(log, &y, &dy, one).unwrap();
        for rows in batch_sizes(cols, max_elements) {
            let ys = batch_with(&y, rows, |n| random::<T>(n, 1.0, rows as u64 + 2));
            let dys = batch_with(&dy, rows, |n| random::<T>(n, 1.0, rows as u64 + 3));
            let got = e
                .softmax_backward(log, &ys, &dys, Shape::new(rows, cols))
                .unwrap();
            let what = format!(
                "{:?} {}softmax backward of {cols} in {rows} rows",
                T::DTYPE,
                if log { "log-" } else { "" }
            );
            assert_same_bits(&what, &alone, &got, rows);
        }
    }
}

#[test]
fn forward_rows_are_the_same_bits_in_any_batch() {
    on_batch_invariant(|e| {
        for cols in COLS {
            forward_invariant::<f32>(e, cols, F32_ELEMENTS);
            forward_invariant::<half::f16>(e, cols, HALF_ELEMENTS);
            forward_invariant::<half::bf16>(e, cols, HALF_ELEMENTS);
        }
        e.release_buffers();
    });
}

#[test]
fn cross_entropy_rows_are_the_same_bits_in_any_batch() {
    on_batch_invariant(|e| {
        for cols in COLS {
            cross_entropy_invariant::<f32>(e, cols, F32_ELEMENTS);
            cross_entropy_invariant::<half::f16>(e, cols, HALF_ELEMENTS);
            cross_entropy_invariant::<half::bf16>(e, cols, HALF_ELEMENTS);
        }
        e.release_buffers();
    });
}

#[test]
fn backward_rows_are_the_same_bits_in_any_batch() {
    on_batch_invariant(|e| {
        for cols in COLS {
            backward_invariant::<f32>(e, cols, F32_ELEMENTS);
            backward_invariant::<half::f16>(e, cols, HALF_ELEMENTS);
            backward_invariant::<half::bf16>(e, cols, HALF_ELEMENTS);
        }
        e.release_buffers();
    });
}

/// Every forced variant gives the automatic choice's bits (batch-invariant mode runs one
/// summation order whatever is asked), for every operation.
#[test]
fn forced_variants_give_the_automatic_bits() {
    on_batch_invariant(|e| {
        for (rows, cols) in [(64, 7), (64, 264), (100, 4104), (3, 131_073)] {
            let shape = Shape::new(rows, cols);
            let x: Vec<f32> = random(rows * cols, 12.0, 5);
            for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
                let auto = e
                    .forward::<f32, f32>(op, &x, shape, &SoftmaxOptions::default(), true)
                    .unwrap();
                for variant in [
                    Variant::Online,
                    Variant::Resident,
                    Variant::MultiRow,
                    Variant::SplitRow,
                ] {
                    let o = SoftmaxOptions {
                        variant,
                        ..Default::default()
                    };
                    let got = e.forward::<f32, f32>(op, &x, shape, &o, true).unwrap();
                    let what = format!("{op:?} {rows} x {cols} forced {variant:?}");
                    assert_same_bits(&what, &auto.values, &got.values, 1);
                    assert_same_bits(&what, auto.lse.as_ref().unwrap(), &got.lse.unwrap(), 1);
                }
            }
        }
    });
}

/// The accuracy contract holds in batch-invariant mode: each layout it runs (a lane per row,
/// a workgroup per row, split-row) against the f64 oracle, forward and cross-entropy with
/// their special values, and backward within the bound of tests/training.rs.
#[test]
fn batch_invariant_results_meet_the_accuracy_contract() {
    on_batch_invariant(|e| {
        for (rows, cols) in [(70_000, 5), (33, 129), (16, 4097), (2, 262_147)] {
            let shape = Shape::new(rows, cols);
            let mut x = random_logits(rows * cols, 12.0, 9);
            // A NaN, a +inf and an all -inf row where there are rows enough.
            if rows >= 3 {
                x[1] = f32::NAN;
                x[cols + 2] = f32::INFINITY;
                x[2 * cols..3 * cols].fill(f32::NEG_INFINITY);
            }
            let o = SoftmaxOptions::default();
            for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
                check_forward::<f32, f32>(e, op, &x, shape, &o);
            }
            let clean = random_logits(rows * cols, 12.0, 10);
            let targets: Vec<i64> = (0..rows).map(|i| ((i * 31) % cols) as i64).collect();
            let ce = CrossEntropyOptions {
                label_smoothing: 0.1,
                ..Default::default()
            };
            let r = e.cross_entropy(&clean, &targets, shape, &ce, true).unwrap();
            check_ce_result(&clean, &targets, shape, &ce, &[(&r, "batch-invariant")]);
            let dy = random_logits(rows * cols, 1.0, 11);
            for log in [false, true] {
                let y = if log {
                    e.log_softmax(&clean, shape, &o).unwrap()
                } else {
                    e.softmax(&clean, shape, &o).unwrap()
                };
                let got = e.softmax_backward(log, &y, &dy, shape).unwrap();
                common::check_backward(log, &y, &dy, shape, &got);
            }
        }
        e.release_buffers();
    });
}

/// Rows past one storage binding: an engine whose device allows bindings of 1 MiB only, so
/// that 64 rows of 4097 f32 logits (16 KiB each) go in several dispatches at different
/// offsets; each row's bits as computed alone.
#[test]
fn rows_past_one_binding_are_the_same_bits() {
    let options = EngineOptions {
        batch_invariant: true,
        ..Default::default()
    };
    let adapters = pollster::block_on(softmax_wgpu::adapters(&options));
    assert!(
        !adapters.is_empty(),
        "GPU tests need an adapter (mesa-vulkan-drivers)"
    );
    for a in adapters {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 20,
            ..a.limits()
        };
        let (device, queue) = pollster::block_on(a.request_device(&wgpu::DeviceDescriptor {
            label: Some("1 MiB bindings"),
            required_features: a.features(),
            required_limits: limits,
            ..Default::default()
        }))
        .unwrap_or_else(|err| panic!("a device with 1 MiB bindings: {err}"));
        let e = Engine::from_device(device, queue, a.get_info(), options.clone());
        let cols = 4097;
        forward_invariant::<f32>(&e, cols, 64 * cols);
        cross_entropy_invariant::<f32>(&e, cols, 64 * cols);
        backward_invariant::<f32>(&e, cols, 64 * cols);
    }
}
