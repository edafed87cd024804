//! `softmax-wgpu bench`: a sweep of operations, dtypes and shapes, each timed against the
//! fastest copy of the same bytes in alternation (`softmax_wgpu::bench::measure`); a table,
//! JSON and an SVG plot.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;
use softmax_wgpu::bench::{
    device_copy, measure, BenchOp, Case, CopyMethod, DeviceCopy, Measurement, Settings,
};
use softmax_wgpu::{DType, Engine, Shape, SoftmaxOptions, Variant};

#[derive(Args)]
pub struct BenchCmd {
    /// Row counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32, 256])]
    rows: Vec<usize>,
    /// Vocabulary sizes (comma-separated); one row also runs 1048576.
    #[arg(long, value_delimiter = ',', default_values_t = [32_000usize, 128_256, 262_144])]
    cols: Vec<usize>,
    /// Exact shapes instead of rows x cols, as ROWSxCOLS (comma-separated: 1x1048576,256x32000).
    #[arg(long, value_delimiter = ',', value_parser = parse_shape, conflicts_with_all = ["rows", "cols"])]
    shapes: Vec<Shape>,
    /// Dtypes: f32, f16, bf16 (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = ["f32".to_string(), "f16".to_string()])]
    dtype: Vec<String>,
    /// Operations: softmax, log-softmax, logsumexp, cross-entropy (with its gradient),
    /// softmax-backward, log-softmax-backward (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = BenchOp::ALL.map(|op| op.name().to_string()))]
    op: Vec<String>,
    /// Kernel variant of the forward operations: auto, resident, online, split-row, multi-row.
    #[arg(long, default_value = "auto")]
    variant: Variant,
    /// Timed runs per case (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Skip timing the f64 CPU oracle.
    #[arg(long)]
    no_cpu: bool,
    /// MiB the device's copy bandwidth is measured over, once before the cases (0: not at all).
    #[arg(long, default_value_t = 512)]
    device_copy_mib: u64,
    /// Write the records as JSON here (rewritten after every case).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw GB/s against cols as SVG here.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// One line of `--json`.
#[derive(Serialize)]
struct Record {
    adapter: String,
    op: &'static str,
    dtype: &'static str,
    rows: usize,
    cols: usize,
    variant: &'static str,
    batch_invariant: bool,
    cache_bytes: u64,
    clock: String,
    bytes: u64,
    copy_method: &'static str,
    copy_word_bytes: u64,
    seconds: f64,
    gbps: f64,
    copy_seconds: f64,
    copy_gbps: f64,
    copy_spread: f64,
    attempts: usize,
    ratio_to_copy: f64,
    device_copy_gbps: Option<f64>,
    ratio_to_device_copy: Option<f64>,
    ceiling_seconds: Option<f64>,
    ceiling: Option<f64>,
    two_pass_bound: Option<f64>,
    cpu_seconds: Option<f64>,
    speedup_over_cpu: Option<f64>,
}

impl Record {
    fn new(engine: &Engine, device: Option<&DeviceCopy>, m: &Measurement) -> Self {
        Record {
            adapter: engine.info().adapter.name.clone(),
            batch_invariant: engine.batch_invariant(),
            cache_bytes: engine.cache_bytes(),
            op: m.case.op.name(),
            dtype: dtype_name(m.case.dtype),
            rows: m.case.shape.rows,
            cols: m.case.shape.cols,
            variant: variant_name(m.variant),
            clock: m.clock.to_string(),
            bytes: m.case.bytes(),
            copy_method: m.copy_method.name(),
            copy_word_bytes: m.copy_word.bytes(),
            seconds: m.seconds,
            gbps: m.gbps,
            copy_seconds: m.copy_seconds,
            copy_gbps: m.copy_gbps,
            copy_spread: m.copy_spread,
            attempts: m.attempts,
            ratio_to_copy: m.ratio_to_copy,
            device_copy_gbps: device.map(|d| d.gbps),
            ratio_to_device_copy: device.map(|d| m.gbps / d.gbps),
            ceiling_seconds: m.ceiling_seconds,
            ceiling: m.ceiling,
            two_pass_bound: m.two_pass_bound,
            cpu_seconds: m.cpu_seconds,
            speedup_over_cpu: m.speedup_over_cpu(),
        }
    }
}

fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
    }
}

fn parse_op(s: &str) -> Result<BenchOp, String> {
    BenchOp::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = BenchOp::ALL.iter().map(|op| op.name()).collect();
        format!("unknown op {s:?}; use {}", names.join(", "))
    })
}

