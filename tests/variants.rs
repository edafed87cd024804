//! Every kernel variant, forced explicitly, on every adapter (and both f16 paths): the same
//! accuracy contract and the same edge-case semantics as the automatic choice.

mod common;

use common::{
    check_forward, on_default_limits, on_every_half_path, on_every_tuning, random_logits,
};
use half::{bf16, f16};
use softmax_wgpu::{
    DType, Element, Engine, EngineOptions, Error, Forward, ForwardArgs, Shape, SoftmaxOptions,
    TensorRef, Variant,
};

const OPS: [Forward; 3] = [Forward::Softmax, Forward::LogSoftmax, Forward::LogSumExp];
const INF: f32 = f32::INFINITY;

/// Whether `v` can hold rows of `cols` on `e`; where it cannot, the error must say so.
fn runs(e: &Engine, v: Variant, shape: Shape) -> bool {
    match e.forward_variant(
        Forward::Softmax,
        shape,
        &SoftmaxOptions::default().with_variant(v),
    ) {
        Ok(got) => {
            assert_eq!(got, v, "a forced variant runs as itself");
            true
        }
        Err(Error::UnsupportedVariant { .. }) => {
            // Only the variants that hold rows in registers refuse, and only long rows.
            assert!(
                matches!(v, Variant::Resident | Variant::MultiRow),
                "{v} refused {shape:?}"
            );
            assert!(shape.cols > 8, "{v} refused a short row: {shape:?}");
            false
        }
        Err(other) => panic!("{v} on {shape:?}: {other}"),
    }
}

/// Every op with every variant that can run the shape, in `T` and to f32.
fn check_variants<T: Element>(e: &Engine, x: &[T], shape: Shape, options: &SoftmaxOptions) {
    for v in Variant::KERNELS {
        if !runs(e, v, shape) {
            continue;
        }
        let o = options.with_variant(v);
        for op in OPS {
            check_forward::<T, T>(e, op, x, shape, &o);
            if T::DTYPE != DType::F32 {
                check_forward::<T, f32>(e, op, x, shape, &o);
            }
        }
    }
}

#[test]
fn every_variant_on_shapes_around_block_and_workgroup_sizes() {
    on_every_tuning(|e| {
        let shapes = [
            (1, 1),
            (3, 7),
            (2, 8),
            (5, 9),
            (4, 31),
            (64, 100),
            // Packed rows on CPU adapters (4, 8, 4 and 8 rows to a lane), with rows left over
            // (one row of 2 logits: too few bytes for a vector view, so its dispatch loads
            // scalars while the packed one loads blocks).
            (9, 2),
            (19, 3),
            (11, 10),
            (9, 31),
            // Windowed packed rows (8, 8, 8 and 4 rows to a lane), with rows left over.
            (19, 33),
            (11, 77),
            (9, 197),
            (5, 250),
            (7, 257),
            (3, 1000),
            // Multi-row rows that a lane loops over under CPU tuning.
            (2, 4099),
            (2, 20_001),
        ];
        for (k, &(rows, cols)) in shapes.iter().enumerate() {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), 20.0, 100 + k as u64);
            check_variants(e, &x, shape, &SoftmaxOptions::default());
            check_variants(e, &x, shape, &SoftmaxOptions::with_temperature(0.3));
        }
    });
}

#[test]
fn every_variant_on_special_rows() {
    // NaN, +inf, all -inf and ordinary rows interleaved, with masked rows as zeros. 40 columns
    // give every variant blocks and an unaligned tail; 20 (2 blocks and a tail) put a
    // multi-row row on a cluster of 2 lanes of a subgroup under GPU tuning, merged by
    // subgroup shuffles; 2053 put a multi-row row on one lane that loops over it under CPU
    // tuning.
    for cols in [40, 20, 2053] {
        let mut x = random_logits(6 * cols, 5.0, 7);
        x[3] = f32::NAN;
        x[cols + cols - 1] = INF;
        x[2 * cols..3 * cols].fill(-INF);
        x[3 * cols + 17] = -INF;
        x[4 * cols + 8] = 1e30;
        x[5 * cols..5 * cols + cols / 2].fill(-INF);
        let shape = Shape::new(6, cols);
        on_every_tuning(|e| {
            check_variants(e, &x, shape, &SoftmaxOptions::default());
            let zeros = SoftmaxOptions {
                masked_rows: softmax_wgpu::MaskedRows::Zeros,
                ..Default::default()
            };
            for v in Variant::KERNELS {
                if !runs(e, v, shape) {
                    continue;
                }
                let p = e.softmax(&x, shape, &zeros.with_variant(v)).unwrap();
                assert!(p[2 * cols..3 * cols].iter().all(|&p| p == 0.0), "{v}");
                assert!(p[..cols].iter().all(|p| p.is_nan()), "{v}");
                assert!(p[cols..2 * cols].iter().all(|p| p.is_nan()), "{v}");
            }
        });
    }
}

