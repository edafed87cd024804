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

/// What the f64 cross-entropy oracle gives.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossEntropyOracle {
    /// The reduced loss (the sum for `Reduction::None`).
    pub loss: f64,
    /// Per-row losses.
    pub per_row: Vec<f64>,
    /// Per-row logsumexp of `logits / T`.
    pub lse: Vec<f64>,
    /// Gradient with respect to the logits.
    pub grad: Vec<f64>,
}

/// Cross-entropy in f64, PyTorch's `F.cross_entropy` with its options, plus temperature and
/// z-loss. Mirrors shaders/cross_entropy.wgsl. Out-of-range targets give NaN loss and zero
/// gradient here; the API refuses them before.
pub fn cross_entropy<T: Element>(
    x: &[T],
    targets: &[i64],
    shape: Shape,
    options: &crate::options::CrossEntropyOptions,
) -> CrossEntropyOracle {
    use crate::options::Reduction;
    let t = f64::from(options.temperature);
    let eps = f64::from(options.label_smoothing);
    let zl = f64::from(options.z_loss);
    let c = shape.cols as f64;
    let w = |j: usize| options.weight.as_ref().map_or(1.0, |w| f64::from(w[j]));
    let w_sum: f64 = (0..shape.cols).map(w).sum();
    let counted =
        |tgt: i64| tgt != i64::from(options.ignore_index) && (0..shape.cols as i64).contains(&tgt);
    let denom: f64 = targets
        .iter()
        .filter(|&&tg| counted(tg))
        .map(|&tg| w(tg as usize))
        .sum();
    let mut scale = f64::from(options.grad_scale);
    if options.reduction == Reduction::Mean {
        scale /= denom;
    }
    let mut out = CrossEntropyOracle {
        loss: 0.0,
        per_row: vec![],
        lse: vec![],
        grad: vec![],
    };
    for (row, &tg) in rows(x, shape).zip(targets) {
        let s = RowStats::of(&row, t);
        let lse = s.lse(t);
        out.lse.push(lse);
        if !counted(tg) {
            let ignored = tg == i64::from(options.ignore_index);
            out.per_row.push(if ignored { 0.0 } else { f64::NAN });
            out.grad.extend(std::iter::repeat_n(0.0, row.len()));
            continue;
        }
        let tg = tg as usize;
        if s.nan_row() {
            out.per_row.push(f64::NAN);
            out.grad.extend(std::iter::repeat_n(f64::NAN, row.len()));
            continue;
        }
        let logp = |z: f64| (z - s.max) / t - s.sum.ln();
        let mut loss = -(1.0 - eps) * w(tg) * logp(row[tg]);
        if eps > 0.0 {
            loss -= eps / c
                * row
                    .iter()
                    .enumerate()
                    .map(|(j, &z)| w(j) * logp(z))
                    .sum::<f64>();
        }
        loss += zl * lse * lse;
        out.per_row.push(loss);
        for (j, &z) in row.iter().enumerate() {
            let p = ((z - s.max) / t).exp() / s.sum;
            let onehot = if j == tg { 1.0 } else { 0.0 };
            let g = (1.0 - eps) * w(tg) * (p - onehot)
                + eps / c * (w_sum * p - w(j))
                + 2.0 * zl * lse * p;
            out.grad.push(g * scale / t);
        }
    }
    let sum: f64 = out.per_row.iter().sum();
    out.loss = match options.reduction {
        Reduction::Mean => sum / denom,
        _ => sum,
    };
    out
}

/// Softmax backward (`log = false`: `y (dy - sum dy y)`) or log_softmax backward (`log =
/// true`: `dy - exp(y) sum dy`) in f64. Mirrors shaders/backward.wgsl.
pub fn softmax_backward<T: Element>(log: bool, y: &[T], dy: &[T], shape: Shape) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for (yr, dr) in rows(y, shape).zip(rows(dy, shape)) {
        if log {
            let s: f64 = dr.iter().sum();
            out.extend(yr.iter().zip(&dr).map(|(y, d)| d - y.exp() * s));
        } else {
            let s: f64 = yr.iter().zip(&dr).map(|(y, d)| y * d).sum();
            out.extend(yr.iter().zip(&dr).map(|(y, d)| y * (d - s)));
        }
    }
    out
}

/// What the f64 sampling oracle gives for one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOracle {
    /// The token ([`crate::sampling::NO_TOKEN`] where the row yields none).
    pub token: u32,
    /// Why there is no token, or `Ok`.
    pub status: crate::sampling::SampleStatus,
    /// Log-probability of the token under `softmax(z / T)` (at T = 0 the limit: minus the
    /// log of the number of maxima); NaN without a token.
    pub logprob: f64,
    /// How many tokens the filters kept (at T = 0 the maxima); 0 without a token.
    pub kept: usize,
    /// The logit threshold the filters settled on: kept tokens have `z >= threshold`.
    pub threshold: f64,
    /// Distance from `u` times the kept mass to the nearest step of the kept CDF, over the
    /// kept mass: below the f32 error of a GPU's sums (about `1e-6`), the GPU may draw a
    /// neighbour of this token. Infinite at T = 0.
    pub margin: f64,
    /// How close the filters came to keeping one token more or fewer, relative: top-p's
    /// goal from the nearest step of the mass it accumulates (over that mass), min-p's
    /// threshold from the nearest probability (over the threshold). Below the f32 error of
    /// a GPU's sums, its kept set may differ by the tokens at that boundary (and its draw
    /// with them). Infinite where no such filter applies (top-k is exact).
    pub filter_margin: f64,
}