/// `op dtype ROWSxCOLS`.
fn case_name(case: &Case) -> String {
    let (op, dtype) = (case.op.name(), dtype_name(case.dtype));
    format!("{op} {dtype} {}x{}", case.shape.rows, case.shape.cols)
}

fn variant_name(v: Option<Variant>) -> &'static str {
    v.map_or("-", Variant::name)
}

/// `ROWSxCOLS`, both positive.
fn parse_shape(s: &str) -> Result<Shape, String> {
    let bad = || format!("shape {s:?}: use ROWSxCOLS, for example 256x32000");
    let (rows, cols) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let rows: usize = rows.trim().parse().map_err(|_| bad())?;
    let cols: usize = cols.trim().parse().map_err(|_| bad())?;
    if rows == 0 || cols == 0 {
        return Err(format!("shape {s:?}: rows and cols must be positive"));
    }
    Ok(Shape::new(rows, cols))
}

fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        _ => Err(format!("unknown dtype {s:?}; use f32, f16 or bf16")),
    }
}

/// The cases of `cmd`: every shape (`--shapes`, or rows x cols with one row also of 1048576
/// logits), dtype and operation.
fn cases(cmd: &BenchCmd) -> Result<Vec<Case>, String> {
    let ops = cmd
        .op
        .iter()
        .map(|s| parse_op(s))
        .collect::<Result<Vec<_>, _>>()?;
    let dtypes = cmd
        .dtype
        .iter()
        .map(|s| parse_dtype(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut shapes = cmd.shapes.clone();
    for &rows in cmd.rows.iter().filter(|_| cmd.shapes.is_empty()) {
        for &cols in &cmd.cols {
            shapes.push(Shape::new(rows, cols));
        }
        if rows == 1 && !cmd.cols.contains(&(1 << 20)) {
            shapes.push(Shape::new(1, 1 << 20));
        }
    }
    let mut cases = Vec::new();
    for &shape in &shapes {
        for &dtype in &dtypes {
            for &op in &ops {
                cases.push(Case {
                    op,
                    dtype,
                    shape,
                    options: SoftmaxOptions::default().with_variant(cmd.variant),
                });
            }
        }
    }
    Ok(cases)
}

pub fn run(engine: &Engine, cmd: &BenchCmd) -> Result<(), String> {
    let cases = cases(cmd)?;
    let adapter = engine.info().adapter.name.clone();
    eprintln!("adapter: {}", engine.info());
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").map_err(|e| e.to_string())?,
    );
    let settings = Settings {
        runs: cmd.runs.max(1),
        cpu_runs: usize::from(!cmd.no_cpu),
        ..Settings::default()
    };
    let device = if cmd.device_copy_mib > 0 {
        bar.set_message(format!("device copy over {} MiB", cmd.device_copy_mib));
        Some(device_copy(engine, cmd.device_copy_mib, &settings).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut results: Vec<Measurement> = Vec::new();
    let mut records: Vec<Record> = Vec::new();
    for case in &cases {
        bar.set_message(case_name(case));
        let m = measure(engine, case, &settings).map_err(|e| e.to_string())?;
        records.push(Record::new(engine, device.as_ref(), &m));
        results.push(m);
        // Written after every case, so that a bench stopped early keeps what it measured.
        if let Some(path) = &cmd.json {
            let text = serde_json::to_string_pretty(&records).map_err(|e| e.to_string())?;
            write_atomic(path, text.as_bytes())?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    print_table(engine, device.as_ref(), &settings, &results);
    if let Some(path) = &cmd.plot {
        plot(path, &records, &adapter)?;
    }
    Ok(())
}

/// The table of `results`, with the clock, the device's copy, the roofline's method and
/// spread per case and what the ceiling columns are.
fn print_table(
    engine: &Engine,
    device: Option<&DeviceCopy>,
    settings: &Settings,
    results: &[Measurement],
) {
    println!(
        "{:<20} {:<5} {:>6} {:>8} {:<10} {:>10} {:>8} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "op",
        "dtype",
        "rows",
        "cols",
        "variant",
        "median",
        "GB/s",
        "copy GB/s",
        "ratio",
        "ceiling",
        "2-pass",
        "vs CPU"
    );
    for m in results {
        println!(
            "{:<20} {:<5} {:>6} {:>8} {:<10} {:>8.3}ms {:>8.2} {:>9.2} {:>7.3} {:>7} {:>7} {:>8}",
            m.case.op.name(),
            dtype_name(m.case.dtype),
            m.case.shape.rows,
            m.case.shape.cols,
            variant_name(m.variant),
            m.seconds * 1e3,
            m.gbps,
            m.copy_gbps,
            m.ratio_to_copy,
            m.ceiling.map_or("-".to_string(), |c| format!("{c:.3}")),
            m.two_pass_bound
                .map_or("-".to_string(), |c| format!("{c:.3}")),
            m.speedup_over_cpu()
                .map_or("-".to_string(), |s| format!("{s:.1}x"))
        );
    }
    println!(
        "clock: {}",
        results.first().map_or("-".into(), |m| m.clock.to_string())
    );
    if let Some(d) = device {
        println!(
            "device copy: {:.2} GB/s over {} MiB ({}, spread {:.1}%)",
            d.gbps,
            d.bytes >> 20,
            d.method,
            100.0 * d.spread
        );
    }
    // The roofline of each case is the fastest copy method over its warm-up.
    let mut methods: Vec<String> = Vec::new();
    for method in CopyMethod::all(engine) {
        let n = results.iter().filter(|m| m.copy_method == method).count();
        if n > 0 {
            methods.push(format!("{method} in {n} of {} cases", results.len()));
        }
    }
    println!("copy roofline: {}", methods.join(", "));
    let spreads: Vec<f64> = results.iter().map(|m| m.copy_spread).collect();
    let wide: Vec<String> = results
        .iter()
        .filter(|m| m.copy_spread > settings.max_spread)
        .map(|m| format!("{} ({:.0}%)", case_name(&m.case), 100.0 * m.copy_spread))
        .collect();
    println!(
        "copy spread over runs (slowest - fastest) / median: median {:.1}%, max {:.1}%; \
         above {:.0}% after {} attempts: {}",
        100.0 * softmax_wgpu::bench::median(&spreads),
        100.0 * spreads.iter().copied().fold(0.0, f64::max),
        100.0 * settings.max_spread,
        settings.attempts,
        if wide.is_empty() {
            "none".to_string()
        } else {
            wide.join(", ")
        }
    );
    println!(
        "ceiling: ratio to copy of an element-wise exp over the same logits in their dtype \
         (summed for logsumexp), the least work of the operation without reduction or second \
         read (none for the backward operations); 2-pass: ratio to copy of that exp plus \
         logsumexp's ceiling over the same logits, the ceiling of a kernel that reads each row \
         twice (online, split-row)"
    );
}

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension(format!("partial-{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

/// GB/s against cols (log scale) for the largest row count of the sweep: one line per op and
/// dtype, and the roofline copy dashed.
fn plot(path: &std::path::Path, records: &[Record], adapter: &str) -> Result<(), String> {
    let rows = records.iter().map(|r| r.rows).max().unwrap_or(1);
    let mine: Vec<&Record> = records.iter().filter(|r| r.rows == rows).collect();
    if mine.is_empty() {
        return Err("nothing to plot".into());
    }
    let xmin = mine.iter().map(|r| r.cols).min().unwrap_or(1) as f64;
    let xmax = mine.iter().map(|r| r.cols).max().unwrap_or(2) as f64;
    let ymax = mine
        .iter()
        .map(|r| r.gbps.max(r.copy_gbps))
        .fold(0.0f64, f64::max)
        * 1.15;
    let tmp = path.with_extension(format!("partial-{}.svg", std::process::id()));
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(&tmp, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{adapter}: {rows} rows"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin * 0.8..xmax * 1.25).log_scale(), 0.0..ymax.max(1e-3))?;
        chart
            .configure_mesh()
            .x_desc("cols (vocabulary)")
            .y_desc("GB/s (the least bytes the operation moves)")
            .draw()?;
        let mut keys: Vec<(&str, &str)> = mine.iter().map(|r| (r.op, r.dtype)).collect();
        keys.dedup();
        keys.sort();
        keys.dedup();
        for (i, (op, dtype)) in keys.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let mut pts: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| r.op == *op && r.dtype == *dtype)
                .map(|r| (r.cols as f64, r.gbps))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(format!("{op} {dtype}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            let mut copy: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| r.op == *op && r.dtype == *dtype)
                .map(|r| (r.cols as f64, r.copy_gbps))
                .collect();
            copy.sort_by(|a, b| a.0.total_cmp(&b.0));
            if i == 0 {
                chart
                    .draw_series(DashedLineSeries::new(copy, 6, 4, BLACK.stroke_width(2)))?
                    .label("copy (roofline)")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
            }
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
        root.present()?;
        Ok(())
    })();
    result
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| e.to_string()))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}
