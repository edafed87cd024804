//! Measures the accuracy contract on adversarial inputs on every adapter and prints the
//! figures docs/accuracy.md quotes (`cargo test --release --test accuracy_contract -- --nocapture`).

mod common;

use common::{check_forward, on_every_tuning, random_logits};
use half::{bf16, f16};
use softmax_wgpu::{Element, Engine, Forward, Shape, SoftmaxOptions, Variant};

/// Inputs that stress each error source: wide logit ranges (large |a|, tiny probabilities
/// down to underflow), long rows (deep sums), many near-ties, temperatures.
fn adversarial() -> Vec<(&'static str, Vec<f32>, Shape, SoftmaxOptions)> {
    let t1 = SoftmaxOptions::default();
    let mut ties = random_logits(4 * 4096, 1.0, 9);
    for v in ties.iter_mut() {
        *v = 1.0 + (*v * 8.0).round() * f32::EPSILON;
    }
    vec![
        (
            "wide range 160, 262144 cols",
            random_logits(2 * 262_144, 80.0, 1),
            Shape::new(2, 262_144),
            t1,
        ),
        (
            "range 20, 128256 cols",
            random_logits(2 * 128_256, 10.0, 2),
            Shape::new(2, 128_256),
            t1,
        ),
        (
            "range 2e4, 32000 cols",
            random_logits(4 * 32_000, 1e4, 3),
            Shape::new(4, 32_000),
            t1,
        ),
        ("near-ties, 4096 cols", ties, Shape::new(4, 4096), t1),
        (
            // Many terms of similar size: a running sum's error grows with the count.
            "golden-ratio sequence, 128256 cols",
            (0..32 * 128_256)
                .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0)
                .collect(),
            Shape::new(32, 128_256),
            t1,
        ),
        (
            "T = 0.05, 1000 cols",
            random_logits(8 * 1000, 4.0, 4),
            Shape::new(8, 1000),
            SoftmaxOptions::with_temperature(0.05),
        ),
        (
            "T = 7.3, 50000 cols",
            random_logits(2 * 50_000, 300.0, 5),
            Shape::new(2, 50_000),
            SoftmaxOptions::with_temperature(7.3),
        ),
        (
            "logits near 1e30",
            random_logits(4 * 999, 1.0, 6)
                .iter()
                .map(|v| 1e30 + v * 1e25)
                .collect(),
            Shape::new(4, 999),
            t1,
        ),
    ]
}

#[test]
fn contract_holds_on_adversarial_inputs() {
    on_every_tuning(|e| {
        println!("adapter: {}", e.info());
        for (name, x, shape, o) in adversarial() {
            // Every variant that can hold the rows: they sum in different orders.
            for v in Variant::KERNELS {
                let o = o.with_variant(v);
                if e.forward_variant(Forward::Softmax, shape, &o).is_err() {
                    continue;
                }
                for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
                    let r = check_forward::<f32, f32>(e, op, &x, shape, &o);
                    println!("  {name:36} {v:10} {op:?}: worst error/allowed {:.3}, worst {:.2} f32 ulp, {:.2}% correctly rounded",
                        r.worst_ratio, r.worst_ulps, 100.0 * r.correctly_rounded_share());
                }
            }
        }
    });
}

/// Rows where the f32 term of the 16-bit bound matters (see `softmax_wgpu::accuracy`): a
/// dominant maximum at T = 0.05 (the top log-probability is -2.07e-9 for two logits,
/// -2.06e-6 for a thousand), and probabilities below `f32::MIN_POSITIVE` (e^-89, e^-100).
fn near_zero<T: Element>(e: &Engine) {
    let cases: [(Vec<f32>, Shape, SoftmaxOptions); 3] = [
        (
            vec![1.0, 0.0],
            Shape::new(1, 2),
            SoftmaxOptions::with_temperature(0.05),
        ),
        (
            std::iter::once(1.0)
                .chain(std::iter::repeat_n(0.0, 999))
                .collect(),
            Shape::new(1, 1000),
            SoftmaxOptions::with_temperature(0.05),
        ),
        (
            vec![0.0, -89.0, -100.0, -1.0],
            Shape::new(1, 4),
            SoftmaxOptions::default(),
        ),
    ];
    for (x, shape, o) in cases {
        let x: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
        for op in [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp] {
            check_forward::<T, T>(e, op, &x, shape, &o);
        }
    }
}

#[test]
fn contract_holds_near_zero_in_every_dtype() {
    on_every_tuning(|e| {
        near_zero::<f32>(e);
        near_zero::<f16>(e);
        near_zero::<bf16>(e);
    });
}
