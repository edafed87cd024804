//! The device-level API: caller's device, buffers with offsets, caller's encoder, in place,
//! several operations in one submission.

mod common;

use common::{on_every_adapter, random_logits};
use softmax_wgpu::{
    accuracy, DType, Engine, EngineOptions, Forward, ForwardArgs, Shape, SoftmaxOptions, TensorRef,
};
use wgpu::util::DeviceExt;

#[test]
fn records_into_the_callers_encoder_with_offsets_and_in_place() {
    on_every_adapter(|e| {
        // The caller's own device, wrapped.
        let engine = Engine::from_device(
            e.device().clone(),
            e.queue().clone(),
            e.info().adapter.clone(),
            EngineOptions::default(),
        );
        let d = engine.device();
        let shape = Shape::new(5, 301);
        let n = shape.len();
        let x = random_logits(n, 9.0, 77);
        let pad = 37usize; // elements before the tensor: an offset that is not binding-aligned
        let mut host = vec![0.0f32; pad];
        host.extend(&x);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let input = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&host),
            usage,
        });
        let inplace = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&host),
            usage,
        });
        let out = d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: ((n + 3) * 4) as u64,
            usage,
            mapped_at_creation: false,
        });
        let lse = d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 64 * 4,
            usage,
            mapped_at_creation: false,
        });
        let o = SoftmaxOptions::with_temperature(1.5);
        let off = (pad * 4) as u64;

        let mut enc = d.create_command_encoder(&Default::default());
        engine
            .record_forward(
                &mut enc,
                &ForwardArgs {
                    op: Forward::Softmax,
                    shape,
                    input: TensorRef::new(&input, DType::F32).at(off),
                    output: Some(TensorRef::new(&out, DType::F32).at(12)),
                    lse: Some(TensorRef::new(&lse, DType::F32).at(20)),
                    options: o,
                },
            )
            .unwrap();
        engine
            .record_forward(
                &mut enc,
                &ForwardArgs {
                    op: Forward::LogSoftmax,
                    shape,
                    input: TensorRef::new(&inplace, DType::F32).at(off),
                    output: None,
                    lse: Some(TensorRef::new(&lse, DType::F32).at(100)),
                    options: o,
                },
            )
            .unwrap();
        engine
            .record_forward(
                &mut enc,
                &ForwardArgs {
                    op: Forward::LogSumExp,
                    shape,
                    input: TensorRef::new(&input, DType::F32).at(off),
                    output: None,
                    lse: Some(TensorRef::new(&lse, DType::F32).at(180)),
                    options: SoftmaxOptions::default(),
                },
            )
            .unwrap();
        engine.queue().submit([enc.finish()]);

        let p = common::read_f32(&engine, &out, 12, n);
        let r = accuracy::check(Forward::Softmax, &x, shape, &o, &p);
        assert!(r.ok(), "softmax at offsets: {r}");
        let l = common::read_f32(&engine, &inplace, off, n);
        let r = accuracy::check(Forward::LogSoftmax, &x, shape, &o, &l);
        assert!(r.ok(), "in place log_softmax: {r}");
        let head = common::read_f32(&engine, &inplace, 0, pad);
        assert!(
            head.iter().all(|&v| v == 0.0),
            "in place wrote outside its tensor"
        );
        let all = common::read_f32(&engine, &lse, 0, 64);
        for (at, opts) in [(5, o), (25, o), (45, SoftmaxOptions::default())] {
            let r = accuracy::check(Forward::LogSumExp, &x, shape, &opts, &all[at..at + 5]);
            assert!(r.ok(), "lse at {at}: {r}");
        }
        // Slots between the three lse outputs were left alone.
        assert!(all[10..25].iter().chain(&all[30..45]).all(|&v| v == 0.0));
    });
}

