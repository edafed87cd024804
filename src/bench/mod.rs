//! Benchmark support, shared by `cargo bench` and the `bench` subcommand: a device stopwatch,
//! the copy roofline, and the measurement of one case.
//!
//! Throughput counts the bytes an operation must move at least ([`Case::bytes`]): one read
//! of the logits and one write of the output for the forward operations and cross-entropy
//! with its gradient, two reads and a write for the backward ones. A copy moves the same
//! number of bytes (half read, half written) by the fastest [`CopyMethod`] of the device, and
//! the two are timed in alternation so that a machine's drift cancels out of their ratio.

mod case;
mod roofline;
mod verify;

pub use crate::copy::{CopyKind, CopyWord};
pub use crate::stopwatch::{median, Clock, Stopwatch};
pub use case::{BenchOp, Case, Prepared};
pub use roofline::{device_copy, spread, CopyMethod, DeviceCopy};

use crate::engine::Engine;
use crate::error::Result;
use crate::options::Variant;
use roofline::{fastest, recent_median, steadiest, warm_up};

/// What [`measure`] found for one case.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// The case.
    pub case: Case,
    /// The forward kernel variant that ran (`None` for the other operations).
    pub variant: Option<Variant>,
    /// Where the times come from.
    pub clock: Clock,
    /// Median seconds of the operation.
    pub seconds: f64,
    /// The roofline: the fastest of [`CopyMethod::all`] over the warm-up.
    pub copy_method: CopyMethod,
    /// The copy kernel's faster word over the warm-up, which the exp ceilings move.
    pub copy_word: CopyWord,
    /// Median seconds of the roofline copy over the same bytes.
    pub copy_seconds: f64,
    /// [`spread`] of the roofline copy's times over the timed runs kept.
    pub copy_spread: f64,
    /// Attempts at the timed runs: more than one where the copy's spread was above
    /// [`Settings::max_spread`] (the steadiest attempt is kept).
    pub attempts: usize,
    /// [`Case::bytes`] over `seconds`, in GB/s (1e9 bytes).
    pub gbps: f64,
    /// The same bytes over `copy_seconds`, in GB/s.
    pub copy_gbps: f64,
    /// Median over runs of copy time / operation time, each pair timed back to back.
    pub ratio_to_copy: f64,
    /// Every case but the backward ones: median seconds of the exp ceiling over the same
    /// logits, in their dtype ([`CopyKind::Exp`] into the output, or [`CopyKind::ExpSum`] for logsumexp).
    pub ceiling_seconds: Option<f64>,
    /// The same cases: median over runs of copy time / exp ceiling time, timed beside each pair:
    /// the ratio to copy that the least arithmetic of the operation reaches on this adapter
    /// without any reduction or second read.
    pub ceiling: Option<f64>,
    /// Softmax, log-softmax and cross-entropy: median over runs of copy time / (exp ceiling
    /// time + logsumexp's ceiling time over the same logits), timed beside each pair: the
    /// ceiling of a kernel that reads each row twice (online, split-row) on this adapter.
    /// Kernels that hold their rows (resident, multi-row) read once and may pass it, and a
    /// second read served from cache (the ceilings stream from memory) by a little.
    pub two_pass_bound: Option<f64>,
    /// Median seconds of the f64 CPU oracle on the same logits, where it was timed.
    pub cpu_seconds: Option<f64>,
}

impl Measurement {
    /// How many times faster than the CPU oracle.
    pub fn speedup_over_cpu(&self) -> Option<f64> {
        self.cpu_seconds.map(|c| c / self.seconds)
    }

    /// Logits per second.
    pub fn logits_per_second(&self) -> f64 {
        self.case.shape.len() as f64 / self.seconds
    }
}

/// How [`measure`] and [`device_copy`] run.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Untimed runs first (compilation, caches, clocks).
    pub warmup: usize,
    /// Untimed runs go on until this much wall time has passed too, so that a GPU left
    /// idle while the host prepared the case has raised its clocks again (on an H100, two
    /// warm-up runs left some cases three times slower than the same case run on its own).
    pub warmup_seconds: f64,
    /// Untimed runs go on past `warmup_seconds`, up to this, until the last few runs of
    /// every copy method are within `max_spread` of each other.
    pub warmup_max_seconds: f64,
    /// Timed pairs of (copy, operation).
    pub runs: usize,
    /// The most the roofline copy's times may spread over the timed runs ([`spread`]).
    pub max_spread: f64,
    /// Attempts at the timed runs while the copy spreads more than `max_spread`.
    pub attempts: usize,
    /// Also time the f64 CPU oracle this many times (0: not at all).
    pub cpu_runs: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warmup: 2,
            warmup_seconds: 0.25,
            warmup_max_seconds: 1.0,
            runs: 7,
            max_spread: 0.10,
            attempts: 3,
            cpu_runs: 1,
        }
    }
}

