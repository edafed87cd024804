//! Shows why the max shift matters, then runs a large-vocabulary batch on the GPU and checks
//! it against the f64 oracle.
//!
//! `cargo run --release --example quickstart`

use std::time::Instant;

use softmax_wgpu::{accuracy, Engine, EngineOptions, Forward, Shape, SoftmaxOptions};

fn naive_softmax(row: &[f32]) -> Vec<f32> {
    let sum: f32 = row.iter().map(|z| z.exp()).sum();
    row.iter().map(|z| z.exp() / sum).collect()
}

fn main() -> Result<(), softmax_wgpu::Error> {
    softmax_wgpu::quiet_headless_vulkan(); // no false `error:` line from Mesa on headless machines
    let engine = Engine::new_blocking(EngineOptions::default())?;
    println!("adapter: {}", engine.info());

    let row = [1000.0f32, 1001.0, 999.0];
    let options = SoftmaxOptions::default();
    println!("\nsoftmax of {row:?}");
    println!("  naive exp(z) / sum exp(z): {:?}", naive_softmax(&row));
    println!(
        "  softmax-wgpu (GPU):        {:?}",
        engine.softmax(&row, Shape::new(1, 3), &options)?
    );

    let shape = Shape::new(32, 128_256);
    let x: Vec<f32> = (0..shape.len())
        .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0)
        .collect();
    engine.softmax(&x, shape, &options)?; // compiles the pipeline, fills the buffer pool
    let start = Instant::now();
    let p = engine.softmax(&x, shape, &options)?;
    let elapsed = start.elapsed();
    let report = accuracy::check(Forward::Softmax, &x, shape, &options, &p);
    println!("\nsoftmax of {} x {} f32 logits", shape.rows, shape.cols);
    println!("  time (upload, kernel, readback): {elapsed:.2?}");
    println!("  against the f64 oracle: {report}");
    if !report.ok() {
        eprintln!("accuracy contract violated");
        std::process::exit(1);
    }
    Ok(())
}
