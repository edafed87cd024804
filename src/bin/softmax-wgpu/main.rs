//! `softmax-wgpu`: the softmax family over `.npy` files on any GPU, adapter information, and
//! a benchmark against a copy kernel. `softmax-wgpu --help` lists the subcommands.

mod bench;
mod npy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use half::{bf16, f16};
use softmax_wgpu::{
    CrossEntropyOptions, DType, Element, Engine, EngineOptions, Forward, MaskedRows, Reduction,
    Shape, SoftmaxOptions, Variant,
};

use npy::Logits;

#[derive(Parser)]
#[command(
    name = "softmax-wgpu",
    version,
    about = "Numerically stable softmax, log_softmax, logsumexp and cross-entropy on any GPU through wgpu"
)]
struct Cli {
    #[command(flatten)]
    adapter: AdapterArgs,
    #[command(subcommand)]
    command: Command,
}

/// Picks the adapter, as the WGPU_BACKEND and WGPU_ADAPTER_NAME variables do.
#[derive(Args)]
struct AdapterArgs {
    /// Backends to consider: vulkan, metal, dx12, gl (comma-separated).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// The first adapter whose name contains this (case-insensitive).
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Batch-invariant results: each row's bits independent of the batch around it
    /// (`EngineOptions::batch_invariant`).
    #[arg(long, global = true)]
    batch_invariant: bool,
    /// MiB of the GPU's cache that split-row dispatches of batches of long rows are sized to
    /// (`EngineOptions::cache_bytes`; 0, the default: off).
    #[arg(long, global = true, default_value_t = 0)]
    cache_mib: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Every adapter found, its features and limits, and which one would be chosen.
    Info,
    /// Softmax along the last axis.
    Softmax(ForwardCmd),
    /// Log-softmax along the last axis.
    LogSoftmax(ForwardCmd),
    /// Logsumexp along the last axis (f32, the last axis dropped).
    Logsumexp(ForwardCmd),
    /// Cross-entropy loss of logits against class targets, and its gradient.
    CrossEntropy(CrossEntropyCmd),
    /// One token per row: temperature, top-k, top-p, min-p (greedy at temperature 0).
    Sample(SampleCmd),
    /// Times the operations against the fastest copy over large-vocabulary shapes.
    Bench(bench::BenchCmd),
    /// Prints what a forward operation would launch on the adapter (variant, layout,
    /// dispatches, pipeline keys) and, with --wgsl, the shaders, without running it.
    Explain(ExplainCmd),
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum OpArg {
    Softmax,
    LogSoftmax,
    Logsumexp,
    /// Cross-entropy (with `--grad`, its gradient too).
    CrossEntropy,
    SoftmaxBackward,
    LogSoftmaxBackward,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

impl DtypeArg {
    fn dtype(self) -> DType {
        match self {
            DtypeArg::F32 => DType::F32,
            DtypeArg::F16 => DType::F16,
            DtypeArg::Bf16 => DType::BF16,
        }
    }
}

#[derive(Args)]
struct ExplainCmd {
    /// The operation.
    #[arg(long, value_enum, default_value = "softmax")]
    op: OpArg,
    /// Rows of the batch.
    #[arg(long)]
    rows: usize,
    /// Logits per row.
    #[arg(long)]
    cols: usize,
    /// The logits' dtype.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// The output's dtype (softmax, log-softmax; the gradient's for cross-entropy and the
    /// backward operations); the logits' by default.
    #[arg(long, value_enum)]
    out_dtype: Option<DtypeArg>,
    /// Kernel variant of the forward operations: auto, resident, online, split-row,
    /// multi-row.
    #[arg(long, default_value = "auto")]
    variant: Variant,
    /// Cross-entropy: also the gradient.
    #[arg(long)]
    grad: bool,
    /// Cross-entropy: with class weights.
    #[arg(long)]
    weighted: bool,
    /// Also prints the WGSL of each pipeline.
    #[arg(long)]
    wgsl: bool,
}

fn explain(engine: &Engine, cmd: &ExplainCmd) -> Result<(), String> {
    let shape = Shape::new(cmd.rows, cmd.cols);
    let input = cmd.dtype.dtype();
    let output = cmd.out_dtype.map_or(input, DtypeArg::dtype);
    let forward = |op| {
        let options = SoftmaxOptions::default().with_variant(cmd.variant);
        engine.explain_forward(op, shape, input, output, &options)
    };
    let e = match cmd.op {
        OpArg::Softmax => forward(Forward::Softmax),
        OpArg::LogSoftmax => forward(Forward::LogSoftmax),
        OpArg::Logsumexp => forward(Forward::LogSumExp),
        OpArg::CrossEntropy => engine.explain_cross_entropy(
            shape,
            input,
            cmd.grad.then_some(output),
            cmd.weighted,
            &CrossEntropyOptions::default(),
        ),
        OpArg::SoftmaxBackward => engine.explain_backward(false, shape, input, output),
        OpArg::LogSoftmaxBackward => engine.explain_backward(true, shape, input, output),
    }
    .map_err(|e| e.to_string())?;
    print!("{e}");
    if cmd.wgsl {
        for (key, wgsl) in &e.shaders {
            println!("\n// ---- {key}\n{wgsl}");
        }
    }
    Ok(())
}

#[derive(Clone, Copy, ValueEnum)]
enum Masked {
    /// NaN, as PyTorch.
    Nan,
    /// Zeros.
    Zeros,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Compute {
    /// The input file's dtype (float64 is computed and written in float32).
    Input,
    /// float32, written as float32.
    F32,
    /// float16, written as float16.
    F16,
    /// bfloat16: rounded to bf16, computed, and written back as float32 (NumPy has no bfloat16).
    Bf16,
}

/// Logits in the dtype the kernels compute in.
enum Typed {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl Compute {
    /// The file's logits in this dtype, each rounded once to nearest even from the file's
    /// value; float64 read with `Input` becomes float32, said once on stderr.
    fn convert(self, logits: Logits) -> Typed {
        let wide = |x: Vec<f16>| -> Vec<f32> { x.into_iter().map(f32::from).collect() };
        match (self, logits) {
            (Compute::Input | Compute::F32, Logits::F32(x)) => Typed::F32(x),
            (Compute::Input | Compute::F16, Logits::F16(x)) => Typed::F16(x),
            (Compute::Input | Compute::F32, Logits::F64(x)) => {
                if self == Compute::Input {
                    eprintln!(
                        "note: float64 logits are computed and written in float32 \
                         (--dtype f16 or bf16 picks another dtype)"
                    );
                }
                Typed::F32(x.into_iter().map(|v| v as f32).collect())
            }
            (Compute::F32, Logits::F16(x)) => Typed::F32(wide(x)),
            (Compute::F16, Logits::F32(x)) => {
                Typed::F16(x.into_iter().map(f16::from_f32).collect())
            }
            (Compute::F16, Logits::F64(x)) => {
                Typed::F16(x.into_iter().map(f16::from_f64).collect())
            }
            (Compute::Bf16, Logits::F32(x)) => {
                Typed::Bf16(x.into_iter().map(bf16::from_f32).collect())
            }
            (Compute::Bf16, Logits::F16(x)) => {
                Typed::Bf16(wide(x).into_iter().map(bf16::from_f32).collect())
            }
            (Compute::Bf16, Logits::F64(x)) => {
                Typed::Bf16(x.into_iter().map(bf16::from_f64).collect())
            }
        }
    }
}

#[derive(Args)]
struct ForwardCmd {
    /// Logits: a float32, float16 or float64 .npy of any rank; the last axis is the vocabulary.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the result (.npy), written whole or not at all.
    #[arg(long)]
    output: PathBuf,
    /// Divides the logits; finite and > 0.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// What rows that are entirely -inf produce.
    #[arg(long, value_enum, default_value = "nan")]
    masked_rows: Masked,
    /// The dtype to compute and store in.
    #[arg(long, value_enum, default_value = "input")]
    dtype: Compute,
    /// Kernel variant: auto, resident, online, split-row, multi-row.
    #[arg(long, default_value = "auto")]
    variant: Variant,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReductionArg {
    None,
    Mean,
    Sum,
}

#[derive(Args)]
struct CrossEntropyCmd {
    /// Logits: a float32, float16 or float64 .npy; the last axis is the classes.
    #[arg(long)]
    input: PathBuf,
    /// Class indices: an int32 or int64 .npy with the logits' leading axes.
    #[arg(long)]
    targets: PathBuf,
    /// Rows whose target is this count for nothing.
    #[arg(long, default_value_t = -100, allow_negative_numbers = true)]
    ignore_index: i32,
    /// Label smoothing in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f32,
    /// How per-row losses reduce.
    #[arg(long, value_enum, default_value = "mean")]
    reduction: ReductionArg,
    /// Adds z_loss * logsumexp^2 per row.
    #[arg(long, default_value_t = 0.0)]
    z_loss: f32,
    /// Divides the logits; finite and > 0.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// The loss (.npy, f32): a scalar, or one value per row with --reduction none.
    #[arg(long)]
    output: PathBuf,
    /// The gradient with respect to the logits (.npy, the logits' shape, in the dtype
    /// computed in: float32 for float64 logits and for bf16).
    #[arg(long)]
    grad: Option<PathBuf>,
    /// The dtype to compute in.
    #[arg(long, value_enum, default_value = "input")]
    dtype: Compute,
}

#[derive(Args)]
struct SampleCmd {
    /// Logits: a float32, float16 or float64 .npy of any rank; the last axis is the vocabulary.
    #[arg(long)]
    input: PathBuf,
    /// The token of each row (.npy, int64, the logits' leading shape); -1 where a row yields
    /// none (a NaN or +inf in it, or every logit -inf), said on stderr.
    #[arg(long)]
    output: PathBuf,
    /// Divides the logits; 0 is greedy (the first maximum).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Keep the k most likely tokens (ties at the k-th kept); 0 keeps all.
    #[arg(long, default_value_t = 0)]
    top_k: u32,
    /// Keep the smallest set of the most likely tokens with this probability mass, in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the tokens with at least this fraction of the largest probability, in [0, 1].
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Draw each row's uniform from Philox4x32-10 under this seed, at the row's index.
    #[arg(long, conflicts_with = "uniforms")]
    seed: Option<u64>,
    /// Each row's uniform in [0, 1) (.npy, float32 or float64, the logits' leading shape).
    #[arg(long)]
    uniforms: Option<PathBuf>,
    /// Also write each token's log-probability under softmax(z / T) (.npy, float32).
    #[arg(long)]
    logprobs: Option<PathBuf>,
    /// The dtype to compute in.
    #[arg(long, value_enum, default_value = "input")]
    dtype: Compute,
}

impl AdapterArgs {
    fn options(&self) -> Result<EngineOptions, String> {
        let backends = match &self.backend {
            Some(b) => {
                let parsed = wgpu::Backends::from_comma_list(b);
                if parsed.is_empty() {
                    return Err(format!(
                        "unknown backend {b:?}; use vulkan, metal, dx12 or gl"
                    ));
                }
                Some(parsed)
            }
            None => None,
        };
        Ok(EngineOptions {
            backends,
            adapter_name: self.adapter.clone(),
            batch_invariant: self.batch_invariant,
            cache_bytes: self.cache_mib.saturating_mul(1 << 20),
            ..Default::default()
        })
    }

    fn engine(&self) -> Result<Engine, String> {
        Engine::new_blocking(self.options()?).map_err(|e| e.to_string())
    }
}

/// `[rows, cols]` of an array whose last axis is the vocabulary.
fn matrix(shape: &[u64]) -> Result<Shape, String> {
    let cols = *shape.last().ok_or("rank-0 array")?;
    let rows = shape[..shape.len() - 1]
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or("the element count overflows")?;
    let to = |v: u64| usize::try_from(v).map_err(|_| "the shape is too large".to_string());
    Ok(Shape::new(to(rows)?, to(cols)?))
}

fn run_forward(engine: &Engine, op: Forward, cmd: &ForwardCmd) -> Result<(), String> {
    let options = SoftmaxOptions {
        temperature: cmd.temperature,
        masked_rows: match cmd.masked_rows {
            Masked::Nan => MaskedRows::Nan,
            Masked::Zeros => MaskedRows::Zeros,
        },
        variant: cmd.variant,
    };
    let input = npy::read_logits(&cmd.input)?;
    let shape = matrix(&input.shape)?;
    let lead = &input.shape[..input.shape.len() - 1];
    fn go<T: Element>(
        engine: &Engine,
        op: Forward,
        x: &[T],
        shape: Shape,
        options: &SoftmaxOptions,
    ) -> Result<Vec<T>, String> {
        let r = engine
            .forward::<T, T>(op, x, shape, options, op == Forward::LogSumExp)
            .map_err(|e| e.to_string())?;
        Ok(r.values)
    }
    let x = cmd.dtype.convert(input.data);
    if op == Forward::LogSumExp {
        let lse = match &x {
            Typed::F32(x) => engine.logsumexp(x, shape, &options),
            Typed::F16(x) => engine.logsumexp(x, shape, &options),
            Typed::Bf16(x) => engine.logsumexp(x, shape, &options),
        }
        .map_err(|e| e.to_string())?;
        return npy::write(&cmd.output, lead, &lse);
    }
    let out = &input.shape;
    match &x {
        Typed::F32(x) => npy::write(&cmd.output, out, &go(engine, op, x, shape, &options)?),
        Typed::F16(x) => npy::write(&cmd.output, out, &go(engine, op, x, shape, &options)?),
        Typed::Bf16(x) => {
            let y: Vec<f32> = go(engine, op, x, shape, &options)?
                .into_iter()
                .map(f32::from)
                .collect();
            npy::write(&cmd.output, out, &y)
        }
    }
}

fn run_sample(engine: &Engine, cmd: &SampleCmd) -> Result<(), String> {
    use softmax_wgpu::sampling::{SampleStatus, SamplingParams, Uniforms};
    let input = npy::read_logits(&cmd.input)?;
    let shape = matrix(&input.shape)?;
    let lead = input.shape[..input.shape.len() - 1].to_vec();
    let params = [SamplingParams {
        temperature: cmd.temperature,
        top_k: cmd.top_k,
        top_p: cmd.top_p,
        min_p: cmd.min_p,
    }];
    let given: Vec<f32>;
    let offsets: Vec<u64>;
    let uniforms = match (&cmd.uniforms, cmd.seed) {
        (Some(path), _) => {
            let u = npy::read_logits(path)?;
            if u.shape != lead {
                return Err(format!(
                    "uniforms have shape {:?}; logits of shape {:?} need {lead:?}",
                    u.shape, input.shape
                ));
            }
            given = match u.data {
                Logits::F32(v) => v,
                Logits::F64(v) => v.into_iter().map(|x| x as f32).collect(),
                Logits::F16(v) => v.into_iter().map(f32::from).collect(),
            };
            Uniforms::Given(&given)
        }
        (None, seed) => {
            offsets = (0..shape.rows as u64).collect();
            Uniforms::Philox {
                seed: seed.unwrap_or(0),
                offsets: &offsets,
            }
        }
    };
    let samples = match cmd.dtype.convert(input.data) {
        Typed::F32(x) => engine.sample(&x, shape, &params, uniforms),
        Typed::F16(x) => engine.sample(&x, shape, &params, uniforms),
        Typed::Bf16(x) => engine.sample(&x, shape, &params, uniforms),
    }
    .map_err(|e| e.to_string())?;
    let mut ids = Vec::with_capacity(samples.len());
    for (row, s) in samples.iter().enumerate() {
        if s.status == SampleStatus::Ok {
            ids.push(i64::from(s.token));
        } else {
            eprintln!("row {row}: no token ({:?})", s.status);
            ids.push(-1);
        }
    }
    if let Some(path) = &cmd.logprobs {
        let lp: Vec<f32> = samples.iter().map(|s| s.logprob).collect();
        npy::write(path, &lead, &lp)?;
    }
    npy::write(&cmd.output, &lead, &ids)
}

fn run_cross_entropy(engine: &Engine, cmd: &CrossEntropyCmd) -> Result<(), String> {
    let input = npy::read_logits(&cmd.input)?;
    let targets = npy::read_targets(&cmd.targets)?;
    let lead = &input.shape[..input.shape.len() - 1];
    if targets.shape != lead {
        return Err(format!(
            "targets have shape {:?}; logits of shape {:?} need {:?}",
            targets.shape, input.shape, lead
        ));
    }
    let shape = matrix(&input.shape)?;
    let reduction = match cmd.reduction {
        ReductionArg::None => Reduction::None,
        ReductionArg::Mean => Reduction::Mean,
        ReductionArg::Sum => Reduction::Sum,
    };
    let options = CrossEntropyOptions {
        ignore_index: cmd.ignore_index,
        label_smoothing: cmd.label_smoothing,
        reduction,
        temperature: cmd.temperature,
        z_loss: cmd.z_loss,
        ..Default::default()
    };
    let with_grad = cmd.grad.is_some();
    // Compute everything first, so that no file is written when anything fails.
    let grad_shape = &input.shape;
    let logits = cmd.dtype.convert(input.data);
    /// The gradient as written: in the logits' dtype, bf16 widened to f32.
    enum Grad {
        F32(Vec<f32>),
        F16(Vec<f16>),
    }
    let (loss, per_row, grad) = match &logits {
        Typed::F32(x) => {
            let r = engine
                .cross_entropy(x, &targets.data, shape, &options, with_grad)
                .map_err(|e| e.to_string())?;
            (r.loss, r.per_row, r.grad.map(Grad::F32))
        }
        Typed::F16(x) => {
            let r = engine
                .cross_entropy(x, &targets.data, shape, &options, with_grad)
                .map_err(|e| e.to_string())?;
            (r.loss, r.per_row, r.grad.map(Grad::F16))
        }
        Typed::Bf16(x) => {
            let r = engine
                .cross_entropy(x, &targets.data, shape, &options, with_grad)
                .map_err(|e| e.to_string())?;
            let wide = |g: Vec<bf16>| Grad::F32(g.into_iter().map(f32::from).collect());
            (r.loss, r.per_row, r.grad.map(wide))
        }
    };
    if let Some(path) = &cmd.grad {
        match grad {
            Some(Grad::F32(g)) => npy::write(path, grad_shape, &g)?,
            Some(Grad::F16(g)) => npy::write(path, grad_shape, &g)?,
            None => return Err("no gradient was computed".into()),
        }
    }
    match reduction {
        Reduction::None => npy::write(&cmd.output, lead, &per_row),
        _ => npy::write(&cmd.output, &[], &[loss]),
    }
}

fn info(args: &AdapterArgs) -> Result<(), String> {
    let options = args.options()?;
    let adapters = pollster::block_on(softmax_wgpu::adapters(&options));
    if adapters.is_empty() {
        return Err(format!(
            "no adapter found{}; on Debian without a GPU install mesa-vulkan-drivers libvulkan1 \
             (lavapipe) or libegl1 libegl-mesa0 libgl1-mesa-dri (llvmpipe GL)",
            if args.backend.is_some() || args.adapter.is_some() {
                " for the --backend/--adapter given"
            } else {
                ""
            }
        ));
    }
    for (i, a) in adapters.iter().enumerate() {
        let info = a.get_info();
        let f = a.features();
        let l = a.limits();
        let has = |x| if f.contains(x) { "yes" } else { "no" };
        println!(
            "{} {} ({:?}, {:?}){}",
            if i == 0 { "*" } else { " " },
            info.name,
            info.backend,
            info.device_type,
            if i == 0 { "  <- chosen" } else { "" }
        );
        println!("    driver: {} {}", info.driver, info.driver_info);
        println!(
            "    SHADER_F16 {}, SUBGROUP {} (sizes {}..{}), TIMESTAMP_QUERY {}",
            has(wgpu::Features::SHADER_F16),
            has(wgpu::Features::SUBGROUP),
            info.subgroup_min_size,
            info.subgroup_max_size,
            has(wgpu::Features::TIMESTAMP_QUERY)
        );
        println!(
            "    max_storage_buffer_binding_size {} B, max_buffer_size {} B, \
             max_compute_workgroups_per_dimension {}, max_compute_invocations_per_workgroup {}",
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup
        );
        match pollster::block_on(Engine::from_adapter(a, options.clone())) {
            Ok(e) => println!(
                "    device: ok; f16 conversions by {}",
                if e.half_builtins() {
                    "WGSL builtins (exact here)"
                } else {
                    "bit manipulation"
                }
            ),
            Err(e) => println!("    device: cannot start: {e}"),
        }
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match &cli.command {
        Command::Info => info(&cli.adapter),
        Command::Softmax(c) => run_forward(&cli.adapter.engine()?, Forward::Softmax, c),
        Command::LogSoftmax(c) => run_forward(&cli.adapter.engine()?, Forward::LogSoftmax, c),
        Command::Logsumexp(c) => run_forward(&cli.adapter.engine()?, Forward::LogSumExp, c),
        Command::CrossEntropy(c) => run_cross_entropy(&cli.adapter.engine()?, c),
        Command::Sample(c) => run_sample(&cli.adapter.engine()?, c),
        Command::Bench(c) => bench::run(&cli.adapter.engine()?, c),
        Command::Explain(c) => explain(&cli.adapter.engine()?, c),
    }
}

fn main() -> ExitCode {
    softmax_wgpu::quiet_headless_vulkan();
    // Bad arguments are one `error:` line too (clap's own adds usage and a hint); help and
    // the version print as clap prints them.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
