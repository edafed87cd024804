//! Embedding: the caller's own device, buffers and compute pass, with a softmax recorded in
//! place into the same command encoder, then one submission and a read-back checked against
//! the f64 oracle.
//!
//! `cargo run --release --example embed`

use softmax_wgpu::{
    accuracy, wgpu, DType, Engine, EngineOptions, Forward, ForwardArgs, Shape, SoftmaxOptions,
    TensorRef,
};

/// The caller's own kernel, standing in for the layer that produces logits: `x = 2 x`
/// (exact in f32, so the check below can compute the same logits on the CPU).
const SCALE_SHADER: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&x)) { x[id.x] = 2.0 * x[id.x]; }
}";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    softmax_wgpu::quiet_headless_vulkan();
    // 1. The application's own device, made without the crate.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    // Honours WGPU_ADAPTER_NAME (and WGPU_BACKEND, through the instance).
    let adapter = pollster::block_on(wgpu::util::initialize_adapter_from_env_or_default(
        &instance, None,
    ))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("application device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))?;
    println!(
        "adapter: {:?} ({:?})",
        adapter.get_info().name,
        adapter.get_info().backend
    );

    // 2. The engine borrows it: pipelines are built on the caller's device and cached.
    let engine = Engine::from_device(
        device.clone(),
        queue.clone(),
        adapter.get_info(),
        EngineOptions::default(),
    );

    // 3. The application's buffers: logits (STORAGE is all the engine needs), per-row
    //    logsumexp, and a buffer to read the probabilities back.
    let shape = Shape::new(64, 50_257);
    let host: Vec<f32> = (0..shape.len())
        .map(|i| ((i as f32 * 0.754_877_7).fract() - 0.5) * 12.0)
        .collect();
    let bytes = (shape.len() * 4) as u64;
    let storage = |label, size| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    };
    let logits = storage("logits", bytes);
    let lse = storage("lse", shape.rows as u64 * 4);
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&logits, 0, bytemuck::cast_slice(&host));

    // 4. One encoder: the application's pass, then the softmax in place, then a copy.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("scale"),
        source: wgpu::ShaderSource::Wgsl(SCALE_SHADER.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("scale"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("scale"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: logits.as_entire_binding(),
        }],
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups((shape.len() as u32).div_ceil(64), 1, 1);
    }
    engine.record_forward(
        &mut encoder,
        &ForwardArgs {
            op: Forward::Softmax,
            shape,
            input: TensorRef::new(&logits, DType::F32),
            output: None, // in place: the probabilities overwrite the logits
            lse: Some(TensorRef::new(&lse, DType::F32)),
            options: SoftmaxOptions::default(),
        },
    )?;
    encoder.copy_buffer_to_buffer(&logits, 0, &readback, 0, bytes);
    queue.submit([encoder.finish()]);

    // 5. Read back and check against the oracle, on what the application's pass computed.
    let slice = readback.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv()??;
    let probs: Vec<f32> = bytemuck::cast_slice(&slice.get_mapped_range()?).to_vec();
    readback.unmap();

    let scaled: Vec<f32> = host.iter().map(|&v| 2.0 * v).collect();
    let report = accuracy::check(
        Forward::Softmax,
        &scaled,
        shape,
        &SoftmaxOptions::default(),
        &probs,
    );
    let row0: f64 = probs[..shape.cols].iter().map(|&p| f64::from(p)).sum();
    println!(
        "softmax of {} x {} logits, in place after the application's own pass",
        shape.rows, shape.cols
    );
    println!("  row 0 sums to {row0}");
    println!("  against the f64 oracle: {report}");
    if !report.ok() {
        return Err("accuracy contract violated".into());
    }
    Ok(())
}
