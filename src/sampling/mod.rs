//! Sampling for inference: from logits to one token per row, with per-row temperature,
//! top-k, top-p and min-p, greedy at temperature 0, and reproducible uniforms.
//!
//! Semantics (Hugging Face `generate`'s order; [`crate::oracle::sample`] is the reference):
//! 1. `T = 0` is greedy: the index of the largest logit, the lowest among ties (as
//!    `torch.argmax`); the other parameters are ignored. Otherwise `T` is finite and at
//!    least `f32::MIN_POSITIVE`.
//! 2. `p = softmax(z / T)`, shifted by the row maximum.
//! 3. top-k keeps the tokens whose logit is at least the k-th largest (ties at the boundary
//!    all kept); `top_k = 0` or `>= cols` keeps all.
//! 4. top-p keeps, of what is left and renormalised, the smallest set of the largest
//!    probabilities whose mass reaches `top_p` (ties at the boundary all kept); `top_p = 1`
//!    keeps all.
//! 5. min-p keeps the tokens with `p >= min_p * max p`; `min_p = 0` keeps all.
//! 6. The token is drawn from the kept set by inverse CDF in index order: the first kept
//!    index whose running sum of `p` exceeds `u` times the kept mass, `u` in [0, 1).
//!
//! The thresholds are taken on the logits, where the probabilities' order is exact: `p` is
//! strictly increasing in `z`. vLLM applies min-p before top-k and top-p, llama.cpp the
//! temperature last; the results differ from this order only where the filters interact.
//!
//! A row with a NaN, with `+inf`, or with every logit `-inf` yields no token: its
//! [`SampleStatus`] says which, and its token is [`NO_TOKEN`]. `-inf` logits are never drawn.
//!
//! The host API, [`crate::Engine::sample`] (and `sample_async`), takes slices and checks
//! every parameter first; the device-level [`crate::Engine::record_sample`] keeps logits,
//! parameters and tokens on the GPU ([`SampleArgs`]).

mod philox;
mod record;

pub use philox::{philox4x32_10, uniform};
pub use record::{DeviceUniforms, Sample, SampleArgs};

use crate::error::{Error, Result};

/// The token of a row that yields none (never a valid index).
pub const NO_TOKEN: u32 = u32::MAX;

/// One row's sampling parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits; 0 is greedy.
    pub temperature: f32,
    /// Keep the `top_k` largest (ties kept); 0 keeps all.
    pub top_k: u32,
    /// Keep the smallest set of the largest probabilities with this mass, in (0, 1].
    pub top_p: f32,
    /// Keep the probabilities of at least `min_p` times the largest, in [0, 1].
    pub min_p: f32,
}

impl Default for SamplingParams {
    /// Plain sampling from `softmax(z)`: T = 1, no filter.
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (T = 0).
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Whether this row is greedy.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every parameter; errors name `row`.
    pub fn validate(&self, row: usize) -> Result<()> {
        let bad = |name: &'static str, value: f32, reason: &'static str| {
            Err(Error::InvalidSampling {
                row,
                name,
                value: value.to_string(),
                reason,
            })
        };
        let t = self.temperature;
        if !(t == 0.0 || (t.is_finite() && t >= f32::MIN_POSITIVE)) {
            return bad(
                "temperature",
                t,
                "must be 0 (greedy) or finite and at least f32::MIN_POSITIVE",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", self.min_p, "must be in [0, 1]");
        }
        Ok(())
    }
}

/// What a row yielded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SampleStatus {
    /// A token was drawn.
    Ok = 0,
    /// The row holds a NaN: no token.
    NanRow = 1,
    /// The row holds `+inf` (and no NaN): no token.
    PosInfRow = 2,
    /// Every logit is `-inf`: no token.
    AllMasked = 3,
    /// The row's parameters (or its given `u`) in the device-level call were out of their
    /// domain: no token. The host API refuses them before.
    InvalidParams = 4,
}

impl SampleStatus {
    /// The status a kernel wrote as `code`.
    pub fn from_code(code: u32) -> Option<SampleStatus> {
        [
            SampleStatus::Ok,
            SampleStatus::NanRow,
            SampleStatus::PosInfRow,
            SampleStatus::AllMasked,
            SampleStatus::InvalidParams,
        ]
        .into_iter()
        .find(|s| *s as u32 == code)
    }
}

/// Where each row's uniform `u` in [0, 1) comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Uniforms<'a> {
    /// One `u` per row from the caller: the result is a pure function of the logits.
    Given(&'a [f32]),
    /// Philox4x32-10 keyed by `seed`, at each row's `offsets` entry ([`uniform`]): the same
    /// seed and offset give the same `u` in any batch, at any position, on any adapter.
    Philox {
        /// The key.
        seed: u64,
        /// One counter per row (a request's id and step, say).
        offsets: &'a [u64],
    },
}

