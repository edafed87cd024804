//! f16 and bf16 logits and outputs, f32 accumulation, on every adapter and both f16 paths.

mod common;

use common::{check_forward, on_every_half_path, random_logits};
use half::{bf16, f16};
use softmax_wgpu::{Element, Engine, Forward, Shape, SoftmaxOptions};

const OPS: [Forward; 3] = [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp];

fn to<T: Element>(x: &[f32]) -> Vec<T> {
    x.iter().map(|&v| T::from_f32(v)).collect()
}

/// Every op with output in the input's dtype and in f32.
fn check_half<T: Element>(e: &Engine, x: &[T], shape: Shape, o: &SoftmaxOptions) {
    for op in OPS {
        check_forward::<T, T>(e, op, x, shape, o);
        check_forward::<T, f32>(e, op, x, shape, o);
    }
}

#[test]
fn reference_row_in_f16() {
    on_every_half_path(|e| {
        let x = to::<f16>(&[1000.0, 1001.0, 999.0]);
        let p = e
            .softmax(&x, Shape::new(1, 3), &SoftmaxOptions::default())
            .unwrap();
        let want = [0.244_728_47f64, 0.665_240_96, 0.090_030_57].map(f16::from_f64);
        assert_eq!(p, want, "exactly the correctly rounded f16 values");
        check_half(e, &x, Shape::new(1, 3), &SoftmaxOptions::default());
    });
}

#[test]
fn odd_cols_and_rows_starting_mid_word() {
    on_every_half_path(|e| {
        for (k, &cols) in [1usize, 2, 3, 7, 255, 256, 257, 1025, 4097]
            .iter()
            .enumerate()
        {
            let rows = 9;
            let x = random_logits(rows * cols, 12.0, 100 + k as u64);
            check_half(
                e,
                &to::<f16>(&x),
                Shape::new(rows, cols),
                &SoftmaxOptions::default(),
            );
            check_half(
                e,
                &to::<bf16>(&x),
                Shape::new(rows, cols),
                &SoftmaxOptions::default(),
            );
        }
    });
}

#[test]
fn large_vocabulary_in_half_precision() {
    on_every_half_path(|e| {
        for (k, &cols) in [32000usize, 128256].iter().enumerate() {
            let x = random_logits(3 * cols, 20.0, 200 + k as u64);
            check_half(
                e,
                &to::<f16>(&x),
                Shape::new(3, cols),
                &SoftmaxOptions::default(),
            );
            check_half(
                e,
                &to::<bf16>(&x),
                Shape::new(3, cols),
                &SoftmaxOptions::default(),
            );
        }
    });
}

#[test]
fn f16_extremes_never_overflow() {
    let m = 65504.0f32;
    let inf = f32::INFINITY;
    let rows: [[f32; 4]; 6] = [
        [m, m, m - 32.0, -m], // at the top of f16's range; log_softmax of -m is below -65504: -inf
        [-m, -m, -m, -m],     // at the bottom
        [inf, 0.0, 1.0, 2.0], // +inf: NaN, +inf
        [-inf, -inf, -inf, -inf], // fully masked: NaN, -inf
        [0.0, -20.0, -30.0, -inf], // exp(-20) underflows f16's normal range, not f32
        [0.0, -17.0, -16.0, -18.0], // probabilities in f16's subnormal range
    ];
    let x: Vec<f32> = rows.iter().flatten().copied().collect();
    on_every_half_path(|e| {
        let xh = to::<f16>(&x);
        check_half(e, &xh, Shape::new(6, 4), &SoftmaxOptions::default());
        let p = e
            .softmax(&xh, Shape::new(6, 4), &SoftmaxOptions::default())
            .unwrap();
        assert!(p[..4].iter().all(|v| v.is_finite()), "{p:?}");
        assert!(
            p[21].to_f32() > 0.0 && p[21].to_f32() < 6.1e-5,
            "subnormal kept: {:?}",
            p[21]
        );
        for t in [1e-6f32, 1e-3, 100.0] {
            check_half(
                e,
                &xh,
                Shape::new(6, 4),
                &SoftmaxOptions::with_temperature(t),
            );
        }
    });
}

#[test]
fn half_accuracy_figures() {
    on_every_half_path(|e| {
        let x = random_logits(4 * 32000, 15.0, 7);
        let shape = Shape::new(4, 32000);
        let o = SoftmaxOptions::default();
        println!("adapter: {} ({:?})", e.info(), e.half_path());
        for op in [Forward::Softmax, Forward::LogSoftmax] {
            let r = check_forward::<f16, f16>(e, op, &to::<f16>(&x), shape, &o);
            println!(
                "  f16 {op:?}: worst {:.2} ulp, {:.3}% correctly rounded",
                r.worst_ulps,
                100.0 * r.correctly_rounded_share()
            );
            assert!(r.worst_ulps <= 1.0);
            let r = check_forward::<bf16, bf16>(e, op, &to::<bf16>(&x), shape, &o);
            println!(
                "  bf16 {op:?}: worst {:.2} ulp, {:.3}% correctly rounded",
                r.worst_ulps,
                100.0 * r.correctly_rounded_share()
            );
            assert!(r.worst_ulps <= 1.0);
        }
    });
}

#[test]
fn the_kernels_bit_conversions_are_exact_on_every_adapter() {
    // Every f16 widened, and the f32 values around every f16 rounding boundary narrowed
    // (ties, one step either side, overflow, subnormals, NaN), against the `half` crate.
    common::on_every_adapter(|e| {
        assert!(
            pollster::block_on(softmax_wgpu::bit_conversions_are_exact(
                e.device(),
                e.queue()
            )),
            "f16 bit conversions inexact"
        );
        // The softmax outputs' narrowing, on the values it takes: non-negative below the
        // overflow threshold, and NaN.
        assert!(
            pollster::block_on(softmax_wgpu::unit_conversions_are_exact(
                e.device(),
                e.queue()
            )),
            "f16 narrowing of softmax outputs inexact"
        );
    });
}

#[test]
fn f16_conversions_follow_the_probe() {
    // The portable path never takes the builtins. Mesa's CPU adapters convert through LLVM,
    // exactly, so the probe must find them exact there; a probe that wrongly failed would
    // only lose speed, silently, without this check.
    for e in common::portable_engines() {
        assert!(
            !e.half_builtins(),
            "{}: portable path uses builtins",
            e.info()
        );
    }
    for e in common::engines() {
        if e.info().adapter.device_type == wgpu::DeviceType::Cpu {
            assert!(
                e.half_builtins(),
                "{}: probe found builtins inexact",
                e.info()
            );
        }
    }
}
