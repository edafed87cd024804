//! Large vocabularies through the device-level API: batches of 128256 (Llama 3) and 262144
//! (Gemma 3) logits, f32 and f16, softmax with the per-row logsumexp written in the same
//! pass, timed on the device with the crate's stopwatch (GPU timestamps where the adapter
//! has them) and checked against the f64 oracle on the first and last rows.
//!
//! `cargo run --release --example large_vocab`

use softmax_wgpu::half::f16;
use softmax_wgpu::{
    accuracy, median, wgpu, DType, Element, Engine, EngineOptions, Forward, ForwardArgs, Shape,
    SoftmaxOptions, Stopwatch, TensorRef,
};

/// Timed runs per case; the median is reported.
const RUNS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    softmax_wgpu::quiet_headless_vulkan();
    let engine = Engine::new_blocking(EngineOptions::default())?;
    let stopwatch = Stopwatch::new(&engine);
    println!("adapter: {}", engine.info());
    println!("clock: {}, median of {RUNS} runs\n", stopwatch.clock());
    println!(
        "{:>16}  {:>5}  {:>9}  {:>7}  accuracy (rows 0 and last)",
        "shape", "dtype", "ms", "GB/s"
    );
    let mut ok = true;
    for shape in [Shape::new(32, 128_256), Shape::new(8, 262_144)] {
        ok &= run::<f32>(&engine, &stopwatch, shape)?;
        ok &= run::<f16>(&engine, &stopwatch, shape)?;
    }
    if !ok {
        return Err("accuracy contract violated".into());
    }
    Ok(())
}

/// Uploads logits of `T`, times softmax into a separate output with the logsumexp beside
/// it, reads both back and checks the first and last rows.
fn run<T: Element>(
    engine: &Engine,
    stopwatch: &Stopwatch,
    shape: Shape,
) -> Result<bool, Box<dyn std::error::Error>> {
    let (device, queue) = (engine.device(), engine.queue());
    let x: Vec<T> = (0..shape.len())
        .map(|i| T::from_f32(((i as f32 * 0.618_034).fract() - 0.5) * 30.0))
        .collect();
    let size = T::DTYPE.size();
    let bytes = shape.len() as u64 * size;
    let buffer = |label, size: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let (logits, probs, lse) = (
        buffer("logits", bytes),
        buffer("probabilities", bytes),
        buffer("logsumexp", shape.rows as u64 * 4),
    );
    queue.write_buffer(&logits, 0, bytemuck::cast_slice(&x));
    let args = ForwardArgs {
        op: Forward::Softmax,
        shape,
        input: TensorRef::new(&logits, T::DTYPE),
        output: Some(TensorRef::new(&probs, T::DTYPE)),
        lse: Some(TensorRef::new(&lse, DType::F32)),
        options: SoftmaxOptions::default(),
    };
    // The first run builds the pipelines; the timed runs find them cached.
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..=RUNS {
        let t = stopwatch.time(engine, |encoder| engine.record_forward(encoder, &args))?;
        times.push(t.as_secs_f64());
    }
    let seconds = median(&times[1..]);
    // One read of the logits, one write of the probabilities, 4 bytes of logsumexp a row.
    let moved = 2 * bytes + shape.rows as u64 * 4;

    let p: Vec<T> = engine.read_buffer(&probs, 0, shape.len())?;
    let s: Vec<f32> = engine.read_buffer(&lse, 0, shape.rows)?;
    let mut ok = true;
    let mut worst = 0.0f64;
    for row in [0, shape.rows - 1] {
        let one = Shape::new(1, shape.cols);
        let xs = &x[row * shape.cols..(row + 1) * shape.cols];
        let options = SoftmaxOptions::default();
        let probs = accuracy::check(
            Forward::Softmax,
            xs,
            one,
            &options,
            &p[row * shape.cols..(row + 1) * shape.cols],
        );
        let lse = accuracy::check(Forward::LogSumExp, xs, one, &options, &s[row..row + 1]);
        ok &= probs.ok() && lse.ok();
        worst = worst.max(probs.worst_ratio).max(lse.worst_ratio);
    }
    println!(
        "{:>16}  {:>5}  {:>9.3}  {:>7.2}  worst error/allowed {worst:.3}{}",
        format!("{} x {}", shape.rows, shape.cols),
        format!("{:?}", T::DTYPE).to_lowercase(),
        seconds * 1e3,
        moved as f64 / seconds * 1e-9,
        if ok { "" } else { "  VIOLATED" }
    );
    Ok(ok)
}