impl Uniforms<'_> {
    /// Each row's `u`, checked: `rows` of them, each in [0, 1).
    pub fn resolve(&self, rows: usize) -> Result<Vec<f32>> {
        let n = match self {
            Uniforms::Given(u) => u.len(),
            Uniforms::Philox { offsets, .. } => offsets.len(),
        };
        if n != rows {
            return Err(Error::ShapeMismatch {
                what: "uniforms",
                got: n,
                expected: rows,
                rows,
                cols: 1,
            });
        }
        match self {
            Uniforms::Given(u) => {
                if let Some(row) = u.iter().position(|v| !(0.0..1.0).contains(v)) {
                    return Err(Error::InvalidSampling {
                        row,
                        name: "u",
                        value: u[row].to_string(),
                        reason: "must be in [0, 1)",
                    });
                }
                Ok(u.to_vec())
            }
            Uniforms::Philox { seed, offsets } => {
                Ok(offsets.iter().map(|&o| uniform(*seed, o)).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_outside_their_domains_are_refused_naming_the_row() {
        let ok = SamplingParams::default();
        assert!(ok.validate(0).is_ok() && SamplingParams::greedy().validate(0).is_ok());
        for (p, name) in [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..ok
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..ok
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: f32::INFINITY,
                    ..ok
                },
                "temperature",
            ),
            (
                SamplingParams {
                    temperature: 1e-40,
                    ..ok
                },
                "temperature",
            ),
            (SamplingParams { top_p: 0.0, ..ok }, "top_p"),
            (SamplingParams { top_p: 1.5, ..ok }, "top_p"),
            (
                SamplingParams {
                    top_p: f32::NAN,
                    ..ok
                },
                "top_p",
            ),
            (SamplingParams { min_p: -0.1, ..ok }, "min_p"),
            (
                SamplingParams {
                    min_p: f32::NAN,
                    ..ok
                },
                "min_p",
            ),
        ] {
            let e = p.validate(7).unwrap_err().to_string();
            assert!(e.contains("row 7") && e.contains(name), "{e}");
        }
    }

    #[test]
    fn given_uniforms_are_checked() {
        assert!(Uniforms::Given(&[0.0, 0.999]).resolve(2).is_ok());
        let e = Uniforms::Given(&[0.5, 1.0])
            .resolve(2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1"), "{e}");
        assert!(Uniforms::Given(&[0.5]).resolve(2).is_err());
        let u = Uniforms::Philox {
            seed: 1,
            offsets: &[5, 6],
        }
        .resolve(2)
        .unwrap();
        assert_eq!(u, vec![uniform(1, 5), uniform(1, 6)]);
    }
}

#[cfg(test)]
mod oracle_tests {
    use super::*;
    use crate::oracle::sample;
    use crate::Shape;

    const NINF: f32 = f32::NEG_INFINITY;

    fn one(z: &[f32], p: SamplingParams, u: f32) -> crate::oracle::SampleOracle {
        sample(z, Shape::new(1, z.len()), &[p], &[u])[0]
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let r = one(&[1.0, 3.0, 2.0, 3.0], SamplingParams::greedy(), 0.9);
        assert_eq!((r.token, r.kept), (1, 2));
        assert!((r.logprob + 2f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn inverse_cdf_in_index_order() {
        // p = (1/4, 1/4, 1/2): u below 1/4 draws 0, below 1/2 draws 1, else 2.
        let z = [0.0, 0.0, 2f32.ln()];
        let p = SamplingParams::default();
        assert_eq!(one(&z, p, 0.2).token, 0);
        assert_eq!(one(&z, p, 0.3).token, 1);
        assert_eq!(one(&z, p, 0.6).token, 2);
        assert!((one(&z, p, 0.6).logprob - 0.5f64.ln()).abs() < 1e-7);
    }

    #[test]
    fn filters_keep_ties_and_follow_the_order() {
        let z = [1.0, 3.0, 2.0, 3.0, NINF, 0.0];
        // top-k 1 keeps both 3s (ties at the boundary).
        let r = one(
            &z,
            SamplingParams {
                top_k: 1,
                ..Default::default()
            },
            0.7,
        );
        assert_eq!((r.kept, r.token), (2, 3));
        // top-k 3 keeps 3, 3, 2.
        assert_eq!(
            one(
                &z,
                SamplingParams {
                    top_k: 3,
                    ..Default::default()
                },
                0.0
            )
            .kept,
            3
        );
        // top-p 0.5 of p proportional to e^z: the two 3s hold 0.79 of the mass.
        assert_eq!(
            one(
                &z,
                SamplingParams {
                    top_p: 0.5,
                    ..Default::default()
                },
                0.0
            )
            .kept,
            2
        );
        // min-p 0.3: e^(2 - 3) = 0.37 stays, e^(1 - 3) = 0.14 goes.
        assert_eq!(
            one(
                &z,
                SamplingParams {
                    min_p: 0.3,
                    ..Default::default()
                },
                0.0
            )
            .kept,
            3
        );
        // -inf is never kept, even with no filter.
        assert_eq!(one(&z, SamplingParams::default(), 0.0).kept, 5);
    }

    #[test]
    fn rows_without_a_token() {
        let p = SamplingParams::default();
        assert_eq!(one(&[1.0, f32::NAN], p, 0.5).status, SampleStatus::NanRow);
        assert_eq!(
            one(&[f32::INFINITY, 1.0], p, 0.5).status,
            SampleStatus::PosInfRow
        );
        let r = one(&[NINF, NINF], p, 0.5);
        assert_eq!((r.status, r.token), (SampleStatus::AllMasked, NO_TOKEN));
    }
}