/// Sampling in f64 with exactly the semantics of [`crate::sampling`]: one row of `x` per
/// entry of `params` and `u`. Rows are independent.
pub fn sample<T: Element>(
    x: &[T],
    shape: Shape,
    params: &[crate::sampling::SamplingParams],
    u: &[f32],
) -> Vec<SampleOracle> {
    rows(x, shape)
        .zip(params)
        .zip(u)
        .map(|((row, p), &u)| sample_row(&row, p, f64::from(u)))
        .collect()
}

/// Each row's filtered, renormalised probabilities in f64 (the distribution [`sample`] draws
/// from): zeros where removed, a share of 1 for each maximum at T = 0, NaN over rows without
/// a token.
pub fn sample_probs<T: Element>(
    x: &[T],
    shape: Shape,
    params: &[crate::sampling::SamplingParams],
) -> Vec<f64> {
    rows(x, shape)
        .zip(params)
        .flat_map(|(row, p)| {
            let r = sample_row(&row, p, 0.0);
            if r.status != crate::sampling::SampleStatus::Ok {
                return vec![f64::NAN; row.len()];
            }
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if p.is_greedy() {
                let share = 1.0 / r.kept as f64;
                return row
                    .iter()
                    .map(|&v| if v == m { share } else { 0.0 })
                    .collect();
            }
            let t = f64::from(p.temperature);
            let min_e = f64::from(p.min_p);
            let kept = |v: f64| {
                let e = ((v - m) / t).exp();
                (v > f64::NEG_INFINITY && v >= r.threshold && e >= min_e).then_some(e)
            };
            let mass: f64 = row.iter().filter_map(|&v| kept(v)).sum();
            row.iter()
                .map(|&v| kept(v).map_or(0.0, |e| e / mass))
                .collect()
        })
        .collect()
}

fn sample_row(z: &[f64], p: &crate::sampling::SamplingParams, u: f64) -> SampleOracle {
    use crate::sampling::{SampleStatus, NO_TOKEN};
    let none = |status| SampleOracle {
        token: NO_TOKEN,
        status,
        logprob: f64::NAN,
        kept: 0,
        threshold: f64::NAN,
        margin: f64::INFINITY,
        filter_margin: f64::INFINITY,
    };
    if z.iter().any(|v| v.is_nan()) {
        return none(SampleStatus::NanRow);
    }
    if z.contains(&f64::INFINITY) {
        return none(SampleStatus::PosInfRow);
    }
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return none(SampleStatus::AllMasked);
    }
    if p.is_greedy() {
        let token = z.iter().position(|&v| v == m).unwrap_or(0);
        let ties = z.iter().filter(|&&v| v == m).count();
        return SampleOracle {
            token: token as u32,
            status: SampleStatus::Ok,
            logprob: -(ties as f64).ln(),
            kept: ties,
            threshold: m,
            margin: f64::INFINITY,
            filter_margin: f64::INFINITY,
        };
    }
    let t = f64::from(p.temperature);
    let e: Vec<f64> = z.iter().map(|&v| ((v - m) / t).exp()).collect();
    let total: f64 = e.iter().sum();
    // Logits in descending order (ties in index order), for the k-th largest and top-p.
    let mut order: Vec<usize> = (0..z.len()).filter(|&j| z[j] > f64::NEG_INFINITY).collect();
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
    let mut threshold = f64::NEG_INFINITY;
    let k = p.top_k as usize;
    if k > 0 && k < z.len() {
        // The k-th largest counting -inf logits too: with fewer finite logits, all stay.
        threshold = order.get(k - 1).map_or(f64::NEG_INFINITY, |&j| z[j]);
    }
    let mut filter_margin = f64::INFINITY;
    if p.top_p < 1.0 {
        let kept: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&j| z[j] >= threshold)
            .collect();
        let mass: f64 = kept.iter().map(|&j| e[j]).sum();
        let goal = f64::from(p.top_p) * mass;
        let mut cum = 0.0;
        for &j in &kept {
            let before = cum;
            cum += e[j];
            if cum >= goal {
                threshold = threshold.max(z[j]);
                filter_margin = (cum - goal).min(goal - before) / mass;
                break;
            }
        }
    }
    if p.min_p > 0.0 {
        let min_p = f64::from(p.min_p);
        threshold = threshold.max(m + t * min_p.ln());
        let nearest = e
            .iter()
            .map(|&v| (v - min_p).abs())
            .fold(f64::INFINITY, f64::min);
        filter_margin = filter_margin.min(nearest / min_p);
    }
    let kept = |j: usize| z[j] > f64::NEG_INFINITY && z[j] >= threshold;
    let mass: f64 = (0..z.len()).filter(|&j| kept(j)).map(|j| e[j]).sum();
    let goal = u * mass;
    let (mut cum, mut token, mut margin) = (0.0, None, f64::INFINITY);
    for j in (0..z.len()).filter(|&j| kept(j)) {
        let before = cum;
        cum += e[j];
        margin = margin.min((cum - goal).abs()).min((before - goal).abs());
        if token.is_none() && cum > goal {
            token = Some(j);
        }
    }
    let token = token.unwrap_or_else(|| (0..z.len()).rev().find(|&j| kept(j)).unwrap_or(0));
    SampleOracle {
        token: token as u32,
        status: SampleStatus::Ok,
        logprob: (z[token] - m) / t - total.ln(),
        kept: (0..z.len()).filter(|&j| kept(j)).count(),
        threshold,
        margin: margin / mass,
        filter_margin,
    }
}
