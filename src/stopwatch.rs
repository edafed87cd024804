//! Device time of recorded work: GPU timestamps where the adapter has them, wall time
//! otherwise; and the median that benchmarks report.

#[cfg(not(target_arch = "wasm32"))]
pub use native::{Clock, Stopwatch};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::time::{Duration, Instant};

    use crate::engine::Engine;
    use crate::error::{Error, Result};
    use crate::scope::capture_errors;

    /// Where a [`Stopwatch`] reads its time.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Clock {
        /// GPU timestamps written before and after the recorded work (TIMESTAMP_QUERY).
        GpuTimestamps,
        /// Wall time around submit and wait (adapters without TIMESTAMP_QUERY).
        WallClock,
    }

    impl std::fmt::Display for Clock {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Clock::GpuTimestamps => "gpu-timestamps",
                Clock::WallClock => "wall-clock",
            })
        }
    }

    /// Times recorded GPU work: two timestamps around it where the device has TIMESTAMP_QUERY,
    /// wall time around submit and wait otherwise.
    pub struct Stopwatch {
        queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
        period_ns: f64,
    }

    impl Stopwatch {
        /// A stopwatch for `engine`'s device.
        pub fn new(engine: &Engine) -> Self {
            let device = engine.device();
            let queries = device
                .features()
                .contains(wgpu::Features::TIMESTAMP_QUERY)
                .then(|| {
                    let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("softmax-wgpu stopwatch"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2,
                    });
                    let buffer = |usage| {
                        device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("softmax-wgpu stopwatch"),
                            size: 16,
                            usage,
                            mapped_at_creation: false,
                        })
                    };
                    let resolve =
                        buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
                    let read = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
                    (set, resolve, read)
                });
            Stopwatch {
                queries,
                period_ns: f64::from(engine.queue().get_timestamp_period()),
            }
        }

        /// A stopwatch that reads wall time around submit and wait, whatever the device has.
        pub fn wall_clock() -> Self {
            Stopwatch {
                queries: None,
                period_ns: 1.0,
            }
        }

        /// The clock in use.
        pub fn clock(&self) -> Clock {
            match self.queries {
                Some(_) => Clock::GpuTimestamps,
                None => Clock::WallClock,
            }
        }

        /// Records `work` into a fresh encoder between two timestamps, submits, waits and
        /// returns the time between them.
        pub fn time(
            &self,
            engine: &Engine,
            work: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<()>,
        ) -> Result<Duration> {
            engine.guarded(|| {
                let device = engine.device();
                let mut encoder = device.create_command_encoder(&Default::default());
                let mark =
                    |encoder: &mut wgpu::CommandEncoder, set: &wgpu::QuerySet, index: u32| {
                        // An empty pass whose only job is its timestamp.
                        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some("softmax-wgpu stopwatch"),
                            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                query_set: set,
                                beginning_of_pass_write_index: Some(index),
                                end_of_pass_write_index: None,
                            }),
                        });
                    };
                if let Some((set, _, _)) = &self.queries {
                    mark(&mut encoder, set, 0);
                }
                work(&mut encoder)?;
                if let Some((set, resolve, read)) = &self.queries {
                    mark(&mut encoder, set, 1);
                    encoder.resolve_query_set(set, 0..2, resolve, 0);
                    encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
                }
                let commands = capture_errors(device, || encoder.finish())?;
                let start = Instant::now();
                engine.queue().submit([commands]);
                device.poll(wgpu::PollType::wait_indefinitely())?;
                let wall = start.elapsed();
                engine.check_alive()?;
                let Some((_, _, read)) = &self.queries else {
                    return Ok(wall);
                };
                let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
                read.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
                device.poll(wgpu::PollType::wait_indefinitely())?;
                pollster::block_on(rx.receive())
                    .ok_or_else(|| Error::DeviceLost("map callback dropped".into()))??;
                let ticks: [u64; 2] = {
                    let view = read
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| Error::Validation(e.to_string()))?;
                    bytemuck::pod_read_unaligned(&view[..16])
                };
                read.unmap();
                let ns = ticks[1].saturating_sub(ticks[0]) as f64 * self.period_ns;
                Ok(Duration::from_secs_f64(ns * 1e-9))
            })
        }
    }
}

/// The median of `v` (the mean of the middle two for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}
