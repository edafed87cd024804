//! The roofline the benchmarks divide by: the fastest way this device has to copy the same
//! bytes ([`CopyMethod`]: the crate's copy kernel in each word it can move, and the driver's
//! own `copy_buffer_to_buffer`), each timed until its spread over runs is within
//! [`Settings::max_spread`]; and the device's copy bandwidth over a buffer far past any cache
//! ([`device_copy`]).

use super::{median, Settings, Stopwatch};
use crate::copy::CopyWord;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::scope::capture_errors;

/// A way to copy bytes from one buffer to another: a candidate for the roofline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CopyMethod {
    /// The crate's copy kernel (shaders/copy.wgsl) in words of this size.
    Kernel(CopyWord),
    /// `wgpu::CommandEncoder::copy_buffer_to_buffer`: whatever the driver does for a copy.
    Transfer,
}

impl CopyMethod {
    /// The name reports use: `kernel-16`, `kernel-32` or `copy_buffer_to_buffer`.
    pub fn name(self) -> &'static str {
        match self {
            CopyMethod::Kernel(CopyWord::Bytes16) => "kernel-16",
            CopyMethod::Kernel(CopyWord::Bytes32) => "kernel-32",
            CopyMethod::Transfer => "copy_buffer_to_buffer",
        }
    }

    /// The methods the roofline is the fastest of on `engine`: the copy kernel in each of
    /// [`Engine::copy_words`], then, on GPUs, the transfer. On a CPU adapter (lavapipe) the
    /// transfer is the driver's `memcpy` on the host, not shader work: 25 to 37 GB/s on a
    /// 2-core EPYC where the fastest shader copy reaches about 12, and no kernel's bound.
    pub fn all(engine: &Engine) -> Vec<CopyMethod> {
        let mut methods: Vec<CopyMethod> = engine
            .copy_words()
            .into_iter()
            .map(CopyMethod::Kernel)
            .collect();
        if engine.info().adapter.device_type != wgpu::DeviceType::Cpu {
            methods.push(CopyMethod::Transfer);
        }
        methods
    }

    /// Records a copy of the first `bytes` of `src` into `dst`: STORAGE buffers and a
    /// multiple of the word for the kernel ([`Engine::record_copy`]); COPY_SRC and COPY_DST
    /// and a multiple of 4 for the transfer.
    pub fn record(
        self,
        engine: &Engine,
        encoder: &mut wgpu::CommandEncoder,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<()> {
        match self {
            CopyMethod::Kernel(word) => engine.record_copy(encoder, src, dst, bytes, word),
            CopyMethod::Transfer => {
                engine.check_alive()?;
                let usable = src.usage().contains(wgpu::BufferUsages::COPY_SRC)
                    && dst.usage().contains(wgpu::BufferUsages::COPY_DST);
                let fits = bytes > 0
                    && bytes.is_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT)
                    && bytes <= src.size()
                    && bytes <= dst.size();
                if !usable || !fits {
                    return Err(Error::InvalidBuffer {
                        what: "copy",
                        reason: format!(
                            "a transfer of {bytes} bytes needs a COPY_SRC source, a COPY_DST \
                             destination and a non-zero multiple of 4 within both buffers"
                        ),
                    });
                }
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How far apart the runs of `times` are: (slowest - fastest) / median; 0 for fewer than two.
pub fn spread(times: &[f64]) -> f64 {
    if times.len() < 2 {
        return 0.0;
    }
    let max = times.iter().copied().fold(f64::MIN, f64::max);
    let min = times.iter().copied().fold(f64::MAX, f64::min);
    (max - min) / median(times)
}

/// Runs timed in a row that [`steady`] looks at.
pub const STEADY_RUNS: usize = 5;

/// Whether the last [`STEADY_RUNS`] of `times` are within `max_spread` of each other.
pub fn steady(times: &[f64], max_spread: f64) -> bool {
    times.len() >= STEADY_RUNS && spread(&times[times.len() - STEADY_RUNS..]) <= max_spread
}

/// The median of the last [`STEADY_RUNS`] of `times` (all of them, if fewer).
pub fn recent_median(times: &[f64]) -> f64 {
    median(&times[times.len().saturating_sub(STEADY_RUNS)..])
}

/// The fastest of `methods` by [`recent_median`] of their `times` (same order).
pub fn fastest(methods: &[CopyMethod], times: &[Vec<f64>]) -> CopyMethod {
    methods
        .iter()
        .zip(times)
        .map(|(&m, t)| (recent_median(t), m))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(CopyMethod::Kernel(CopyWord::Bytes16), |(_, m)| m)
}

/// The warm-up: rounds of a run of every method (`time`, its seconds) and then `between`
/// (the operation a case times, or nothing), at least `settings.warmup` (3 or more) rounds
/// and `warmup_seconds`, and then until the last [`STEADY_RUNS`] of every method are within
/// `max_spread` of each other, or `warmup_max_seconds` have passed. Each method's times, in
/// the order of `methods`.
pub(super) fn warm_up(
    methods: &[CopyMethod],
    settings: &Settings,
    mut time: impl FnMut(CopyMethod) -> Result<f64>,
    mut between: impl FnMut() -> Result<()>,
) -> Result<Vec<Vec<f64>>> {
    let mut times = vec![Vec::new(); methods.len()];
    let start = std::time::Instant::now();
    for round in 1.. {
        for (t, &m) in times.iter_mut().zip(methods) {
            t.push(time(m)?);
        }
        between()?;
        let elapsed = start.elapsed().as_secs_f64();
        let enough = round >= settings.warmup.max(3) && elapsed >= settings.warmup_seconds;
        let all_steady = times.iter().all(|t| steady(t, settings.max_spread));
        if enough && (all_steady || elapsed >= settings.warmup_max_seconds) {
            break;
        }
    }
    Ok(times)
}

/// Runs `attempt` up to `settings.attempts` times while the copy times it returns
/// (`copies`) spread by more than `max_spread`; the steadiest attempt, and how many ran.
pub(super) fn steadiest<T>(
    settings: &Settings,
    mut attempt: impl FnMut() -> Result<T>,
    copies: impl Fn(&T) -> &[f64],
) -> Result<(T, usize)> {
    let mut best = attempt()?;
    let mut attempts = 1;
    while spread(copies(&best)) > settings.max_spread && attempts < settings.attempts {
        let next = attempt()?;
        attempts += 1;
        if spread(copies(&next)) < spread(copies(&best)) {
            best = next;
        }
    }
    Ok((best, attempts))
}

/// The device's copy bandwidth: the fastest [`CopyMethod`] over a buffer far larger than any
/// cache, from [`device_copy`].
#[derive(Clone, Copy, Debug)]
pub struct DeviceCopy {
    /// The method that was fastest.
    pub method: CopyMethod,
    /// Bytes copied (each read once and written once).
    pub bytes: u64,
    /// Median seconds of one copy.
    pub seconds: f64,
    /// Bytes read and written over `seconds`, in GB/s (1e9 bytes).
    pub gbps: f64,
    /// [`spread`] of the timed runs.
    pub spread: f64,
}

/// Copies `mib` MiB (capped by the device's largest buffer) with every [`CopyMethod`] in
/// alternation, as the warm-up of [`measure`](super::measure) does, then times the fastest
/// `settings.runs` times, again (up to `settings.attempts` times) while its runs spread by
/// more than `settings.max_spread`, keeping the steadiest attempt.
pub fn device_copy(engine: &Engine, mib: u64, settings: &Settings) -> Result<DeviceCopy> {
    let device = engine.device();
    let bytes = mib
        .saturating_mul(1 << 20)
        .min(engine.info().limits.max_buffer_size)
        / 256
        * 256;
    if bytes == 0 {
        return Err(Error::InvalidBuffer {
            what: "device copy",
            reason: format!("{mib} MiB: nothing to copy"),
        });
    }
    let buffer = |label| {
        capture_errors(device, || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    };
    let (src, dst) = (
        buffer("softmax-wgpu device copy source")?,
        buffer("softmax-wgpu device copy destination")?,
    );
    let stopwatch = Stopwatch::new(engine);
    let run = |method: CopyMethod| -> Result<f64> {
        let d = stopwatch.time(engine, |e| method.record(engine, e, &src, &dst, bytes))?;
        Ok(d.as_secs_f64())
    };
    let methods = CopyMethod::all(engine);
    let warm = warm_up(&methods, settings, run, || Ok(()))?;
    let method = fastest(&methods, &warm);
    let timed = || (0..settings.runs.max(2)).map(|_| run(method)).collect();
    let (times, _) = steadiest(settings, timed, |t: &Vec<f64>| t)?;
    let seconds = median(&times);
    Ok(DeviceCopy {
        method,
        bytes,
        seconds,
        gbps: (2 * bytes) as f64 / seconds / 1e9,
        spread: spread(&times),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_range_over_the_median() {
        assert_eq!(spread(&[]), 0.0);
        assert_eq!(spread(&[3.0]), 0.0);
        assert!((spread(&[1.0, 1.1, 1.05]) - 0.1 / 1.05).abs() < 1e-12);
        assert!(steady(&[9.0, 1.0, 1.0, 1.01, 1.02, 1.0], 0.05));
        assert!(!steady(&[1.0, 1.0, 1.0, 1.2, 1.0], 0.1));
        assert!(!steady(&[1.0, 1.0, 1.0, 1.0], 0.1), "too few runs");
    }

    #[test]
    fn the_fastest_method_goes_by_its_recent_runs() {
        let methods = [CopyMethod::Kernel(CopyWord::Bytes16), CopyMethod::Transfer];
        // The kernel's first runs were slow (clocks rising); its recent ones are the fastest.
        let times = vec![
            vec![9.0, 9.0, 2.0, 2.0, 2.0, 2.0, 2.0],
            vec![3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],
        ];
        assert_eq!(fastest(&methods, &times), methods[0]);
        assert_eq!(recent_median(&[5.0, 1.0]), 3.0);
    }
}