#[test]
fn packed_half_in_place_with_rows_sharing_words() {
    // cols = 7 and the tensor starting at byte 2: rows start in the middle of 32-bit words,
    // which two workgroups then write; the packed path merges those words atomically. The
    // f16 in front of the tensor shares a word with it and must survive.
    common::on_every_half_path(|e| {
        let d = e.device();
        let shape = Shape::new(33, 7);
        let x: Vec<half::f16> = random_logits(shape.len(), 6.0, 5)
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect();
        let sentinel = half::f16::from_f32(-3.5);
        let mut host = vec![sentinel];
        host.extend(&x);
        host.push(sentinel);
        let mut bytes = bytemuck::cast_slice::<_, u8>(&host).to_vec();
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: &bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        });
        let o = SoftmaxOptions::default();
        let mut enc = d.create_command_encoder(&Default::default());
        e.record_forward(
            &mut enc,
            &ForwardArgs {
                op: Forward::Softmax,
                shape,
                input: TensorRef::new(&buf, DType::F16).at(2),
                output: None,
                lse: None,
                options: o,
            },
        )
        .unwrap();
        e.queue().submit([enc.finish()]);
        let words = common::read_f32(e, &buf, 0, bytes.len() / 4);
        let all: &[half::f16] = bytemuck::cast_slice(&words);
        assert_eq!(
            (all[0], all[shape.len() + 1]),
            (sentinel, sentinel),
            "neighbours overwritten"
        );
        let got = &all[1..=shape.len()];
        let r = accuracy::check(Forward::Softmax, &x, shape, &o, got);
        assert!(r.ok(), "{r}");
        assert_eq!(r.correctly_rounded, r.count, "{r}");
    });
}

/// The bench's copy methods (the `cli` feature): the copy kernel in every word and the
/// transfer, which GPUs also take for the roofline.
#[cfg(feature = "cli")]
#[test]
fn every_copy_method_copies_every_byte() {
    use softmax_wgpu::bench::{CopyMethod, CopyWord};
    on_every_adapter(|e| {
        let words = e.copy_words();
        assert_eq!(words[0], CopyWord::Bytes16);
        let mut methods: Vec<CopyMethod> = words.into_iter().map(CopyMethod::Kernel).collect();
        methods.push(CopyMethod::Transfer);
        let roofline = CopyMethod::all(e);
        let cpu = e.info().adapter.device_type == wgpu::DeviceType::Cpu;
        assert_eq!(
            roofline.contains(&CopyMethod::Transfer),
            !cpu,
            "{roofline:?}"
        );
        let d = e.device();
        // Not a multiple of one workgroup's 256 x 128 bytes, so the last group is partial.
        let n = 3 * 8192 + 40;
        let src: Vec<u32> = (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let x = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&src),
            usage,
        });
        for method in methods {
            let y = d.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: (n * 4) as u64,
                usage,
                mapped_at_creation: false,
            });
            // All but the last 32 bytes: the bytes past `bytes` must stay zero.
            let bytes = (n * 4) as u64 - 32;
            let mut enc = d.create_command_encoder(&Default::default());
            method.record(e, &mut enc, &x, &y, bytes).unwrap();
            e.queue().submit([enc.finish()]);
            let got: Vec<u32> = common::read_f32(e, &y, 0, n)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let copied = (bytes / 4) as usize;
            assert_eq!(got[..copied], src[..copied], "{method}");
            assert!(
                got[copied..].iter().all(|&v| v == 0),
                "{method} wrote past the end"
            );
            // A size that is not a whole number of words (of 4 bytes for the transfer) is
            // refused, and so is one past the buffers.
            for bad in [bytes - 2, (n * 4) as u64 + 32] {
                let mut enc = d.create_command_encoder(&Default::default());
                let err = method.record(e, &mut enc, &x, &y, bad).unwrap_err();
                assert!(err.to_string().contains("multiple"), "{method}: {err}");
            }
        }
    });
}

