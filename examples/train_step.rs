//! One training step's loss: cross-entropy over a large vocabulary with its gradient written
//! over the logits (no second `[rows, cols]` tensor), recorded at device level, then checked
//! against the f64 oracle on the first, middle and last rows.
//!
//! `cargo run --release --example train_step`

use softmax_wgpu::accuracy::{EPS, SOFTMAX};
use softmax_wgpu::{
    oracle, wgpu, CrossEntropyArgs, CrossEntropyOptions, DType, Engine, EngineOptions, GradOutput,
    Shape, TensorRef,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    softmax_wgpu::quiet_headless_vulkan();
    let engine = Engine::new_blocking(EngineOptions::default())?;
    println!("adapter: {}", engine.info());
    let (device, queue) = (engine.device(), engine.queue());

    // A batch of 16 positions over a 128256-token vocabulary (Llama 3), logits in +-8; the
    // last position is padding (ignore_index).
    let shape = Shape::new(16, 128_256);
    let logits: Vec<f32> = (0..shape.len())
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 16.0)
        .collect();
    let options = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let mut targets: Vec<i32> = (0..shape.rows as i32)
        .map(|r| (r * 7919) % shape.cols as i32)
        .collect();
    *targets.last_mut().unwrap() = options.ignore_index;

    let buffer = |label, bytes: &[u8]| {
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.len().max(16) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, bytes);
        b
    };
    let x = buffer("logits, then the gradient", bytemuck::cast_slice(&logits));
    let t = buffer("targets", bytemuck::cast_slice(&targets));
    let loss = buffer("per-row loss", &vec![0u8; shape.rows * 4]);
    let lse = buffer("per-row logsumexp", &vec![0u8; shape.rows * 4]);
    let meta = buffer("meta", &[0u8; 16]);

    let mut encoder = device.create_command_encoder(&Default::default());
    engine.record_cross_entropy(
        &mut encoder,
        &CrossEntropyArgs {
            shape,
            logits: TensorRef::new(&x, DType::F32),
            targets: TensorRef::new(&t, DType::F32), // i32; the dtype of small tensors is ignored
            weight: None,
            grad: GradOutput::InPlace,
            loss: TensorRef::new(&loss, DType::F32),
            lse: TensorRef::new(&lse, DType::F32),
            meta: &meta,
        },
        &options,
    )?;
    queue.submit([encoder.finish()]);

    let grad: Vec<f32> = engine.read_buffer(&x, 0, shape.len())?;
    let per_row: Vec<f32> = engine.read_buffer(&loss, 0, shape.rows)?;
    let meta: Vec<u32> = engine.read_buffer(&meta, 0, 4)?;
    let reduced = f32::from_bits(meta[2]);
    assert_eq!(meta[1], u32::MAX, "no target is out of range");

    // The oracle, on three rows; the tolerances are those of tests/training.rs: each loss
    // term is a log-probability under the log_softmax contract, each gradient element a
    // probability under the softmax contract times the gradient's coefficient of p.
    let targets64: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let want = oracle::cross_entropy(&logits, &targets64, shape, &options);
    let counted = targets
        .iter()
        .filter(|&&t| t != options.ignore_index)
        .count() as f64;
    let (log_cols, max_a) = ((shape.cols as f64).log2(), 16.0);
    let contract = EPS * (SOFTMAX.base + SOFTMAX.per_arg * max_a + SOFTMAX.per_log_cols * log_cols);
    let mut worst = 0.0f64;
    for row in [0, shape.rows / 2, shape.rows - 1] {
        let (g, w) = (f64::from(per_row[row]), want.per_row[row]);
        worst = worst.max((g - w).abs() / (contract * (1.0 + w.abs()) * 4.0));
        let coef = (1.0 + f64::from(options.label_smoothing)) / counted;
        let span = row * shape.cols..(row + 1) * shape.cols;
        for (&g, &w) in grad[span.clone()].iter().zip(&want.grad[span]) {
            let g = f64::from(g);
            let tol = coef * (contract + f64::from(f32::MIN_POSITIVE)) + 8.0 * EPS * w.abs();
            worst = worst.max((g - w).abs() / tol);
        }
    }
    let loss_tol = contract * (1.0 + want.loss.abs()) * 4.0 * (shape.rows as f64).log2();
    worst = worst.max((f64::from(reduced) - want.loss).abs() / loss_tol);

    println!(
        "cross-entropy of {} x {} logits (label smoothing {}, mean), gradient in place",
        shape.rows, shape.cols, options.label_smoothing
    );
    println!("  loss {reduced} (f64 oracle {:.7})", want.loss);
    println!(
        "  per-row loss, row 0: {} (padding row: {})",
        per_row[0],
        per_row[shape.rows - 1]
    );
    println!("  rows 0, middle, last against the oracle: worst error/allowed {worst:.3}");
    if worst.is_nan() || worst > 1.0 {
        return Err("cross-entropy outside its tolerance".into());
    }
    Ok(())
}
