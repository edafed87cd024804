//! Sizes past the adapter's single-binding limit: the driver splits rows across bindings.

mod common;

use common::{on_every_adapter, random_logits};
use softmax_wgpu::{accuracy, Error, Forward, Shape, SoftmaxOptions, Variant};

#[test]
fn tensor_larger_than_one_binding() {
    on_every_adapter(|e| {
        // 160 MiB of f32 on lavapipe (128 MiB binding limit), and at least 1.25 bindings elsewhere.
        let cols = 8192usize;
        let rows = (past_one_binding(e, cols) + 1).max(5120);
        check_with_lse(e, Forward::LogSoftmax, rows, cols, 42);
    });
}

#[test]
fn short_rows_past_one_binding() {
    // Rows of 6 logits (packed 4 to a lane on CPU adapters) and of 33 (8 to a lane,
    // windowed) over more than one binding, with a row count that leaves rows over: every
    // binding starts a lane's run of rows, and the rows left over run unpacked.
    on_every_adapter(|e| {
        let rows = past_one_binding(e, 6).max(5120) / 4 * 4 + 3;
        check_with_lse(e, Forward::Softmax, rows, 6, 43);
        let rows = past_one_binding(e, 33).max(1024) / 8 * 8 + 5;
        check_with_lse(e, Forward::LogSoftmax, rows, 33, 44);
    });
}

#[test]
fn short_training_rows_past_one_binding() {
    // Rows of 10 (runs of 4 rows a lane on CPU adapters) over more than one binding, with 3
    // rows left over: every binding starts a run, and the rows left over go by pairs.
    on_every_adapter(|e| {
        let cols = 10;
        let rows = past_one_binding(e, cols).max(5120) / 4 * 4 + 3;
        let shape = Shape::new(rows, cols);
        let z = random_logits(rows * cols, 6.0, 45);
        let dy = random_logits(rows * cols, 1.0, 46);
        let y: Vec<f32> = softmax_wgpu::oracle::softmax(&z, shape, &SoftmaxOptions::default())
            .iter()
            .map(|&v| v as f32)
            .collect();
        let got = e.softmax_backward(false, &y, &dy, shape).unwrap();
        let want = softmax_wgpu::oracle::softmax_backward(false, &y, &dy, shape);
        // As in tests/training.rs: a product and a difference of O(1) terms and a row sum.
        let tol = accuracy::EPS * (8.0 + 3.0 * (cols as f64).log2()) * 2.0;
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!((f64::from(g) - w).abs() <= tol, "[{i}] {g} want {w}");
        }
        e.release_buffers();
        // Cross-entropy over the same rows: its logsumexp against the forward contract.
        let targets: Vec<i64> = (0..rows as i64).map(|r| r % cols as i64).collect();
        let o = softmax_wgpu::CrossEntropyOptions::default();
        let r = e.cross_entropy(&z, &targets, shape, &o, true).unwrap();
        let lse = accuracy::check(
            Forward::LogSumExp,
            &z,
            shape,
            &SoftmaxOptions::default(),
            &r.lse,
        );
        assert!(lse.ok(), "{lse}");
        let want = softmax_wgpu::oracle::cross_entropy(&z, &targets, shape, &o);
        for (i, (&g, &w)) in r.per_row.iter().zip(&want.per_row).enumerate() {
            // -log p of the target: the log_softmax contract (|a| <= 12 / 1, 10 logits).
            let tol = accuracy::EPS
                * (8.0 + 4.0 * 12.0 + 2.0 * (cols as f64).log2())
                * (1.0 + w.abs())
                * 4.0;
            assert!((f64::from(g) - w).abs() <= tol, "loss[{i}] {g} want {w}");
        }
        e.release_buffers();
    });
}

/// Rows of `cols` f32 logits that fill 1.25 of the adapter's largest binding.
fn past_one_binding(e: &softmax_wgpu::Engine, cols: usize) -> usize {
    let limit = e.info().limits.max_storage_buffer_binding_size;
    (limit as usize / 4) * 5 / 4 / cols
}

/// `op` with its logsumexp on random f32 logits `[rows, cols]`, both checked against the
/// accuracy contract.
fn check_with_lse(e: &softmax_wgpu::Engine, op: Forward, rows: usize, cols: usize, seed: u64) {
    let bytes = (rows * cols * 4) as u64;
    let max = e.info().limits.max_buffer_size;
    assert!(
        bytes <= max,
        "adapter's max_buffer_size {max} is below the test's {bytes} bytes"
    );
    let x = random_logits(rows * cols, 12.0, seed);
    let shape = Shape::new(rows, cols);
    let o = SoftmaxOptions::default();
    let r = e.forward::<f32, f32>(op, &x, shape, &o, true).unwrap();
    let report = accuracy::check(op, &x, shape, &o, &r.values);
    assert!(report.ok(), "{report}");
    let lse = accuracy::check(Forward::LogSumExp, &x, shape, &o, &r.lse.unwrap());
    assert!(lse.ok(), "{lse}");
    e.release_buffers();
}

#[test]
fn a_row_larger_than_one_binding_is_a_clear_error() {
    on_every_adapter(|e| {
        let limit = e
            .info()
            .limits
            .max_storage_buffer_binding_size
            .min(e.info().limits.max_buffer_size);
        // f16: one row just past the binding limit.
        let cols = (limit / 2 + 1) as usize;
        let x = vec![half::f16::ZERO; cols];
        let err = e.softmax(&x, Shape::new(1, cols), &SoftmaxOptions::default());
        refused_past(err, limit);
        // f32: one row within the limit but not within it less the slack of aligning the
        // binding's offset down; the error counts that slack, so it reads as past the limit.
        let cols = (limit / 4 - 1) as usize;
        let x = vec![0.0f32; cols];
        let err = e.softmax(&x, Shape::new(1, cols), &SoftmaxOptions::default());
        refused_past(err, limit);
        e.release_buffers();
    });
}

/// `err` is the one-row `TooLarge` error, naming more bytes than `limit`.
fn refused_past<T: std::fmt::Debug>(err: softmax_wgpu::Result<T>, limit: u64) {
    match err {
        Err(Error::TooLarge {
            what,
            needed,
            limit: named,
            ..
        }) => {
            assert!(what.starts_with("one row"), "{what}");
            assert_eq!(named, limit / 4 * 4);
            assert!(needed > named, "needs {needed} of {named}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn rows_past_the_loop_limit_of_cpu_adapters() {
    // One row of 9M logits on one workgroup (online forced) and in pieces (split-row): each
    // lane's loop over its share stays within the 65535 iterations after which Mesa's CPU
    // adapters end a loop (more than 16 lanes x 65535 blocks of 8 logits).
    on_every_adapter(|e| {
        let shape = Shape::new(1, 9_000_000);
        let x = random_logits(shape.len(), 10.0, 51);
        for v in [Variant::Online, Variant::SplitRow] {
            common::check_forward::<f32, f32>(
                e,
                Forward::Softmax,
                &x,
                shape,
                &SoftmaxOptions::default().with_variant(v),
            );
        }
        e.release_buffers();
    });
}