/// Deterministic logits in [-8, 8) (a xorshift generator), for benchmarks.
pub fn bench_logits(n: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
        })
        .collect()
}

/// One attempt's timed runs: each run a copy, the ceilings where the case has them, and the
/// operation, back to back.
#[derive(Default)]
struct Runs {
    op: Vec<f64>,
    copy: Vec<f64>,
    ratios: Vec<f64>,
    ceiling: Vec<f64>,
    ceiling_ratios: Vec<f64>,
    two_pass_ratios: Vec<f64>,
}

/// Times `case` and the roofline copy over the same bytes in alternation on `engine`.
pub fn measure(engine: &Engine, case: &Case, settings: &Settings) -> Result<Measurement> {
    let prepared = Prepared::new(engine, case)?;
    let copy_bytes = prepared.copy_bytes();
    let stopwatch = Stopwatch::new(engine);
    let run_op = || stopwatch.time(engine, |e| prepared.record(e));
    let run_copy = |method| stopwatch.time(engine, |e| prepared.record_copy(e, method));
    let ceiling_kind = case.ceiling_kind();
    let first_pass_kind = case.first_pass_kind();
    let run_ceiling =
        |word, kind| stopwatch.time(engine, |e| prepared.record_ceiling(e, word, kind));
    // The warm-up also times every copy method until each is steady; the fastest (median of
    // its last runs) is the roofline, and the faster kernel word moves the ceilings.
    let methods = CopyMethod::all(engine);
    let warm_copies = warm_up(
        &methods,
        settings,
        |m| Ok(run_copy(m)?.as_secs_f64()),
        || run_op().map(drop),
    )?;
    let copy_method = fastest(&methods, &warm_copies);
    let copy_word = methods
        .iter()
        .zip(&warm_copies)
        .filter_map(|(&m, t)| match m {
            CopyMethod::Kernel(word) => Some((recent_median(t), word)),
            CopyMethod::Transfer => None,
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(CopyWord::Bytes16, |(_, word)| word);
    // Compiled and warm before they are timed.
    for kind in ceiling_kind.iter().chain(&first_pass_kind) {
        run_ceiling(copy_word, *kind)?;
    }
    let timed = || -> Result<Runs> {
        let mut r = Runs::default();
        for _ in 0..settings.runs.max(1) {
            let c = run_copy(copy_method)?.as_secs_f64();
            if let Some(kind) = ceiling_kind {
                let e = run_ceiling(copy_word, kind)?.as_secs_f64();
                r.ceiling.push(e);
                r.ceiling_ratios.push(c / e);
                if let Some(first) = first_pass_kind {
                    let f = run_ceiling(copy_word, first)?.as_secs_f64();
                    r.two_pass_ratios.push(c / (f + e));
                }
            }
            let o = run_op()?.as_secs_f64();
            r.copy.push(c);
            r.op.push(o);
            r.ratios.push(c / o);
        }
        Ok(r)
    };
    // Timed again while the copy spreads too much: a roofline that moves is no roofline.
    let (best, attempts) = steadiest(settings, timed, |r: &Runs| &r.copy)?;
    let cpu_seconds = (settings.cpu_runs > 0).then(|| {
        let times: Vec<f64> = (0..settings.cpu_runs)
            .map(|_| prepared.time_cpu())
            .collect();
        median(&times)
    });
    // The copy and the ceiling wrote over the output: the operation runs once more.
    prepared.verify()?;
    let seconds = median(&best.op);
    let copy_seconds = median(&best.copy);
    Ok(Measurement {
        case: *case,
        variant: prepared.variant()?,
        clock: stopwatch.clock(),
        copy_method,
        copy_word,
        seconds,
        copy_seconds,
        copy_spread: spread(&best.copy),
        attempts,
        gbps: case.bytes() as f64 / seconds / 1e9,
        copy_gbps: (2 * copy_bytes) as f64 / copy_seconds / 1e9,
        ratio_to_copy: median(&best.ratios),
        ceiling_seconds: ceiling_kind.map(|_| median(&best.ceiling)),
        ceiling: ceiling_kind.map(|_| median(&best.ceiling_ratios)),
        two_pass_bound: first_pass_kind.map(|_| median(&best.two_pass_ratios)),
        cpu_seconds,
    })
}
