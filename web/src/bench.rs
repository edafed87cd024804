//! The browser benchmark: one forward operation beside the crate's copy kernel over the same
//! bytes, timed in alternation with the page's clock (`performance.now()` around submit and
//! `onSubmittedWorkDone`), as the native bench does with its stopwatch.
//!
//! Throughput counts the bytes the operation must move at least: the logits read and the
//! output written (the `rows` logsumexp values for logsumexp). The copy moves as many bytes,
//! half read and half written.

use js_sys::{Array, Object, Reflect};
use serde::Deserialize;
use softmax_wgpu::{
    median, scoped, wgpu, CopyWord, DType, Element, Engine, Forward, ForwardArgs, Shape,
    SoftmaxOptions, TensorRef,
};
use wasm_bindgen::prelude::*;

use crate::convert::{by_dtype, js_error, to_f32_js};
use crate::options::{dtype, forward_op, parse};

#[wasm_bindgen]
extern "C" {
    /// The page's (or worker's) monotonic clock, in milliseconds.
    #[wasm_bindgen(js_namespace = performance, js_name = now)]
    fn performance_now() -> f64;
}

/// `Engine.bench`'s options.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BenchOpts {
    op: String,
    rows: u32,
    cols: u32,
    #[serde(default)]
    dtype: Option<String>,
    #[serde(default)]
    runs: Option<u32>,
}

/// Runs the benchmark `options` describe (see `Engine.bench`).
pub async fn run(engine: &Engine, options: JsValue) -> Result<JsValue, JsValue> {
    let fields = ["op", "rows", "cols", "dtype", "runs"];
    let o: BenchOpts = parse(options, "bench", &fields)?;
    let op = forward_op(&o.op)?;
    let shape = Shape::new(o.rows as usize, o.cols as usize);
    let runs = o.runs.unwrap_or(5).clamp(1, 50) as usize;
    by_dtype!(dtype(o.dtype.as_deref())?, T => run_in::<T>(engine, op, shape, runs).await)
}

/// Deterministic logits in [-8, 8) (the native bench's xorshift generator).
fn bench_logits(n: usize) -> impl Iterator<Item = f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n).map(move |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
    })
}

