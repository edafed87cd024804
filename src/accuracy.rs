//! The accuracy contract: how far a GPU result may be from the f64 [`crate::oracle`],
//! and a checker that measures it.
//!
//! With `eps = 2^-24` (half an f32 ulp), `a = (z - m) / T` the shifted, scaled logit and
//! `L = log2(cols)`, an **f32** output satisfies
//!
//! - softmax: `|p - p*| <= eps * (SOFTMAX.base + SOFTMAX.per_arg * |a| + SOFTMAX.per_log_cols * L) * p* + f32::MIN_POSITIVE`
//! - log_softmax: `|l - l*| <= eps * (LOG_SOFTMAX.base + LOG_SOFTMAX.per_arg * |a| + LOG_SOFTMAX.per_log_cols * L)`
//! - logsumexp: `|s - s*| <= eps * (LOGSUMEXP.base + LOGSUMEXP.per_arg * |m / T| + LOGSUMEXP.per_log_cols * L)`
//!
//! Why this shape: `a` is computed in f32 (`z - m` rounded, times a rounded `1/T`), which
//! is `~1.5 eps |a|` of absolute error, and WGSL allows `exp` an error of `3 + 2|x|` ulp, so
//! the error of `exp(a)` grows with `|a|`; the row sum adds a few roundings per level of
//! its reduction tree, `~log2(cols)`; the final division and `log` add a constant. The
//! `f32::MIN_POSITIVE` floor allows adapters that flush subnormal results to zero.
//!
//! **f16 and bf16** outputs are the f32 result rounded once to their type, so they are within
//! one ulp of their type (at the exact value) **plus** the f32 bound above. Almost everywhere
//! the f32 bound is far below an ulp of a 16-bit type and this is "within 1 ulp" (measured:
//! f16 outputs correctly rounded, bf16 within 1 ulp). The f32 term matters only near zero:
//! - log-probabilities of near-certain tokens: the top entry of a row whose maximum
//!   dominates is `-log(1 + r)` with tiny `r` (about -2.07e-9 for logits `(1, 0)` at
//!   T = 0.05), and `log` of an f32 sum cannot resolve `1 + r`: the output is 0, within the
//!   log_softmax bound's absolute `8 eps` but many bf16 ulps away;
//! - probabilities below `f32::MIN_POSITIVE` (bf16 has f32's exponent range, down to
//!   9.2e-41): adapters may flush them to 0, within the softmax bound's absolute floor.
//!
//! logsumexp is f32 for every input type.
//!
//! NaN equals NaN and infinities equal same-sign infinities; any other special value
//! mismatch fails.

use crate::dtype::{DType, Element};
use crate::options::{Forward, Shape, SoftmaxOptions};
use crate::oracle::{self, RowStats};

/// Half an f32 ulp at 1.
pub const EPS: f64 = 1.0 / 16_777_216.0;

/// The coefficients of one bound (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// Constant part, in units of `EPS`.
    pub base: f64,
    /// Per unit of `|a|` (or `|m / T|` for logsumexp).
    pub per_arg: f64,
    /// Per doubling of `cols`.
    pub per_log_cols: f64,
}

impl Bound {
    fn eval(&self, arg: f64, cols: usize) -> f64 {
        EPS * (self.base + self.per_arg * arg.abs() + self.per_log_cols * (cols as f64).log2())
    }
}

/// Bound of f32 softmax outputs (relative to `p*`).
pub const SOFTMAX: Bound = Bound {
    base: 8.0,
    per_arg: 4.0,
    per_log_cols: 2.0,
};
/// Bound of f32 log_softmax outputs (absolute).
pub const LOG_SOFTMAX: Bound = Bound {
    base: 8.0,
    per_arg: 4.0,
    per_log_cols: 2.0,
};
/// Bound of logsumexp outputs (absolute).
pub const LOGSUMEXP: Bound = Bound {
    base: 8.0,
    per_arg: 2.0,
    per_log_cols: 2.0,
};

/// One element outside the contract.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Flat index.
    pub index: usize,
    /// What the GPU gave.
    pub got: f64,
    /// The oracle's exact value.
    pub want: f64,
    /// `|got - want|`.
    pub error: f64,
    /// What the contract allows there.
    pub allowed: f64,
}

/// What [`check`] measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Elements compared.
    pub count: usize,
    /// Largest `error / allowed` over all finite elements (at most 1 when the contract holds).
    pub worst_ratio: f64,
    /// Largest distance from the correctly rounded value, in ulps of the output type at the
    /// exact value (0 when every element is correctly rounded).
    pub worst_ulps: f64,
    /// Elements equal to the exact value rounded to the output type.
    pub correctly_rounded: usize,
    /// Elements outside the contract (all of them are counted, the first 8 kept).
    pub violations: usize,
    /// The first violations.
    pub first: Vec<Violation>,
}

impl Report {
    /// True when every element meets the contract.
    pub fn ok(&self) -> bool {
        self.violations == 0
    }

