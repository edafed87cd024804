//! Vocabulary-parallel softmax and cross-entropy across every adapter found: each row's
//! vocabulary split into one shard per adapter (or `--shards N` over them in turn), each
//! shard's partial states on its adapter, the merge on the host, each shard finished on its
//! adapter; checked against the f64 oracle and the unsharded result. Then the cost on the
//! first adapter, device-level: partial + merge + finish of every shard against the unsharded
//! softmax of the same total shape, medians of alternated runs.
//!
//! `cargo run --release --example vocab_parallel [-- --rows 16 --cols 128256 --shards 3 --runs 5]`
//! (`--cost-only`: the timing alone)

use softmax_wgpu::vocab_parallel::{
    across, even_widths, FinishArgs, MergeArgs, PartialArgs, PartialOptions, Shard, STATE_BYTES,
};
use softmax_wgpu::{
    accuracy, median, wgpu, CrossEntropyOptions, DType, Engine, EngineOptions, Forward,
    ForwardArgs, Shape, SoftmaxOptions, Stopwatch, TensorRef,
};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    softmax_wgpu::quiet_headless_vulkan();
    let engines = Engine::all_blocking(EngineOptions::default())?;
    let (rows, cols) = (arg("--rows", 16), arg("--cols", 128_256));
    let count = arg("--shards", engines.len().max(2));
    let runs = arg("--runs", 5);
    let shape = Shape::new(rows, cols);
    let widths = even_widths(cols, count);
    let shards: Vec<(&Engine, usize)> = widths
        .iter()
        .enumerate()
        .map(|(k, &w)| (&engines[k % engines.len()], w))
        .collect();
    for (k, (e, w)) in shards.iter().enumerate() {
        println!("shard {k}: {w} columns on {}", e.info());
    }
    let logits = accuracy::random_logits(rows * cols, 12.0, 3);
    if std::env::args().any(|a| a == "--cost-only") {
        return cost(&engines[0], shape, &widths, &logits, runs);
    }

    // Softmax: sharded against the oracle and against the unsharded kernels.
    let o = SoftmaxOptions::default();
    let sharded = across::forward::<f32, f32>(&shards, Forward::Softmax, &logits, shape, &o)?;
    let report = accuracy::check(Forward::Softmax, &logits, shape, &o, &sharded.values);
    let whole = engines[0].softmax(&logits, shape, &o)?;
    let diff = sharded
        .values
        .iter()
        .zip(&whole)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("\nsoftmax {rows} x {cols} in {count} shards: {report}; max |sharded - unsharded| {diff:.2e}");

    // Cross-entropy with label smoothing: the loss once, the gradient put together.
    let targets: Vec<i64> = (0..rows).map(|r| ((r * 7919) % cols) as i64).collect();
    let co = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let ce = across::cross_entropy(&shards, &logits, &targets, shape, &co, true)?;
    let want = engines[0].cross_entropy(&logits, &targets, shape, &co, true)?;
    println!(
        "cross-entropy: sharded loss {:.6}, unsharded {:.6}",
        ce.loss, want.loss
    );
    if !report.ok() || (ce.loss - want.loss).abs() > 1e-4 * want.loss.abs().max(1.0) {
        return Err("sharded results outside the accuracy contract".into());
    }

    cost(&engines[0], shape, &widths, &logits, runs)?;
    Ok(())
}

/// Times every shard's partial, the merge and every shard's finish on one device against
/// the unsharded softmax of the same shape, device-level, alternated.
fn cost(
    e: &Engine,
    shape: Shape,
    widths: &[usize],
    logits: &[f32],
    runs: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    use wgpu::util::DeviceExt;
    let rows = shape.rows;
    let storage = |bytes: &[u8]| {
        e.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    };
    let mut first = 0;
    let mut parts = Vec::new();
    for &w in widths {
        let s = Shard {
            rows,
            cols: w,
            first_col: first,
        };
        first += w;
        let x: Vec<f32> = logits
            .chunks(shape.cols)
            .flat_map(|r| &r[s.first_col..s.first_col + w])
            .copied()
            .collect();
        parts.push((
            s,
            storage(bytemuck::cast_slice(&x)),
            storage(&vec![0u8; 4 * x.len()]),
        ));
    }
    // Each shard's states `rows` states apart, aligned for binding.
    let align = u64::from(e.info().limits.min_storage_buffer_offset_alignment);
    let stride = ((rows * STATE_BYTES) as u64).div_ceil(align) * align;
    let states = storage(&vec![0u8; stride as usize * widths.len()]);
    let packed = storage(&vec![0u8; rows * STATE_BYTES * widths.len()]);
    let merged = storage(&vec![0u8; rows * STATE_BYTES]);
    let x = storage(bytemuck::cast_slice(logits));
    let y = storage(&vec![0u8; 4 * logits.len()]);
    let o = SoftmaxOptions::default();
    let stopwatch = Stopwatch::new(e);
    let (mut sharded, mut whole) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        sharded.push(stopwatch.time(e, |enc| {
            for (k, (s, xb, _)) in parts.iter().enumerate() {
                let args = PartialArgs {
                    shard: *s,
                    logits: TensorRef::new(xb, DType::F32),
                    targets: None,
                    weight: None,
                    states: TensorRef::new(&states, DType::F32).at(k as u64 * stride),
                };
                e.record_partial_states(enc, &args, &PartialOptions::from(&o))?;
                let bytes = (rows * STATE_BYTES) as u64;
                enc.copy_buffer_to_buffer(
                    &states,
                    k as u64 * stride,
                    &packed,
                    k as u64 * bytes,
                    bytes,
                );
            }
            let merge = MergeArgs {
                rows,
                count: parts.len(),
                states: TensorRef::new(&packed, DType::F32),
                merged: TensorRef::new(&merged, DType::F32),
            };
            e.record_merge_states(enc, &merge, o.temperature)?;
            for (s, xb, yb) in &parts {
                let args = FinishArgs {
                    op: Forward::Softmax,
                    shard: *s,
                    logits: TensorRef::new(xb, DType::F32),
                    merged: TensorRef::new(&merged, DType::F32),
                    output: Some(TensorRef::new(yb, DType::F32)),
                    lse: None,
                };
                e.record_finish_forward(enc, &args, &o)?;
            }
            Ok(())
        })?);
        whole.push(stopwatch.time(e, |enc| {
            let args = ForwardArgs {
                op: Forward::Softmax,
                shape,
                input: TensorRef::new(&x, DType::F32),
                output: Some(TensorRef::new(&y, DType::F32)),
                lse: None,
                options: o,
            };
            e.record_forward(enc, &args)
        })?);
    }
    let ms = |v: &[std::time::Duration]| {
        median(&v.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>())
    };
    let (a, b) = (ms(&sharded), ms(&whole));
    let gbps = |t: f64| 8.0 * logits.len() as f64 / (t * 1e-3) / 1e9;
    println!(
        "\ncost on {} ({}, median of {runs}): sharded partial + merge + finish {a:.3} ms \
         ({:.2} GB/s), unsharded softmax {b:.3} ms ({:.2} GB/s), ratio {:.2}; \
         states exchanged: {} bytes per row from each of {} shards",
        e.info().adapter.name,
        stopwatch.clock(),
        gbps(a),
        gbps(b),
        a / b,
        STATE_BYTES,
        widths.len()
    );
    Ok(())
}
