//! Random shapes and values with proptest, on every adapter.

mod common;

use common::{check_forward, engines};
use proptest::prelude::*;
use softmax_wgpu::{Forward, Shape, SoftmaxOptions};

fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -50.0f32..50.0,
        1 => -1e30f32..1e30,
        1 => Just(f32::NEG_INFINITY),
    ]
}

/// Shapes on both sides of the powers of two the kernels care about (the workgroup size).
fn batch() -> impl Strategy<Value = (Shape, Vec<f32>)> {
    let cols = prop_oneof![1usize..40, 250usize..260, 1020usize..1030, 4090usize..4100];
    (1usize..20, cols).prop_flat_map(|(rows, cols)| {
        (
            Just(Shape::new(rows, cols)),
            prop::collection::vec(logit(), rows * cols),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes_match_the_oracle(
        (shape, x) in batch(),
        t in prop_oneof![Just(1.0f32), 0.01f32..100.0],
    ) {
        let o = SoftmaxOptions::with_temperature(t);
        for e in engines() {
            for op in [Forward::Softmax, Forward::LogSoftmax] {
                check_forward::<f32, f32>(e, op, &x, shape, &o);
            }
        }
    }
}
