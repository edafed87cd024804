//! Bad input gets a clear error, never a panic or a wrong result.

mod common;

use common::on_every_adapter;
use softmax_wgpu::{DType, Error, Forward, ForwardArgs, Shape, SoftmaxOptions, TensorRef};

#[test]
fn bad_shapes_and_temperatures() {
    on_every_adapter(|e| {
        let o = SoftmaxOptions::default();
        let x = [1.0f32; 6];
        assert!(matches!(
            e.softmax(&x, Shape::new(2, 4), &o),
            Err(Error::ShapeMismatch {
                got: 6,
                expected: 8,
                ..
            })
        ));
        assert!(matches!(
            e.softmax(&x[..0], Shape::new(0, 3), &o),
            Err(Error::InvalidShape { .. })
        ));
        assert!(matches!(
            e.log_softmax(&x[..0], Shape::new(3, 0), &o),
            Err(Error::InvalidShape { .. })
        ));
        for t in [
            0.0f32,
            -1.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-45,
        ] {
            let r = e.softmax(&x, Shape::new(2, 3), &SoftmaxOptions::with_temperature(t));
            match r {
                Err(Error::InvalidTemperature { value }) => {
                    assert!(value.to_bits() == t.to_bits());
                    let msg = Error::InvalidTemperature { value }.to_string();
                    assert!(msg.contains(&format!("{t}")), "{msg}");
                }
                other => panic!("temperature {t}: {other:?}"),
            }
        }
    });
}

#[test]
fn bad_device_arguments() {
    on_every_adapter(|e| {
        let d = e.device();
        let mk = |size, usage| {
            d.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let storage = mk(64, wgpu::BufferUsages::STORAGE);
        let uniform_only = mk(64, wgpu::BufferUsages::UNIFORM);
        let small = mk(16, wgpu::BufferUsages::STORAGE);
        let lse = mk(16, wgpu::BufferUsages::STORAGE);
        let mut enc = d.create_command_encoder(&Default::default());
        let args = |input, output, lse| ForwardArgs {
            op: Forward::Softmax,
            shape: Shape::new(2, 8),
            input,
            output,
            lse,
            options: SoftmaxOptions::default(),
        };
        let t = |b| TensorRef::new(b, DType::F32);
        let r = e.record_forward(&mut enc, &args(t(&uniform_only), None, None));
        assert!(
            matches!(r, Err(Error::InvalidBuffer { what: "input", .. })),
            "{r:?}"
        );
        let r = e.record_forward(&mut enc, &args(t(&small), None, None));
        assert!(
            matches!(r, Err(Error::InvalidBuffer { what: "input", .. })),
            "{r:?}"
        );
        let r = e.record_forward(&mut enc, &args(t(&storage).at(2), None, None));
        assert!(matches!(r, Err(Error::InvalidBuffer { .. })), "{r:?}");
        let r = e.record_forward(&mut enc, &args(t(&storage), Some(t(&storage).at(4)), None));
        assert!(
            matches!(r, Err(Error::InvalidBuffer { what: "output", .. })),
            "partial overlap: {r:?}"
        );
        let r = e.record_forward(
            &mut enc,
            &args(t(&storage), None, Some(TensorRef::new(&lse, DType::F16))),
        );
        assert!(matches!(r, Err(Error::UnsupportedDType { .. })), "{r:?}");
        let mut lse_args = args(t(&storage), None, None);
        lse_args.op = Forward::LogSumExp;
        assert!(matches!(
            e.record_forward(&mut enc, &lse_args),
            Err(Error::InvalidBuffer { what: "lse", .. })
        ));
        // Nothing was recorded: the encoder is still valid.
        e.queue().submit([enc.finish()]);
    });
}

/// `Engine::read_buffer` reads what was written, at an offset and for a count that is not a
/// whole word, and refuses misaligned offsets, reads past the end and buffers it cannot copy.
#[test]
fn read_buffer_reads_back_and_refuses_bad_arguments() {
    on_every_adapter(|e| {
        let buffer = |usage| {
            e.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 64,
                usage: usage | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let b = buffer(wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
        let values: Vec<u16> = (0..32).map(|i| i * 1000 + 7).collect();
        e.queue().write_buffer(&b, 0, bytemuck::cast_slice(&values));
        assert_eq!(e.read_buffer::<u16>(&b, 8, 5).unwrap(), values[4..9]);
        assert_eq!(e.read_buffer::<u16>(&b, 0, 0).unwrap(), Vec::<u16>::new());
        let refused = |r: softmax_wgpu::Result<Vec<u16>>, needle: &str| match r {
            Err(Error::InvalidBuffer { reason, .. }) => {
                assert!(reason.contains(needle), "{reason} should say {needle}")
            }
            other => panic!("expected InvalidBuffer ({needle}), got {other:?}"),
        };
        refused(e.read_buffer(&b, 2, 2), "multiple of 4");
        refused(e.read_buffer(&b, 60, 4), "the buffer has 64");
        refused(
            e.read_buffer(&buffer(wgpu::BufferUsages::STORAGE), 0, 4),
            "COPY_SRC",
        );
    });
}