#[test]
fn special_rows_that_share_a_lane() {
    // Rows of 3, 6 and 33 logits, 8, 4 and 8 to a packed lane on CPU adapters (33: windowed,
    // each row's window also reading its neighbours' logits): each row keeps its own NaN,
    // +inf and all -inf, whatever its neighbours in the lane hold.
    for cols in [3, 6, 33] {
        let rows = 16;
        let mut x = random_logits(rows * cols, 5.0, 11);
        x[cols] = f32::NAN;
        x[2 * cols + 1] = INF;
        x[3 * cols..4 * cols].fill(-INF);
        x[4 * cols] = -INF;
        x[5 * cols + 2] = 1e30;
        x[6 * cols + 1] = -1e30;
        x[13 * cols..14 * cols].fill(-INF);
        x[15 * cols + cols - 1] = f32::NAN;
        let shape = Shape::new(rows, cols);
        on_every_tuning(|e| {
            check_variants(e, &x, shape, &SoftmaxOptions::default());
            check_variants(e, &x, shape, &SoftmaxOptions::with_temperature(0.05));
        });
    }
}

#[test]
fn every_variant_in_half_precision() {
    on_every_half_path(|e| {
        for (k, &(rows, cols)) in [(3, 17), (9, 250), (2, 3001)].iter().enumerate() {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), 12.0, 40 + k as u64);
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
            check_variants(e, &h, shape, &SoftmaxOptions::default());
            check_variants(e, &b, shape, &SoftmaxOptions::default());
        }
    });
}

/// Every variant that runs the shape, forced, in f32, f16 (the portable path: no
/// SHADER_F16) and bf16, on a device with exactly WebGPU's default limits and no optional
/// feature (no SUBGROUP): what a browser gives. Shapes: across a block, a workgroup of
/// multi-row, resident and split-row under GPU tuning.
#[test]
fn every_variant_within_webgpu_default_limits() {
    on_default_limits(|e| {
        for (k, &(rows, cols)) in [(3, 17), (9, 250), (2, 3001), (1, 40_000)]
            .iter()
            .enumerate()
        {
            let shape = Shape::new(rows, cols);
            let x = random_logits(shape.len(), 12.0, 70 + k as u64);
            check_variants(e, &x, shape, &SoftmaxOptions::default());
            // The 16-bit types on the short rows only (the long one is f32's: CI's time).
            if cols < 10_000 {
                let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
                let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                check_variants(e, &h, shape, &SoftmaxOptions::default());
                check_variants(e, &b, shape, &SoftmaxOptions::default());
            }
        }
    });
}

#[test]
fn every_variant_in_place_and_at_unaligned_offsets() {
    // Input and output at offsets that differ modulo 8 elements (scalar block loads), and in
    // place (vector loads through the output's binding); rows of 6 logits, which CPU
    // adapters pack only where a dispatch's first row starts a block, so run unpacked here.
    on_every_tuning(|e| {
        for shape in [Shape::new(5, 203), Shape::new(37, 6)] {
            let n = shape.len();
            let x = random_logits(n, 10.0, 3);
            let want = softmax_wgpu::oracle::softmax(&x, shape, &SoftmaxOptions::default());
            let device = e.device();
            let usage = wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC;
            let make = |size: u64| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage,
                    mapped_at_creation: false,
                })
            };
            for v in Variant::KERNELS {
                if !runs(e, v, shape) {
                    continue;
                }
                let options = SoftmaxOptions::default().with_variant(v);
                let input = make(4 * n as u64 + 64);
                let output = make(4 * n as u64 + 64);
                e.queue().write_buffer(&input, 12, bytemuck::cast_slice(&x));
                e.queue()
                    .write_buffer(&output, 20, bytemuck::cast_slice(&x));
                let mut encoder = device.create_command_encoder(&Default::default());
                // Out of place: input at element 3, output at element 9 (2 modulo 8 apart).
                e.record_forward(
                    &mut encoder,
                    &ForwardArgs {
                        op: Forward::Softmax,
                        shape,
                        input: TensorRef::new(&input, DType::F32).at(12),
                        output: Some(TensorRef::new(&output, DType::F32).at(36)),
                        lse: None,
                        options,
                    },
                )
                .unwrap();
                // In place on the output buffer's second copy at element 5.
                let in_place = make(4 * n as u64 + 64);
                e.queue()
                    .write_buffer(&in_place, 20, bytemuck::cast_slice(&x));
                e.record_forward(
                    &mut encoder,
                    &ForwardArgs {
                        op: Forward::Softmax,
                        shape,
                        input: TensorRef::new(&in_place, DType::F32).at(20),
                        output: None,
                        lse: None,
                        options,
                    },
                )
                .unwrap();
                e.queue().submit([encoder.finish()]);
                for (buffer, offset) in [(&output, 36u64), (&in_place, 20)] {
                    let got = common::read_f32(e, buffer, offset, n);
                    let report = softmax_wgpu::accuracy::check(
                        Forward::Softmax,
                        &x,
                        shape,
                        &SoftmaxOptions::default(),
                        &got,
                    );
                    assert!(report.ok(), "{v} at offset {offset}: {report}");
                    assert_eq!(got.len(), want.len());
                }
            }
        }
    });
}

