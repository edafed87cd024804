//! `cargo bench`: every operation (the forward family, cross-entropy with its gradient and
//! the two backward operations) in f32 and f16 over large-vocabulary shapes on the best
//! adapter, timed by criterion (wall time of submit and wait), beside each copy method of
//! the roofline over the same bytes. For device-time medians, GB/s and ratios to copy, run the
//! `bench` subcommand of the command-line tool (`softmax-wgpu bench`), which uses GPU
//! timestamps.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use softmax_wgpu::bench::{BenchOp, Case, CopyMethod, Prepared, Stopwatch};
use softmax_wgpu::{DType, Engine, EngineOptions, Shape};

fn operations(c: &mut Criterion) {
    let engine = Engine::new_blocking(EngineOptions::default())
        .unwrap_or_else(|e| panic!("benchmarks need an adapter: {e}"));
    eprintln!("adapter: {}", engine.info());
    let shapes = [(1, 262_144), (32, 32_000), (32, 128_256), (256, 32_000)];
    let mut group = c.benchmark_group("operations");
    group.sample_size(10);
    // Wall time per sample; the stopwatch only submits and waits.
    let stopwatch = Stopwatch::wall_clock();
    for (rows, cols) in shapes {
        let shape = Shape::new(rows, cols);
        for dtype in [DType::F32, DType::F16] {
            for op in BenchOp::ALL {
                let case = Case {
                    op,
                    dtype,
                    shape,
                    options: Default::default(),
                };
                let prepared = Prepared::new(&engine, &case).unwrap();
                // Nothing is timed that computes the wrong thing.
                prepared.verify().unwrap_or_else(|e| panic!("{e}"));
                let variant = prepared
                    .variant()
                    .unwrap()
                    .map_or(String::new(), |v| format!("/{v}"));
                group.throughput(Throughput::Bytes(case.bytes()));
                let shape_id = format!("{rows}x{cols}");
                let id = format!("{}/{dtype:?}{variant}", op.name());
                group.bench_with_input(BenchmarkId::new(id, &shape_id), &(), |b, _| {
                    b.iter(|| stopwatch.time(&engine, |e| prepared.record(e)).unwrap())
                });
                for method in CopyMethod::all(&engine) {
                    let id = format!("copy ({method})/{}/{dtype:?}", op.name());
                    group.bench_with_input(BenchmarkId::new(id, &shape_id), &(), |b, _| {
                        b.iter(|| {
                            stopwatch
                                .time(&engine, |e| prepared.record_copy(e, method))
                                .unwrap()
                        })
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, operations);
criterion_main!(benches);
