//! A lost device gives `Error::DeviceLost` from every entry point, never a panic, a hang or
//! a misleading error; an engine on a caller's device, which does not own the device's
//! lost callback, fails cleanly without naming the loss, and so does one made on a device
//! already lost. The loss is real: each adapter's device is destroyed
//! (`wgpu::Device::destroy`, the one loss a test can cause on purpose).

use softmax_wgpu::Stopwatch;
use softmax_wgpu::{
    CrossEntropyOptions, DType, Engine, EngineOptions, Error, Forward, ForwardArgs, Shape,
    SoftmaxOptions, TensorRef,
};

/// `r` is `DeviceLost` and names the reason wgpu gave: the destruction.
fn assert_lost<T: std::fmt::Debug>(what: &str, r: softmax_wgpu::Result<T>) {
    match r {
        Err(Error::DeviceLost(msg)) => assert!(msg.starts_with("Destroyed"), "{what}: {msg}"),
        other => panic!("{what}: expected DeviceLost, got {other:?}"),
    }
}

#[test]
fn every_entry_point_reports_a_destroyed_device() {
    // Fresh engines (their devices are destroyed), not the shared ones of tests/common.
    let engines = Engine::all_blocking(EngineOptions::default())
        .unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    for e in engines {
        let name = format!("{} ({:?})", e.info().adapter.name, e.info().adapter.backend);
        let shape = Shape::new(2, 40);
        let x: Vec<f32> = (0..80).map(|i| i as f32 * 0.25).collect();
        let options = SoftmaxOptions::default();
        // A working device first, so that pooled buffers and pipelines exist.
        e.softmax(&x, shape, &options)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        let buffer = e.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 80 * 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let stopwatch = Stopwatch::new(&e);
        // An embedder's engine on the same device: it does not own the device's lost
        // callback, so it cannot name the loss, but it must still fail cleanly.
        let embedded = Engine::from_device(
            e.device().clone(),
            e.queue().clone(),
            e.info().adapter.clone(),
            EngineOptions::default(),
        );

        e.device().destroy();

        let named = |what: &str| format!("{name}: {what}");
        assert_lost(&named("softmax"), e.softmax(&x, shape, &options));
        assert_lost(&named("softmax again"), e.softmax(&x, shape, &options));
        assert_lost(&named("logsumexp"), e.logsumexp(&x, shape, &options));
        assert_lost(
            &named("cross_entropy"),
            e.cross_entropy(&x, &[1, 2], shape, &CrossEntropyOptions::default(), true),
        );
        assert_lost(
            &named("softmax_backward"),
            e.softmax_backward(false, &x, &x, shape),
        );
        let mut encoder = e.device().create_command_encoder(&Default::default());
        let args = ForwardArgs {
            op: Forward::Softmax,
            shape,
            input: TensorRef::new(&buffer, DType::F32),
            output: None,
            lse: None,
            options,
        };
        assert_lost(
            &named("record_forward"),
            e.record_forward(&mut encoder, &args),
        );
        assert_lost(&named("stopwatch"), stopwatch.time(&e, |_| Ok(())));
        for attempt in ["first", "second"] {
            let r = embedded.softmax(&x, shape, &options);
            assert!(
                r.is_err(),
                "{name}: embedded softmax, {attempt} time: {r:?}"
            );
        }
        // An engine made on the lost device: its start-up probe of the f16 builtins fails
        // quietly (counted inexact) and its operations fail.
        let late = Engine::from_device(
            e.device().clone(),
            e.queue().clone(),
            e.info().adapter.clone(),
            EngineOptions::default(),
        );
        let r = late.softmax(&x, shape, &options);
        assert!(r.is_err(), "{name}: softmax on an engine made late: {r:?}");
    }
}