#[test]
fn automatic_choice_follows_the_shape() {
    on_every_tuning(|e| {
        let auto = SoftmaxOptions::default();
        let pick_op = |op, rows, cols| {
            e.forward_variant(op, Shape::new(rows, cols), &auto)
                .unwrap()
        };
        let pick = |rows, cols| pick_op(Forward::Softmax, rows, cols);
        let gpu = e.tuning() == softmax_wgpu::Tuning::Gpu;
        // One long row: cut over many workgroups.
        assert_eq!(pick(1, 262_144), Variant::SplitRow);
        assert_eq!(pick(1, 1 << 20), Variant::SplitRow);
        // Shorter single rows: on GPUs split too; CPU adapters keep rows of up to 131072
        // logits on one workgroup, measured faster than two dispatches there.
        if gpu {
            assert_eq!(pick(1, 32_000), Variant::SplitRow);
        } else {
            assert_eq!(pick(1, 32_000), Variant::Online);
            assert_eq!(pick(1, 131_072), Variant::Online);
            assert_eq!(pick(1, 131_080), Variant::SplitRow);
        }
        // Many short rows: several per workgroup.
        assert_eq!(pick(4096, 64), Variant::MultiRow);
        // With CPU tuning up to 2048 logits (8 lanes of 32 blocks), on GPUs up to 2 blocks
        // per lane (512 logits with subgroups of 32); past them online, measured faster.
        if gpu {
            assert_eq!(pick(4096, 1024), Variant::Online);
            assert_eq!(pick(4096, 4096), Variant::Online);
        } else {
            assert_eq!(pick(4096, 1024), Variant::MultiRow);
            assert_eq!(pick(4096, 2048), Variant::MultiRow);
            // Longer rows up to 8192 logits a lane each, looped, where rows are many
            // enough to give every thread two workgroups; past that, and for few rows, online.
            assert_eq!(pick(4096, 2056), Variant::MultiRow);
            assert_eq!(pick(4096, 8192), Variant::MultiRow);
            assert_eq!(pick(4096, 8200), Variant::Online);
            assert_eq!(pick(2, 4096), Variant::Online);
        }
        // Many rows too long for registers: online.
        assert_eq!(pick(4096, 128_256), Variant::Online);
        let cols = e.resident_cols();
        assert_eq!(pick(4096, cols + 8), Variant::Online);
        // Rows that fit a workgroup's registers but not a subgroup's: on GPUs resident for
        // the operations that write the row, from 4096 logits and 128 rows (one read
        // instead of two, measured faster on the H100); logsumexp reads once anyway and
        // stays online; fewer rows split. On CPU adapters not resident, measured slower.
        if gpu {
            assert!(cols >= 32_000, "{cols}");
            assert_eq!(pick(4096, 4104), Variant::Resident);
            assert_eq!(pick(128, 32_000), Variant::Resident);
            assert_eq!(pick_op(Forward::LogSoftmax, 4096, cols), Variant::Resident);
            assert_eq!(pick_op(Forward::LogSumExp, 4096, 32_000), Variant::Online);
            assert_eq!(pick(64, 32_000), Variant::SplitRow);
            // Past one dispatch dimension of rows the kernels loop over rows: online.
            let past = e.info().limits.max_compute_workgroups_per_dimension as usize + 1;
            assert_eq!(pick(past, 8200), Variant::Online);
        } else {
            // A lane per row, looped (see above): never resident.
            assert_eq!(pick(4096, cols), Variant::MultiRow);
        }
        // Forcing a variant that cannot hold the row is an error that names it.
        let err = e
            .forward_variant(
                Forward::Softmax,
                Shape::new(2, cols + 8),
                &auto.with_variant(Variant::Resident),
            )
            .unwrap_err();
        assert!(err.to_string().contains("resident"), "{err}");
    });
}

