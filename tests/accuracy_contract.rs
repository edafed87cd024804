//! Measures the accuracy contract on adversarial inputs on every adapter and prints the
//! figures docs/accuracy.md quotes (`cargo test --release --test accuracy_contract -- --nocapture`).

mod common;

use common::{check_forward, on_every_tuning};
use half::{bf16, f16};
use softmax_wgpu::accuracy::adversarial_inputs;
use softmax_wgpu::{Element, Engine, Forward, Shape, SoftmaxOptions, Variant};

#[test]
fn contract_holds_on_adversarial_inputs() {
    on_every_tuning(|e| {
        println!("adapter: {}", e.info());
        for (name, x, shape, o) in adversarial_inputs() {
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