async fn run_in<T: Element>(
    engine: &Engine,
    op: Forward,
    shape: Shape,
    runs: usize,
) -> Result<JsValue, JsValue> {
    let n = shape.rows.checked_mul(shape.cols).ok_or_else(|| {
        js_error(format!(
            "bench: {} x {} logits overflow",
            shape.rows, shape.cols
        ))
    })?;
    let device = engine.device();
    let io_bytes = T::DTYPE.buffer_bytes(n as u64);
    // Refused before the logits are made: a shape past the device's buffers would exhaust
    // the page's memory first.
    let max = device.limits().max_buffer_size;
    if io_bytes > max {
        return Err(js_error(format!(
            "bench: {} x {} logits need {io_bytes} bytes; the device's buffers hold {max}",
            shape.rows, shape.cols
        )));
    }
    let options = SoftmaxOptions::default();
    let variant = engine
        .forward_variant(op, shape, &options)
        .map_err(js_error)?;
    let logits: Vec<T> = bench_logits(n).map(T::from_f32).collect();
    let lse_bytes = 4 * shape.rows as u64;
    let out_bytes = match op {
        Forward::LogSumExp => lse_bytes,
        _ => T::DTYPE.size() * n as u64,
    };
    let bytes = T::DTYPE.size() * n as u64 + out_bytes;
    let copy_bytes = (bytes / 2).div_ceil(16) * 16;
    let buffer = |size: u64, usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("softmax-wgpu-web bench"),
            size: size.div_ceil(16) * 16,
            usage,
            mapped_at_creation: false,
        })
    };
    let storage = wgpu::BufferUsages::STORAGE;
    let readable = storage | wgpu::BufferUsages::COPY_SRC;
    let (bufs, caught) = scoped(device, || {
        let input = buffer(io_bytes, storage | wgpu::BufferUsages::COPY_DST);
        let mut padded: Vec<u8> = bytemuck::cast_slice(&logits).to_vec();
        padded.resize(padded.len().div_ceil(4) * 4, 0);
        engine.queue().write_buffer(&input, 0, &padded);
        let output = (op != Forward::LogSumExp).then(|| buffer(io_bytes, readable));
        let lse = buffer(lse_bytes, readable);
        let copy_src = buffer(copy_bytes, storage);
        let copy_dst = buffer(copy_bytes, storage);
        (input, output, lse, copy_src, copy_dst)
    });
    caught.await.map_err(js_error)?;
    let (input, output, lse, copy_src, copy_dst) = bufs;
    let record_op = |encoder: &mut wgpu::CommandEncoder| {
        engine.record_forward(
            encoder,
            &ForwardArgs {
                op,
                shape,
                input: TensorRef::new(&input, T::DTYPE),
                output: output.as_ref().map(|b| TensorRef::new(b, T::DTYPE)),
                lse: Some(TensorRef::new(&lse, DType::F32)),
                options,
            },
        )
    };
    let record_copy = |encoder: &mut wgpu::CommandEncoder| {
        engine.record_copy(encoder, &copy_src, &copy_dst, copy_bytes, CopyWord::Bytes16)
    };
    // Compiled and warm before they are timed.
    for _ in 0..2 {
        time(engine, record_copy).await?;
        time(engine, record_op).await?;
    }
    let (mut op_s, mut copy_s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let c = time(engine, record_copy).await?;
        let t = time(engine, record_op).await?;
        copy_s.push(c);
        op_s.push(t);
        ratios.push(c / t);
    }
    let seconds = median(&op_s);
    let copy_seconds = median(&copy_s);
    // A few rows of logits and results, for the page to check against its own reference.
    let checked = Array::new();
    let mut rows = vec![0, shape.rows / 2, shape.rows - 1];
    rows.dedup();
    for r in rows {
        let row = Object::new();
        Reflect::set(&row, &"row".into(), &(r as u32).into())?;
        let x = &logits[r * shape.cols..(r + 1) * shape.cols];
        Reflect::set(&row, &"logits".into(), &to_f32_js(x))?;
        let values: JsValue = match &output {
            Some(out) => to_f32_js(&read_row::<T>(engine, out, r, shape.cols).await?).into(),
            None => {
                let v: Vec<f32> = engine
                    .read_buffer_async(&lse, 4 * r as u64, 1)
                    .await
                    .map_err(js_error)?;
                js_sys::Float32Array::from(&v[..]).into()
            }
        };
        Reflect::set(&row, &"values".into(), &values)?;
        checked.push(&row);
    }
    let out = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
    set("variant", variant.name().into())?;
    set("seconds", seconds.into())?;
    set("copySeconds", copy_seconds.into())?;
    set("gbps", (bytes as f64 / seconds / 1e9).into())?;
    set(
        "copyGbps",
        ((2 * copy_bytes) as f64 / copy_seconds / 1e9).into(),
    )?;
    set("ratio", median(&ratios).into())?;
    set("checked", checked.into())?;
    Ok(out.into())
}

/// Row `r` of `[rows, cols]` elements of `T` in `buffer`, read from the word it starts in.
async fn read_row<T: Element>(
    engine: &Engine,
    buffer: &wgpu::Buffer,
    r: usize,
    cols: usize,
) -> Result<Vec<T>, JsValue> {
    let per_word = 4 / T::DTYPE.size() as usize;
    let start = r * cols;
    let lead = start % per_word;
    let v: Vec<T> = engine
        .read_buffer_async(buffer, ((start - lead) * 4 / per_word) as u64, cols + lead)
        .await
        .map_err(js_error)?;
    Ok(v[lead..].to_vec())
}

/// Seconds from submitting `record`'s work to the queue's report that it is done.
async fn time(
    engine: &Engine,
    record: impl FnOnce(&mut wgpu::CommandEncoder) -> softmax_wgpu::Result<()>,
) -> Result<f64, JsValue> {
    let device = engine.device();
    let ((recorded, start), caught) = scoped(device, || {
        let mut encoder = device.create_command_encoder(&Default::default());
        let recorded = record(&mut encoder);
        let start = performance_now();
        engine.queue().submit([encoder.finish()]);
        (recorded, start)
    });
    recorded.map_err(js_error)?;
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    engine.queue().on_submitted_work_done(move || {
        let _ = tx.send(());
    });
    rx.receive().await;
    let end = performance_now();
    caught.await.map_err(js_error)?;
    Ok((end - start) / 1e3)
}
