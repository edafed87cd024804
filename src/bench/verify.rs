//! The benchmark's check of its own outputs. After a case is timed,
//! [`Prepared::verify`](super::Prepared::verify) runs the operation once more and compares
//! three rows (the first, the middle and the last) with the f64 oracle, so that no figure is
//! reported for a kernel that computes the wrong thing. The forward operations must meet
//! the accuracy contract; cross-entropy and the backward operations the bounds that
//! tests/training.rs derives, with four times their slack.

use half::{bf16, f16};

use super::{BenchOp, Prepared};
use crate::accuracy::{self, EPS, SOFTMAX};
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::options::{CrossEntropyOptions, Forward, Reduction, Shape};
use crate::oracle;

/// Slack over the tests' bounds for the training operations.
const SLACK: f64 = 4.0;

/// The rows checked: the first, the middle and the last.
fn checked_rows(rows: usize) -> Vec<usize> {
    let mut v = vec![0, rows / 2, rows - 1];
    v.dedup();
    v
}

/// `got` within `tol` of `want`, NaN matching NaN and infinities matching themselves.
fn close(got: f64, want: f64, tol: f64) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= tol
}

impl Prepared<'_> {
    /// Runs the operation once and checks three of its rows against the f64 oracle (see the
    /// module); `Error::WrongResult` names the case and the first disagreement.
    pub fn verify(&self) -> Result<()> {
        match self.case.dtype {
            DType::F32 => self.verify_in::<f32>(),
            DType::F16 => self.verify_in::<f16>(),
            DType::BF16 => self.verify_in::<bf16>(),
        }
    }

    fn verify_in<T: Element>(&self) -> Result<()> {
        let c = &self.case;
        if let BenchOp::Sample { top_k } = c.op {
            return self.verify_sample::<T>(top_k);
        }
        let cols = c.shape.cols;
        let size = c.dtype.size();
        let rows = checked_rows(c.shape.rows);
        // Each row's outputs (in whole words), logsumexp and loss.
        let ((), out) = pollster::block_on(self.engine.host_op(|rb| {
            self.record(&mut rb.encoder)?;
            for &r in &rows {
                let start = (r * cols) as u64 * size;
                let first = start / 4 * 4;
                let end = (start + cols as u64 * size).div_ceil(4) * 4;
                rb.read(&self.y, first, end - first)?;
                rb.read(&self.lse, 4 * r as u64, 4)?;
                rb.read(&self.loss, 4 * r as u64, 4)?;
            }
            Ok(())
        }))?;
        for (k, &r) in rows.iter().enumerate() {
            let x: Vec<T> = self.logits[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| T::from_f32(v))
                .collect();
            let lead = ((r * cols) as u64 * size % 4) as usize;
            let got: Vec<T> =
                bytemuck::pod_collect_to_vec(&out[3 * k][lead..lead + cols * size as usize]);
            let word = |i: usize| f64::from(f32::from_le_bytes(out[i][..4].try_into().unwrap()));
            let (lse, loss) = (word(3 * k + 1), word(3 * k + 2));
            self.check_row(r, &x, &got, lse, loss)
                .map_err(|detail| Error::WrongResult {
                    what: format!(
                        "{} {:?} [{}, {cols}] row {r}",
                        c.op.name(),
                        c.dtype,
                        c.shape.rows
                    ),
                    detail,
                })?;
        }
        Ok(())
    }

    /// The sampling cases: each checked row's token, status and kept count against the
    /// oracle, the token wherever the oracle's margin leaves f32 sums no room to differ.
    fn verify_sample<T: Element>(&self, top_k: bool) -> Result<()> {
        let c = &self.case;
        let cols = c.shape.cols;
        let rows = checked_rows(c.shape.rows);
        let ((), out) = pollster::block_on(self.engine.host_op(|rb| {
            self.record(&mut rb.encoder)?;
            for &r in &rows {
                rb.read(&self.results, 16 * r as u64, 16)?;
            }
            Ok(())
        }))?;
        let p = [super::case::bench_sampling(top_k)];
        for (k, &r) in rows.iter().enumerate() {
            let x: Vec<T> = self.logits[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| T::from_f32(v))
                .collect();
            let u = [crate::sampling::uniform(super::case::BENCH_SEED, r as u64)];
            let want = oracle::sample(&x, Shape::new(1, cols), &p, &u)[0];
            let words: [u32; 4] = bytemuck::pod_read_unaligned(&out[k][..16]);
            let got = crate::sampling::Sample::from_words(words);
            // The kept set and the draw where no rounding can move them (see `SampleOracle`).
            let exact = want.filter_margin > 1e-5;
            let wrong = got.status != want.status
                || (exact && got.kept as usize != want.kept)
                || (exact && want.margin > 1e-5 && got.token != want.token);
            if wrong {
                return Err(Error::WrongResult {
                    what: format!(
                        "{} {:?} [{}, {cols}] row {r}",
                        c.op.name(),
                        c.dtype,
                        c.shape.rows
                    ),
                    detail: format!("{got:?}, want {want:?}"),
                });
            }
        }
        Ok(())
    }

    /// Row `r`'s logits `x`, its outputs `got`, logsumexp and loss (for the operations that
    /// write them) against the oracle; the first disagreement.
    fn check_row<T: Element>(
        &self,
        r: usize,
        x: &[T],
        got: &[T],
        lse: f64,
        loss: f64,
    ) -> std::result::Result<(), String> {
        let c = &self.case;
        let cols = c.shape.cols;
        let one = Shape::new(1, cols);
        // The error of a sum of `cols` terms, in units of the largest term's rounding.
        let depth = 8.0 + 3.0 * (cols as f64).log2();
        let unit = |w: f64| match T::DTYPE {
            DType::F32 => 0.0,
            d => accuracy::ulp(d, w),
        };
        // Within `tol` of the oracle, or equal to its value rounded to T (an overflow to
        // infinity included).
        let first_miss = |want: &[f64], tol: &dyn Fn(usize, f64) -> f64| {
            got.iter()
                .zip(want)
                .enumerate()
                .find(|&(i, (g, &w))| {
                    let g = g.to_f32();
                    g.to_bits() != T::from_f32(w as f32).to_f32().to_bits()
                        && !close(f64::from(g), w, tol(i, w))
                })
                .map(|(i, (g, &w))| format!("[{i}] = {g:?}, want {w}"))
        };
        let miss = match c.op {
            BenchOp::Forward(Forward::LogSumExp) => {
                let report = accuracy::check(Forward::LogSumExp, x, one, &c.options, &[lse as f32]);
                (!report.ok()).then(|| format!("logsumexp {lse}: {report}"))
            }
            BenchOp::Forward(op) => {
                let report = accuracy::check(op, x, one, &c.options, got);
                (!report.ok()).then(|| report.to_string())
            }
            BenchOp::CrossEntropy => {
                // The mean over all rows: the row's gradient is its sum's over `rows`.
                let o = CrossEntropyOptions {
                    reduction: Reduction::Sum,
                    ..Default::default()
                };
                let t = [self.targets_host[r]];
                let want = oracle::cross_entropy(x, &t, one, &o);
                let zs = x.iter().map(|v| f64::from(v.to_f32()));
                let spread = zs.clone().fold(f64::MIN, f64::max) - zs.fold(f64::MAX, f64::min);
                let tol_log = |w: f64| {
                    SLACK
                        * 4.0
                        * EPS
                        * (8.0 + 4.0 * spread + 2.0 * (cols as f64).log2())
                        * (1.0 + w.abs())
                };
                let scale = 1.0 / c.shape.rows as f64;
                let grad: Vec<f64> = want.grad.iter().map(|g| g * scale).collect();
                let bound = SLACK
                    * scale
                    * EPS
                    * (SOFTMAX.base
                        + SOFTMAX.per_arg * spread
                        + SOFTMAX.per_log_cols * (cols as f64).log2());
                if !close(loss, want.per_row[0], tol_log(want.per_row[0])) {
                    Some(format!("loss {loss}, want {}", want.per_row[0]))
                } else if !close(lse, want.lse[0], tol_log(want.lse[0])) {
                    Some(format!("logsumexp {lse}, want {}", want.lse[0]))
                } else {
                    first_miss(&grad, &|_, w| bound + SLACK * 8.0 * EPS * w.abs() + unit(w))
                }
            }
            BenchOp::Backward { log } => {
                // The bench's `dy` is its `y` (the logits).
                let want = oracle::softmax_backward(log, x, x, one);
                let v: Vec<f64> = x.iter().map(|v| f64::from(v.to_f32())).collect();
                let row_abs: f64 = v
                    .iter()
                    .map(|&d| if log { d.abs() } else { d.abs() * d.abs() })
                    .sum();
                first_miss(&want, &|i, w| {
                    let terms = if log {
                        v[i].abs() + v[i].exp() * row_abs
                    } else {
                        v[i].abs() * (v[i].abs() + row_abs)
                    };
                    SLACK * EPS * depth * terms + unit(w) + f64::from(f32::MIN_POSITIVE)
                })
            }
            // Checked by `verify_sample`, which `verify_in` hands them to.
            BenchOp::Sample { .. } => None,
        };
        miss.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_first_middle_and_last_rows() {
        assert_eq!(checked_rows(1), vec![0]);
        assert_eq!(checked_rows(2), vec![0, 1]);
        assert_eq!(checked_rows(256), vec![0, 128, 255]);
    }
}
