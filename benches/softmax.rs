//! `cargo bench`: every forward operation in f32 and f16 over large-vocabulary shapes on the
//! best adapter, timed by criterion (wall time of submit and wait), beside the copy kernel
//! over the same bytes. For device-time medians, GB/s and ratios to the copy kernel, run the
//! `bench` subcommand of the command-line tool (`softmax-wgpu bench`), which uses GPU
//! timestamps.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softmax_wgpu::bench::{bench_logits, Case, Stopwatch};
use softmax_wgpu::{DType, Engine, EngineOptions, Forward, ForwardArgs, Shape, TensorRef};

fn forward(c: &mut Criterion) {
    let engine = Engine::new_blocking(EngineOptions::default())
        .unwrap_or_else(|e| panic!("benchmarks need an adapter: {e}"));
    eprintln!("adapter: {}", engine.info());
    let device = engine.device();
    let shapes = [(1, 262_144), (32, 32_000), (32, 128_256), (256, 32_000)];
    let ops = [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp];
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    // Wall time per sample; the stopwatch only submits and waits.
    let stopwatch = Stopwatch::wall_clock();
    for (rows, cols) in shapes {
        let shape = Shape::new(rows, cols);
        for dtype in [DType::F32, DType::F16] {
            let bytes = dtype.buffer_bytes(shape.len() as u64).div_ceil(32) * 32;
            let make = |size| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            };
            let (x, y, lse) = (make(bytes), make(bytes), make(4 * rows as u64));
            let logits = bench_logits(shape.len());
            match dtype {
                DType::F16 => {
                    let h: Vec<half::f16> =
                        logits.iter().map(|&v| half::f16::from_f32(v)).collect();
                    engine.queue().write_buffer(&x, 0, bytemuck::cast_slice(&h));
                }
                _ => engine
                    .queue()
                    .write_buffer(&x, 0, bytemuck::cast_slice(&logits)),
            }
            for op in ops {
                let case = Case {
                    op,
                    dtype,
                    shape,
                    options: Default::default(),
                };
                let variant = engine.forward_variant(op, shape, &case.options).unwrap();
                group.throughput(Throughput::Bytes(case.bytes()));
                let id = format!("{op:?}/{dtype:?}/{variant}");
                let args = ForwardArgs {
                    op,
                    shape,
                    input: TensorRef::new(&x, dtype),
                    output: (op != Forward::LogSumExp).then(|| TensorRef::new(&y, dtype)),
                    lse: (op == Forward::LogSumExp).then(|| TensorRef::new(&lse, DType::F32)),
                    options: case.options,
                };
                group.bench_with_input(
                    BenchmarkId::new(id, format!("{rows}x{cols}")),
                    &(),
                    |b, _| {
                        b.iter(|| {
                            stopwatch
                                .time(&engine, |e| engine.record_forward(e, &args))
                                .unwrap()
                        })
                    },
                );
                let copy_bytes = (case.bytes() / 2).div_ceil(32) * 32;
                for word in engine.copy_words() {
                    let id = format!("copy ({word})/{op:?}/{dtype:?}");
                    group.bench_with_input(
                        BenchmarkId::new(id, format!("{rows}x{cols}")),
                        &(),
                        |b, _| {
                            b.iter(|| {
                                stopwatch
                                    .time(&engine, |e| {
                                        engine.record_copy(e, &x, &y, copy_bytes, word)
                                    })
                                    .unwrap()
                            })
                        },
                    );
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
