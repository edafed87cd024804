//! Sampling on the device (`Engine::record_sample`, into the caller's encoder on the
//! caller's buffers) and from host slices (`Engine::sample_async`, `Engine::sample`).

use super::{SampleStatus, SamplingParams, Uniforms};
use crate::dtype::Element;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::launch::{SampleCall, PARAMS_BYTES, RESULT_BYTES, UNIFORM_BYTES};
use crate::options::Shape;
use crate::record::TensorRef;

/// Where each row's uniform comes from, on the device.
#[derive(Clone, Copy, Debug)]
pub enum DeviceUniforms<'a> {
    /// `rows` records of 8 bytes, `[u as f32 bits, 0]`, each `u` in [0, 1).
    Given(&'a wgpu::Buffer),
    /// Philox4x32-10 under `seed` at each row's offset: `rows` records of 8 bytes, `[offset
    /// low word, offset high word]` (see [`super::uniform`]).
    Philox {
        /// The key.
        seed: u64,
        /// The per-row offsets.
        offsets: &'a wgpu::Buffer,
    },
}

/// Arguments of [`Engine::record_sample`].
#[derive(Clone, Copy, Debug)]
pub struct SampleArgs<'a> {
    /// The logits' shape.
    pub shape: Shape,
    /// The logits (f32, f16 or bf16).
    pub logits: TensorRef<'a>,
    /// `rows` records of 16 bytes, [`SamplingParams::to_words`]. Rows whose parameters are
    /// out of their domain get [`SampleStatus::InvalidParams`].
    pub params: &'a wgpu::Buffer,
    /// Each row's uniform.
    pub uniforms: DeviceUniforms<'a>,
    /// Written: `rows` records of 16 bytes, `[token, status, log-probability as f32 bits,
    /// kept]` ([`Sample::from_words`]); `token` is [`super::NO_TOKEN`] where `status` is not `Ok`.
    pub results: &'a wgpu::Buffer,
}

/// What one row yielded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The token, or [`super::NO_TOKEN`].
    pub token: u32,
    /// Why there is no token, or `Ok`.
    pub status: SampleStatus,
    /// Log-probability of the token under `softmax(z / T)` (see `oracle::SampleOracle`);
    /// NaN without a token.
    pub logprob: f32,
    /// How many tokens the filters kept.
    pub kept: u32,
}

impl Sample {
    /// A row's result record as the kernel writes it.
    pub fn from_words(w: [u32; 4]) -> Sample {
        Sample {
            token: w[0],
            status: SampleStatus::from_code(w[1]).unwrap_or(SampleStatus::InvalidParams),
            logprob: f32::from_bits(w[2]),
            kept: w[3],
        }
    }
}

impl SamplingParams {
    /// The record the kernel reads: `[T, top_k, top_p, min_p]` as words.
    pub fn to_words(&self) -> [u32; 4] {
        [
            self.temperature.to_bits(),
            self.top_k,
            self.top_p.to_bits(),
            self.min_p.to_bits(),
        ]
    }
}

/// Checks the logits' length and every row's parameters (one per row, or one for all), and
/// returns each row's record.
fn checked_params(shape: Shape, len: usize, params: &[SamplingParams]) -> Result<Vec<[u32; 4]>> {
    shape.expect_len("logits", len)?;
    if params.len() != shape.rows && params.len() != 1 {
        return Err(Error::ShapeMismatch {
            what: "sampling parameters (one per row, or one for all)",
            got: params.len(),
            expected: shape.rows,
            rows: shape.rows,
            cols: 1,
        });
    }
    for (row, p) in params.iter().enumerate() {
        p.validate(row)?;
    }
    Ok((0..shape.rows)
        .map(|r| params[r.min(params.len() - 1)].to_words())
        .collect())
}

/// Checks that `buffer` has STORAGE usage and at least `bytes`.
fn check_records(what: &'static str, buffer: &wgpu::Buffer, bytes: u64) -> Result<()> {
    let reason = if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
        format!("needs STORAGE usage, has {:?}", buffer.usage())
    } else if buffer.size() < bytes {
        format!("needs {bytes} bytes, has {}", buffer.size())
    } else {
        return Ok(());
    };
    Err(Error::InvalidBuffer { what, reason })
}

impl Engine {
    /// Records one token per row of `args.logits` into `encoder` (see [`crate::sampling`]
    /// for the semantics). Shapes, buffers and sizes are checked here; parameters in
    /// `args.params` are checked per row by the kernel.
    pub fn record_sample(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        args: &SampleArgs,
    ) -> Result<()> {
        self.check_alive()?;
        let shape = args.shape;
        shape.validate()?;
        args.logits.check("logits", shape.len() as u64)?;
        let rows = shape.rows as u64;
        check_records("params", args.params, rows * PARAMS_BYTES)?;
        check_records("results", args.results, rows * RESULT_BYTES)?;
        let (uniforms, philox_seed) = match args.uniforms {
            DeviceUniforms::Given(b) => (b, None),
            DeviceUniforms::Philox { seed, offsets } => (offsets, Some(seed)),
        };
        check_records("uniforms", uniforms, rows * UNIFORM_BYTES)?;
        if args.results == args.logits.buffer
            || args.results == args.params
            || args.results == uniforms
        {
            return Err(Error::InvalidBuffer {
                what: "results",
                reason: "must be a buffer of its own".into(),
            });
        }
        let launch = self.profile.launch_sample(&SampleCall {
            shape,
            logits: args.logits.place(),
            philox_seed,
            probs: None,
        })?;
        self.execute(
            encoder,
            "softmax-wgpu sample",
            &launch.passes(),
            launch.scratch_bytes,
            &[
                Some(args.logits.buffer),
                Some(args.params),
                Some(uniforms),
                Some(args.results),
            ],
        )
    }

