//! f32 forward operations on every adapter, against the f64 oracle under the contract.

mod common;

use common::{check_all_ops, on_every_adapter, random_logits};
use softmax_wgpu::{Forward, MaskedRows, Shape, SoftmaxOptions, Variant};

const DEFAULT: SoftmaxOptions = SoftmaxOptions {
    temperature: 1.0,
    masked_rows: MaskedRows::Nan,
    variant: Variant::Auto,
};

#[test]
fn reference_row_matches_known_values() {
    // The values of torch.softmax(torch.tensor([1000., 1001., 999.]), 0), correctly rounded.
    let want = [0.244_728_47f32, 0.665_240_96, 0.090_030_57];
    on_every_adapter(|e| {
        let x = [1000.0f32, 1001.0, 999.0];
        let p = e.softmax(&x, Shape::new(1, 3), &DEFAULT).unwrap();
        for (g, w) in p.iter().zip(want) {
            approx::assert_relative_eq!(*g, w, max_relative = 4.0 * f32::EPSILON);
        }
        let lp = e.log_softmax(&x, Shape::new(1, 3), &DEFAULT).unwrap();
        for (g, w) in lp.iter().zip(want) {
            approx::assert_relative_eq!(*g, w.ln(), max_relative = 4.0 * f32::EPSILON);
        }
        check_all_ops(e, &x, Shape::new(1, 3), &DEFAULT);
    });
}

#[test]
fn far_apart_logits_do_not_overflow() {
    on_every_adapter(|e| {
        let x = [1234.0f32, 0.0];
        let p = e.softmax(&x, Shape::new(1, 2), &DEFAULT).unwrap();
        assert_eq!(p, vec![1.0, 0.0]);
        let lp = e.log_softmax(&x, Shape::new(1, 2), &DEFAULT).unwrap();
        assert_eq!(lp, vec![0.0, -1234.0]);
        check_all_ops(e, &x, Shape::new(1, 2), &DEFAULT);

        let huge = [1e30f32, -1e30, 5e29, 1e30, 3.0e38, -3.0e38];
        check_all_ops(e, &huge, Shape::new(2, 3), &DEFAULT);
        let lse = e.logsumexp(&huge, Shape::new(2, 3), &DEFAULT).unwrap();
        approx::assert_relative_eq!(lse[0], 1e30 + 0.0, max_relative = 1e-6);
    });
}

#[test]
fn extreme_temperatures() {
    on_every_adapter(|e| {
        let x = random_logits(3 * 1000, 20.0, 7);
        for t in [1e-6f32, 1e-3, 0.5, 3.0, 1e6] {
            check_all_ops(
                e,
                &x,
                Shape::new(3, 1000),
                &SoftmaxOptions::with_temperature(t),
            );
        }
        // A tiny temperature turns softmax into argmax, without overflow.
        let p = e
            .softmax(
                &[1.0f32, 1.000001, 0.5],
                Shape::new(1, 3),
                &SoftmaxOptions::with_temperature(1e-6),
            )
            .unwrap();
        assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
        assert!(p[1] > 0.7, "{p:?}");
    });
}

#[test]
fn every_vocabulary_size() {
    let cols_list = [
        1usize, 2, 3, 7, 255, 256, 257, 1023, 1024, 1025, 4097, 32000, 65537, 128256, 262144,
    ];
    on_every_adapter(|e| {
        for (k, &cols) in cols_list.iter().enumerate() {
            let rows = (1 << 18) / cols.max(1);
            let rows = rows.clamp(1, 5);
            let x = random_logits(rows * cols, 15.0, k as u64);
            check_all_ops(e, &x, Shape::new(rows, cols), &DEFAULT);
        }
    });
}

#[test]
fn one_huge_logit_among_many() {
    on_every_adapter(|e| {
        let cols = 1 << 20;
        let mut x = random_logits(cols, 3.0, 11);
        x[cols / 3] = 80.0;
        check_all_ops(e, &x, Shape::new(1, cols), &DEFAULT);
        let p = e.softmax(&x, Shape::new(1, cols), &DEFAULT).unwrap();
        assert!(p[cols / 3] > 0.99, "{}", p[cols / 3]);
    });
}

#[test]
fn rows_past_the_dispatch_limit() {
    on_every_adapter(|e| {
        let rows = 70_000;
        let x = random_logits(rows * 3, 30.0, 3);
        check_all_ops(e, &x, Shape::new(rows, 3), &DEFAULT);
        // One workgroup per row: more than one dispatch dimension holds, so the kernels
        // loop over rows (ROW_LOOP), in every variant that takes a row per workgroup.
        let x = random_logits(rows * 24, 30.0, 4);
        for v in [Variant::Online, Variant::Resident, Variant::SplitRow] {
            check_all_ops(e, &x, Shape::new(rows, 24), &DEFAULT.with_variant(v));
        }
    });
}

#[test]
fn pipelines_are_compiled_once() {
    on_every_adapter(|e| {
        let x = random_logits(4 * 100, 5.0, 1);
        // The first call of each shape class compiles its variant's pipeline.
        e.softmax(&x, Shape::new(4, 100), &DEFAULT).unwrap();
        e.softmax(&x, Shape::new(2, 200), &DEFAULT).unwrap();
        let before = e.compiled_pipelines();
        for _ in 0..3 {
            e.softmax(&x, Shape::new(4, 100), &DEFAULT).unwrap();
            e.softmax(
                &x,
                Shape::new(2, 200),
                &SoftmaxOptions::with_temperature(2.0),
            )
            .unwrap();
        }
        assert_eq!(e.compiled_pipelines(), before);
    });
}

#[test]
fn lse_beside_softmax_matches_logsumexp() {
    on_every_adapter(|e| {
        let x = random_logits(8 * 333, 10.0, 5);
        let shape = Shape::new(8, 333);
        let r = e
            .forward::<f32, f32>(Forward::Softmax, &x, shape, &DEFAULT, true)
            .unwrap();
        let lse = e.logsumexp(&x, shape, &DEFAULT).unwrap();
        assert_eq!(r.lse.unwrap(), lse);
    });
}

/// Host operations from several threads at once on one engine: each gets its own result,
/// bit for bit what it gets alone (the pool once handed an operation's buffers to another
/// thread before the first one's work had run).
#[test]
fn threads_sharing_one_engine_get_their_own_results() {
    on_every_adapter(|e| {
        let shape = Shape::new(8, 4099);
        let inputs: Vec<Vec<f32>> = (0..4)
            .map(|k| random_logits(shape.len(), 10.0, 100 + k))
            .collect();
        let alone: Vec<Vec<f32>> = inputs
            .iter()
            .map(|x| e.softmax(x, shape, &DEFAULT).unwrap())
            .collect();
        std::thread::scope(|s| {
            for (x, want) in inputs.iter().zip(&alone) {
                s.spawn(move || {
                    for _ in 0..12 {
                        let got = e.softmax(x, shape, &DEFAULT).unwrap();
                        assert!(got == *want, "another thread's result");
                    }
                });
            }
        });
    });
}
