//! The edge-case table of the README, on every adapter: PyTorch's semantics.

mod common;

use common::{check_all_ops, on_every_tuning};
use softmax_wgpu::{MaskedRows, Shape, SoftmaxOptions};

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

fn all_nan(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_nan())
}

#[test]
fn edge_case_table() {
    let o = SoftmaxOptions::default();
    on_every_tuning(|e| {
        let run = |row: &[f32]| {
            let s = Shape::new(1, row.len());
            (
                e.softmax(row, s, &o).unwrap(),
                e.log_softmax(row, s, &o).unwrap(),
                e.logsumexp(row, s, &o).unwrap()[0],
            )
        };
        // NaN anywhere: NaN everywhere.
        let (p, l, s) = run(&[1.0, NAN, 2.0]);
        assert!(all_nan(&p) && all_nan(&l) && s.is_nan(), "{p:?} {l:?} {s}");
        // NaN beside +inf: still NaN for logsumexp.
        let (_, _, s) = run(&[INF, NAN]);
        assert!(s.is_nan());
        // All -inf: NaN, NaN, -inf.
        let (p, l, s) = run(&[-INF, -INF, -INF]);
        assert!(all_nan(&p) && all_nan(&l) && s == -INF, "{p:?} {l:?} {s}");
        // +inf: NaN, NaN, +inf.
        let (p, l, s) = run(&[1.0, INF, 2.0]);
        assert!(all_nan(&p) && all_nan(&l) && s == INF, "{p:?} {l:?} {s}");
        let (_, _, s) = run(&[-INF, INF]);
        assert_eq!(s, INF);
        // -inf among finite: probability 0, log-probability -inf.
        let (p, l, s) = run(&[0.0, -INF, 0.0]);
        assert_eq!(p, vec![0.5, 0.0, 0.5]);
        assert_eq!(l[1], -INF);
        approx::assert_relative_eq!(
            l[0],
            -std::f32::consts::LN_2,
            max_relative = 4.0 * f32::EPSILON
        );
        approx::assert_relative_eq!(s, std::f32::consts::LN_2, max_relative = 4.0 * f32::EPSILON);
        // A single column is probability 1, log-probability 0.
        let (p, l, s) = run(&[-5.0]);
        assert_eq!((p[0], l[0], s), (1.0, 0.0, -5.0));
        // Largest finite logits.
        let (p, _, _) = run(&[f32::MAX, f32::MAX]);
        assert_eq!(p, vec![0.5, 0.5]);
    });
}

#[test]
fn masked_rows_option_gives_zeros() {
    let o = SoftmaxOptions {
        masked_rows: MaskedRows::Zeros,
        ..Default::default()
    };
    on_every_tuning(|e| {
        let x = [-INF, -INF, -INF, 1.0, 2.0, -INF, NAN, 1.0, 0.0];
        let s = Shape::new(3, 3);
        let p = e.softmax(&x, s, &o).unwrap();
        assert_eq!(&p[..3], &[0.0; 3]);
        assert_eq!(p[5], 0.0);
        assert!(all_nan(&p[6..]), "a NaN row stays NaN: {p:?}");
        let l = e.log_softmax(&x, s, &o).unwrap();
        assert_eq!(&l[..3], &[0.0; 3]);
        assert_eq!(e.logsumexp(&x, s, &o).unwrap()[0], -INF);
    });
}

#[test]
fn mixed_rows_in_one_batch_match_the_oracle() {
    // Special rows interleaved with ordinary ones: no state leaks between rows.
    let rows: [[f32; 4]; 6] = [
        [1.0, 2.0, 3.0, 4.0],
        [NAN, 0.0, 0.0, 0.0],
        [-INF, -INF, -INF, -INF],
        [INF, 0.0, -INF, 1.0],
        [-INF, 5.0, -INF, 5.0],
        [-1e30, 1e30, 0.0, -0.0],
    ];
    let x: Vec<f32> = rows.iter().flatten().copied().collect();
    on_every_tuning(|e| {
        for t in [1.0, 0.25] {
            check_all_ops(
                e,
                &x,
                Shape::new(6, 4),
                &SoftmaxOptions::with_temperature(t),
            );
        }
    });
}