    /// Share of elements that are exactly the correctly rounded value.
    pub fn correctly_rounded_share(&self) -> f64 {
        self.correctly_rounded as f64 / self.count.max(1) as f64
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} elements, worst error/allowed {:.3}, worst {:.2} ulp, {:.4}% correctly rounded, {} violations",
            self.count,
            self.worst_ratio,
            self.worst_ulps,
            100.0 * self.correctly_rounded_share(),
            self.violations
        )?;
        for v in &self.first {
            write!(
                f,
                "\n  [{}] got {:e} want {:e} error {:e} allowed {:e}",
                v.index, v.got, v.want, v.error, v.allowed
            )?;
        }
        Ok(())
    }
}

/// The spacing of `dtype` at `x` (the ulp), for finite `x`.
pub fn ulp(dtype: DType, x: f64) -> f64 {
    let (mantissa_bits, min_exp) = match dtype {
        DType::F32 => (23, -126),
        DType::F16 => (10, -14),
        DType::BF16 => (7, -126),
    };
    let e = if x == 0.0 {
        min_exp
    } else {
        (x.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(e - mantissa_bits)
}

/// `x` rounded to `dtype` (to nearest, ties to even).
pub fn round_to(dtype: DType, x: f64) -> f64 {
    match dtype {
        DType::F32 => f64::from(x as f32),
        DType::F16 => f64::from(half::f16::from_f64(x)),
        DType::BF16 => f64::from(half::bf16::from_f64(x)),
    }
}

fn same_special(got: f64, want: f64) -> Option<bool> {
    if want.is_nan() || got.is_nan() {
        return Some(want.is_nan() && got.is_nan());
    }
    if want.is_infinite() || got.is_infinite() {
        return Some(got == want);
    }
    None
}

/// Compares `got` (the GPU's output of `op` on `x`, in dtype `U`) with the oracle under the
/// contract. For logsumexp `got` has one f32 per row.
pub fn check<T: Element, U: Element>(
    op: Forward,
    x: &[T],
    shape: Shape,
    options: &SoftmaxOptions,
    got: &[U],
) -> Report {
    let t = f64::from(options.temperature);
    let want = match op {
        Forward::Softmax => oracle::softmax(x, shape, options),
        Forward::LogSoftmax => oracle::log_softmax(x, shape, options),
        Forward::LogSumExp => oracle::logsumexp(x, shape, options),
    };
    let mut r = Report {
        count: want.len(),
        ..Default::default()
    };
    if got.len() != want.len() {
        r.violations = want.len().max(1);
        return r;
    }
    let per_row = if op == Forward::LogSumExp {
        1
    } else {
        shape.cols
    };
    for (row, chunk) in x.chunks(shape.cols).enumerate().take(shape.rows) {
        let zs: Vec<f64> = chunk.iter().map(|v| f64::from(v.to_f32())).collect();
        let stats = RowStats::of(&zs, t);
        for (k, z) in zs.iter().take(per_row).enumerate() {
            let i = row * per_row + k;
            let (g, w) = (f64::from(got[i].to_f32()), want[i]);
            let rounded = round_to(U::DTYPE, w);
            if g == rounded || (g.is_nan() && w.is_nan()) {
                r.correctly_rounded += 1;
            } else if g.is_finite() && rounded.is_finite() {
                r.worst_ulps = r.worst_ulps.max((g - rounded).abs() / ulp(U::DTYPE, w));
            }
            if g == w || g == rounded {
                continue;
            }
            let (error, allowed) = match same_special(g, w) {
                Some(true) => continue,
                Some(false) => ((g - w).abs(), 0.0),
                None => {
                    let error = (g - w).abs();
                    let f32_bound = match op {
                        Forward::Softmax => {
                            SOFTMAX.eval((z - stats.max) / t, shape.cols) * w
                                + f64::from(f32::MIN_POSITIVE)
                        }
                        Forward::LogSoftmax => LOG_SOFTMAX.eval((z - stats.max) / t, shape.cols),
                        Forward::LogSumExp => LOGSUMEXP.eval(stats.max / t, shape.cols),
                    };
                    let allowed = match U::DTYPE {
                        DType::F32 => f32_bound,
                        half => f32_bound + ulp(half, w),
                    };
                    (error, allowed)
                }
            };
            let ratio = if allowed > 0.0 {
                error / allowed
            } else {
                f64::INFINITY
            };
            r.worst_ratio = r.worst_ratio.max(ratio);
            if ratio > 1.0 {
                r.violations += 1;
                if r.first.len() < 8 {
                    r.first.push(Violation {
                        index: i,
                        got: g,
                        want: w,
                        error,
                        allowed,
                    });
                }
            }
        }
    }
    r
}

/// Deterministic pseudo-random logits (splitmix64), uniform in [-scale, scale]: the inputs
/// of the crate's tests.
pub fn random_logits(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The inputs the contract is tested on, natively and in the browser: each stresses an
/// error source: wide logit ranges (large |a|, tiny probabilities
/// down to underflow), long rows (deep sums), many near-ties, temperatures.
pub fn adversarial_inputs() -> Vec<(&'static str, Vec<f32>, Shape, SoftmaxOptions)> {
    let t1 = SoftmaxOptions::default();
    let mut ties = random_logits(4 * 4096, 1.0, 9);
    for v in ties.iter_mut() {
        *v = 1.0 + (*v * 8.0).round() * f32::EPSILON;
    }
    vec![
        (
            "wide range 160, 262144 cols",
            random_logits(2 * 262_144, 80.0, 1),
            Shape::new(2, 262_144),
            t1,
        ),
        (
            "range 20, 128256 cols",
            random_logits(2 * 128_256, 10.0, 2),
            Shape::new(2, 128_256),
            t1,
        ),
        (
            "range 2e4, 32000 cols",
            random_logits(4 * 32_000, 1e4, 3),
            Shape::new(4, 32_000),
            t1,
        ),
        ("near-ties, 4096 cols", ties, Shape::new(4, 4096), t1),
        (
            // Many terms of similar size: a running sum's error grows with the count.
            "golden-ratio sequence, 128256 cols",
            (0..32 * 128_256)
                .map(|i| ((i as f32 * 0.618_034).fract() - 0.5) * 40.0)
                .collect(),
            Shape::new(32, 128_256),
            t1,
        ),
        (
            "T = 0.05, 1000 cols",
            random_logits(8 * 1000, 4.0, 4),
            Shape::new(8, 1000),
            SoftmaxOptions::with_temperature(0.05),
        ),
        (
            "T = 7.3, 50000 cols",
            random_logits(2 * 50_000, 300.0, 5),
            Shape::new(2, 50_000),
            SoftmaxOptions::with_temperature(7.3),
        ),
        (
            "logits near 1e30",
            random_logits(4 * 999, 1.0, 6)
                .iter()
                .map(|v| 1e30 + v * 1e25)
                .collect(),
            Shape::new(4, 999),
            t1,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    fn bf16s(v: &[f64]) -> Vec<bf16> {
        v.iter().map(|&x| bf16::from_f64(x)).collect()
    }

    /// The near-certain token's log-probability, about -2.07e-9: 0 (what `log` of an f32 sum
    /// gives) is within the f32 term, a value 1e-3 off is not.
    #[test]
    fn bf16_log_probability_near_zero_takes_the_f32_term() {
        let x = bf16s(&[1.0, 0.0]);
        let (shape, o) = (Shape::new(1, 2), SoftmaxOptions::with_temperature(0.05));
        let exact = oracle::log_softmax(&x, shape, &o);
        assert!((exact[0] + 2.061e-9).abs() < 1e-12, "{}", exact[0]);
        let got = [bf16::ZERO, bf16::from_f64(exact[1])];
        assert!(check(Forward::LogSoftmax, &x, shape, &o, &got).ok());
        let off = [bf16::from_f64(-1e-3), bf16::from_f64(exact[1])];
        assert!(!check(Forward::LogSoftmax, &x, shape, &o, &off).ok());
    }

    /// A probability of e^-89 (2.2e-39, below f32::MIN_POSITIVE) may be flushed to 0.
    #[test]
    fn bf16_probability_below_the_f32_normals_may_flush() {
        let x = bf16s(&[0.0, -89.0]);
        let (shape, o) = (Shape::new(1, 2), SoftmaxOptions::default());
        let exact = oracle::softmax(&x, shape, &o);
        assert!(exact[1] < f64::from(f32::MIN_POSITIVE) && exact[1] > 0.0);
        let got = [bf16::from_f64(exact[0]), bf16::ZERO];
        assert!(check(Forward::Softmax, &x, shape, &o, &got).ok());
    }

    /// Away from zero the bound is one ulp: the correctly rounded value and its neighbour
    /// on the exact value's side pass, a value two ulps beyond it fails.
    #[test]
    fn bf16_elsewhere_is_within_one_ulp() {
        let x = bf16s(&[0.5, -0.25, 1.0]);
        let (shape, o) = (Shape::new(1, 3), SoftmaxOptions::default());
        let exact = oracle::softmax(&x, shape, &o);
        let moved = |ulps: f64| -> Vec<bf16> {
            exact
                .iter()
                .map(|&p| {
                    let r = round_to(DType::BF16, p);
                    let toward = if p >= r { 1.0 } else { -1.0 };
                    bf16::from_f64(r + toward * ulps * ulp(DType::BF16, p))
                })
                .collect()
        };
        assert!(check(Forward::Softmax, &x, shape, &o, &moved(0.0)).ok());
        assert!(check(Forward::Softmax, &x, shape, &o, &moved(1.0)).ok());
        let r = check(Forward::Softmax, &x, shape, &o, &moved(-2.0));
        assert_eq!(r.violations, 3, "{r}");
    }
}