/// The bench's exp ceilings (the `cli` feature).
#[cfg(feature = "cli")]
#[test]
fn the_exp_ceiling_computes_every_exponential_and_the_sum_writes_nothing() {
    use softmax_wgpu::bench::CopyKind;
    // Both f16 paths: the ceiling converts f16 as the kernels do, by the builtins or by bits.
    common::on_every_half_path(|e| {
        let d = e.device();
        // Logits in [-8, 8), not a multiple of one workgroup's 256 x 128 bytes.
        let n = 3 * 8192 + 44;
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            // The logits as the dtype holds them, and their bytes.
            let (x, raw): (Vec<f32>, Vec<u8>) = {
                let x = random_logits(n, 8.0, 11);
                match dtype {
                    DType::F32 => (x.clone(), bytemuck::cast_slice(&x).to_vec()),
                    DType::F16 => {
                        let h: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
                        let x = h.iter().map(|v| v.to_f32()).collect();
                        (x, bytemuck::cast_slice(&h).to_vec())
                    }
                    DType::BF16 => {
                        let h: Vec<half::bf16> =
                            x.iter().map(|&v| half::bf16::from_f32(v)).collect();
                        let x = h.iter().map(|v| v.to_f32()).collect();
                        (x, bytemuck::cast_slice(&h).to_vec())
                    }
                }
            };
            let size = raw.len() as u64;
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let src = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &raw,
                usage,
            });
            // The rounding of the result to the dtype: half a unit in its last place (a
            // significand of 23, 10 or 7 bits); exact exp is not representable.
            let mantissa_bits = match dtype {
                DType::F32 => 23,
                DType::F16 => 10,
                DType::BF16 => 7,
            };
            for word in e.copy_words() {
                for kind in [CopyKind::Exp(dtype), CopyKind::ExpSum(dtype)] {
                    let dst = d.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size,
                        usage,
                        mapped_at_creation: false,
                    });
                    let bytes = size / word.bytes() * word.bytes();
                    let mut enc = d.create_command_encoder(&Default::default());
                    e.record_copy_kind(&mut enc, &src, &dst, bytes, word, kind)
                        .unwrap();
                    e.queue().submit([enc.finish()]);
                    let words = common::read_f32(e, &dst, 0, (size / 4) as usize);
                    let got: Vec<f32> = match dtype {
                        DType::F32 => words,
                        DType::F16 => bytemuck::cast_slice::<f32, half::f16>(&words)
                            .iter()
                            .map(|v| v.to_f32())
                            .collect(),
                        DType::BF16 => bytemuck::cast_slice::<f32, half::bf16>(&words)
                            .iter()
                            .map(|v| v.to_f32())
                            .collect(),
                    };
                    let done = (bytes / dtype.size()) as usize;
                    if kind == CopyKind::ExpSum(dtype) {
                        assert!(
                            got.iter().all(|&v| v == 0.0),
                            "{word} {dtype:?}: the sum wrote"
                        );
                        continue;
                    }
                    for (i, (&g, &z)) in got[..done].iter().zip(&x).enumerate() {
                        let want = f64::from(z).exp();
                        let binade = want.log2().floor() as i32;
                        // WGSL's bound for exp in f32: 3 + 2|x| ULP of the result; then the
                        // rounding to the dtype, half of its ULP (none for f32).
                        let exp_error = (3.0 + 2.0 * f64::from(z.abs())) * 2f64.powi(binade - 23);
                        let rounding = if dtype == DType::F32 {
                            0.0
                        } else {
                            0.5 * 2f64.powi(binade - mantissa_bits)
                        };
                        let err = (f64::from(g) - want).abs();
                        assert!(
                            err <= exp_error + rounding,
                            "{word} {dtype:?}: exp({z}) = {g}, want {want} (element {i})"
                        );
                    }
                    assert!(
                        got[done..].iter().all(|&v| v == 0.0),
                        "{word} {dtype:?} wrote past the end"
                    );
                }
            }
        }
    });
}