    /// One token per row of `logits`: `params` holds one entry per row, or one for every
    /// row; `uniforms` gives each row's `u`. Parameters and uniforms are checked first, and
    /// an error names the row.
    pub async fn sample_async<T: Element>(
        &self,
        logits: &[T],
        shape: Shape,
        params: &[SamplingParams],
        uniforms: Uniforms<'_>,
    ) -> Result<Vec<Sample>> {
        let words = checked_params(shape, logits.len(), params)?;
        let (rand, seed): (Vec<[u32; 2]>, _) = match uniforms {
            Uniforms::Given(_) => (
                uniforms
                    .resolve(shape.rows)?
                    .iter()
                    .map(|u| [u.to_bits(), 0])
                    .collect(),
                None,
            ),
            Uniforms::Philox { seed, offsets } => {
                uniforms.resolve(shape.rows)?;
                let rand = offsets
                    .iter()
                    .map(|&o| [o as u32, (o >> 32) as u32])
                    .collect();
                (rand, Some(seed))
            }
        };
        let rows = shape.rows as u64;
        let ((), bytes) = self
            .host_op(|rb| {
                let x = rb.upload(logits)?;
                let p = rb.upload(&words)?;
                let u = rb.upload(&rand)?;
                let out = rb.output(rows * RESULT_BYTES)?;
                let uniforms = match seed {
                    Some(seed) => DeviceUniforms::Philox { seed, offsets: &u },
                    None => DeviceUniforms::Given(&u),
                };
                self.record_sample(
                    &mut rb.encoder,
                    &SampleArgs {
                        shape,
                        logits: TensorRef::new(&x, T::DTYPE),
                        params: &p,
                        uniforms,
                        results: &out,
                    },
                )?;
                rb.read(&out, 0, rows * RESULT_BYTES)
            })
            .await?;
        let words: Vec<[u32; 4]> =
            bytemuck::pod_collect_to_vec(&bytes[0][..(rows * RESULT_BYTES) as usize]);
        Ok(words.into_iter().map(Sample::from_words).collect())
    }

    /// Records each row's filtered, renormalised probabilities into `probs` (f32,
    /// `[rows, cols]`, zeros where removed; at T = 0 a share of 1 for each maximum; NaN over
    /// rows without a token and rows whose parameters are out of their domain): the
    /// distribution [`Engine::record_sample`] draws from, for callers that sample themselves.
    pub fn record_sample_probs(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        shape: Shape,
        logits: TensorRef,
        params: &wgpu::Buffer,
        probs: TensorRef,
    ) -> Result<()> {
        self.check_alive()?;
        shape.validate()?;
        let n = shape.len() as u64;
        logits.check("logits", n)?;
        probs.check("probs", n)?;
        check_records("params", params, shape.rows as u64 * PARAMS_BYTES)?;
        if probs.dtype != crate::DType::F32 {
            return Err(Error::UnsupportedDType {
                dtype: probs.dtype,
                reason: "the filtered probabilities are f32",
            });
        }
        if probs.buffer == logits.buffer || probs.buffer == params {
            return Err(Error::InvalidBuffer {
                what: "probs",
                reason: "must be a buffer of its own".into(),
            });
        }
        let launch = self.profile.launch_sample(&SampleCall {
            shape,
            logits: logits.place(),
            philox_seed: None,
            probs: Some(probs.place()),
        })?;
        self.execute(
            encoder,
            "softmax-wgpu sample probabilities",
            &launch.passes(),
            launch.scratch_bytes,
            &[Some(logits.buffer), Some(params), Some(probs.buffer)],
        )
    }

    /// Each row's filtered, renormalised probabilities (see
    /// [`Engine::record_sample_probs`]), `params` one per row or one for all, checked first.
    pub async fn sample_probs_async<T: Element>(
        &self,
        logits: &[T],
        shape: Shape,
        params: &[SamplingParams],
    ) -> Result<Vec<f32>> {
        let words = checked_params(shape, logits.len(), params)?;
        let n = logits.len() as u64;
        let ((), bytes) = self
            .host_op(|rb| {
                let x = rb.upload(logits)?;
                let p = rb.upload(&words)?;
                let out = rb.output(4 * n)?;
                self.record_sample_probs(
                    &mut rb.encoder,
                    shape,
                    TensorRef::new(&x, T::DTYPE),
                    &p,
                    TensorRef::new(&out, crate::DType::F32),
                )?;
                rb.read(&out, 0, 4 * n)
            })
            .await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes[0][..4 * n as usize]))
    }

    crate::host::blocking! {
        /// Blocking [`Engine::sample_probs_async`].
        sample_probs => sample_probs_async<T: Element>(
            logits: &[T], shape: Shape, params: &[SamplingParams]) -> Result<Vec<f32>>
    }

    crate::host::blocking! {
        /// Blocking [`Engine::sample_async`].
        sample => sample_async<T: Element>(
            logits: &[T], shape: Shape, params: &[SamplingParams], uniforms: Uniforms<'_>)
            -> Result<Vec<Sample>>
    }
}