#[test]
fn wider_cpu_subgroups_keep_short_rows_multi_row() {
    // llvmpipe at 512 bits (`LP_NATIVE_VECTOR_WIDTH=512`) has subgroups of 16 lanes, as wide
    // as a CPU-tuned workgroup: rows that fit a lane unrolled still go multi-row (they went
    // online, 10 times slower at 4096 x 64), rows a subgroup would hold are looped a lane
    // each instead. Planning only: the engine describes each adapter with 16-lane
    // subgroups, and no kernel runs on that description.
    let mut planned = 0;
    for e in common::engines() {
        if !e.info().features.contains(wgpu::Features::SUBGROUP) {
            continue;
        }
        let mut adapter = e.info().adapter.clone();
        adapter.device_type = wgpu::DeviceType::Cpu;
        adapter.subgroup_min_size = 16;
        adapter.subgroup_max_size = 16;
        let wide = Engine::from_device(
            e.device().clone(),
            e.queue().clone(),
            adapter,
            EngineOptions {
                tuning: softmax_wgpu::Tuning::Cpu,
                ..EngineOptions::default()
            },
        );
        let pick = |rows, cols| {
            wide.forward_variant(
                Forward::Softmax,
                Shape::new(rows, cols),
                &SoftmaxOptions::default(),
            )
            .unwrap()
        };
        let name = &e.info().adapter.name;
        for (rows, cols, want) in [
            (4096, 64, Variant::MultiRow),
            (65536, 100, Variant::MultiRow),
            (4096, 256, Variant::MultiRow),
            (4096, 1024, Variant::MultiRow),
            (4096, 4096, Variant::MultiRow),
            (4096, 8200, Variant::Online),
            (2, 4096, Variant::Online),
        ] {
            assert_eq!(pick(rows, cols), want, "{rows} x {cols} on {name}");
        }
        planned += 1;
    }
    assert!(
        planned > 0,
        "no adapter with SUBGROUP: install Mesa's lavapipe (mesa-vulkan-drivers libvulkan1)"
    );
}

/// Split-row dispatches sized to a cache (`EngineOptions::cache_bytes`, GPU tuning): a batch
/// of 600 rows of 4100 logits, which runs online without it, runs split-row in dispatches of
/// 40 rows, with special rows on both sides of dispatch boundaries; the accuracy contract
/// holds in f32 and f16 for every operation (logsumexp is not split).
#[test]
fn cache_sized_split_row_dispatches() {
    let (rows, cols) = (600, 4100);
    let options = EngineOptions {
        tuning: softmax_wgpu::Tuning::Gpu,
        cache_bytes: 40 * cols as u64 * 4,
        ..Default::default()
    };
    let engines =
        Engine::all_blocking(options).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let mut x = random_logits(rows * cols, 6.0, 11);
    // Rows 39 and 40 straddle the first boundary, 599 ends the last dispatch.
    x[39 * cols + 5] = f32::NAN;
    x[40 * cols..41 * cols].fill(-INF);
    x[80 * cols + 4099] = INF;
    x[599 * cols + 1] = 1e30;
    let shape = Shape::new(rows, cols);
    let x16: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let auto = SoftmaxOptions::default();
    for e in &engines {
        let name = &e.info().adapter.name;
        assert_eq!(e.cache_bytes(), 40 * cols as u64 * 4);
        let pick = |op| e.forward_variant(op, shape, &auto).unwrap();
        assert_eq!(pick(Forward::Softmax), Variant::SplitRow, "{name}");
        assert_eq!(pick(Forward::LogSoftmax), Variant::SplitRow, "{name}");
        assert_eq!(pick(Forward::LogSumExp), Variant::Online, "{name}");
        let plan = e
            .explain_forward(Forward::Softmax, shape, DType::F32, DType::F32, &auto)
            .unwrap()
            .plan;
        assert!(plan.contains("cache of 656000 bytes"), "{name}: {plan}");
        for op in OPS {
            check_forward::<f32, f32>(e, op, &x, shape, &auto);
            check_forward::<f16, f16>(e, op, &x16, shape, &auto);
        }
    }
}
