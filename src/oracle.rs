//! The CPU oracle: the forward operations in f64, with exactly the edge-case semantics of
//! the GPU kernels (shaders/softmax.wgsl, whose `main` this module mirrors) and of PyTorch.
//! Every GPU result is tested against it; users can check any result with it too.

use crate::dtype::Element;
use crate::options::{MaskedRows, Shape, SoftmaxOptions};

/// Per-row quantities every forward operation derives from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowStats {
    /// Max of the finite logits (`-inf` when there is none).
    pub max: f64,
    /// `sum_j exp((z_j - max) / T)` over the finite logits.
    pub sum: f64,
    /// Whether the row holds a NaN.
    pub has_nan: bool,
    /// Whether the row holds `+inf`.
    pub has_pos_inf: bool,
}

impl RowStats {
    /// Stats of one row at temperature `t`.
    pub fn of(row: &[f64], t: f64) -> Self {
        let has_nan = row.iter().any(|v| v.is_nan());
        let has_pos_inf = row.contains(&f64::INFINITY);
        let max = row
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let sum = row
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| ((v - max) / t).exp())
            .sum();
        RowStats {
            max,
            sum,
            has_nan,
            has_pos_inf,
        }
    }

    /// True when the row is entirely `-inf`.
    pub fn empty(&self) -> bool {
        !self.has_nan && !self.has_pos_inf && self.sum == 0.0
    }

    /// Whether softmax and log_softmax of the row are NaN (PyTorch: any NaN, any `+inf`,
    /// or all `-inf`).
    pub fn nan_row(&self) -> bool {
        self.has_nan || self.has_pos_inf || self.sum == 0.0
    }

    /// `logsumexp` of the row: NaN with a NaN, `+inf` with `+inf`, `-inf` when empty.
    pub fn lse(&self, t: f64) -> f64 {
        if self.has_nan {
            f64::NAN
        } else if self.has_pos_inf {
            f64::INFINITY
        } else if self.sum == 0.0 {
            f64::NEG_INFINITY
        } else {
            self.max / t + self.sum.ln()
        }
    }
}

fn rows<T: Element>(x: &[T], shape: Shape) -> impl Iterator<Item = Vec<f64>> + '_ {
    x.chunks(shape.cols.max(1))
        .take(shape.rows)
        .map(|r| r.iter().map(|v| f64::from(v.to_f32())).collect())
}

fn masked_value(options: &SoftmaxOptions, stats: &RowStats) -> f64 {
    if stats.empty() && options.masked_rows == MaskedRows::Zeros {
        0.0
    } else {
        f64::NAN
    }
}

/// Softmax in f64. Mirrors the GPU `softmax` of shaders/softmax.wgsl.
pub fn softmax<T: Element>(x: &[T], shape: Shape, options: &SoftmaxOptions) -> Vec<f64> {
    let t = f64::from(options.temperature);
    let mut out = Vec::with_capacity(x.len());
    for row in rows(x, shape) {
        let s = RowStats::of(&row, t);
        if s.nan_row() {
            out.extend(std::iter::repeat_n(masked_value(options, &s), row.len()));
        } else {
            out.extend(row.iter().map(|&z| ((z - s.max) / t).exp() / s.sum));
        }
    }
    out
}

/// Log-softmax in f64. Mirrors the GPU `log_softmax` of shaders/softmax.wgsl.
pub fn log_softmax<T: Element>(x: &[T], shape: Shape, options: &SoftmaxOptions) -> Vec<f64> {
    let t = f64::from(options.temperature);
    let mut out = Vec::with_capacity(x.len());
    for row in rows(x, shape) {
        let s = RowStats::of(&row, t);
        if s.nan_row() {
            out.extend(std::iter::repeat_n(masked_value(options, &s), row.len()));
        } else {
            let log_sum = s.sum.ln();
            out.extend(row.iter().map(|&z| (z - s.max) / t - log_sum));
        }
    }
    out
}

/// Logsumexp in f64, one value per row. Mirrors the GPU `logsumexp` of shaders/softmax.wgsl.
pub fn logsumexp<T: Element>(x: &[T], shape: Shape, options: &SoftmaxOptions) -> Vec<f64> {
    let t = f64::from(options.temperature);
    rows(x, shape)
        .map(|row| RowStats::of(&row, t).lse(t))
        .collect()
}
