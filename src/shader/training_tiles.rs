//! Packed rows of the training kernels: the generated `packed_run(row0)` of
//! shaders/cross_entropy.wgsl and shaders/backward.wgsl, for CPU adapters' short rows.
//!
//! A lane takes the run of rows that fill whole blocks (`rows_filling_blocks`), as
//! `loss_and_grad_run` and `backward_run` do, but where the run holds at most
//! `MAX_TRAINING_RUN_BLOCKS` blocks, of rows of up to 64 logits, every logit sits at a position known
//! when the shader is built: the run's blocks are loaded once, every row's reductions and
//! outputs are plain statements on named values, and the blocks are stored once at the end.
//! The loops read each block twice (a pass for the row's sums, one for its outputs), the
//! blocks a row shares with its neighbours more often, and recompute every exponential.
//! The forward kernels' unrolled packed rows are the model (src/shader/packed.rs).

use std::fmt::Write;

use super::packed::{component, screen_row, sum_of};
use super::rows_filling_blocks;

/// The most blocks of a run the training kernels unroll, and the longest rows. Lavapipe, f32,
/// ratio to copy of the loops against unrolled runs, two alternating runs each,
/// cross-entropy / softmax backward / log-softmax backward:
/// - 1048576 x 10 (runs of 4 rows, 5 blocks): 0.10-0.12 / 0.30-0.45 / 0.28-0.29 against
///   0.16-0.24 / 0.54-0.65 / 0.49-0.54;
/// - 1048576 x 13 (8 rows, 13 blocks): 0.15 / 0.25-0.26 / 0.28 against 0.16-0.19 /
///   0.42-0.47 / 0.35-0.39;
/// - 262144 x 32 (1 row, 4 blocks): 0.15-0.16 / 0.39-0.40 / 0.39-0.69 against 0.26-0.31 /
///   0.60-0.71 / 0.58;
/// - 131072 x 64 (1 row, 8 blocks): 0.23-0.24 / 0.42-0.46 / 0.38-0.50 against 0.25-0.26 /
///   0.50-0.58 / 0.39-0.41;
/// - 65536 x 128 (1 row, 16 blocks): 0.24-0.35 / 0.43-0.67 / 0.42-0.44 against 0.31-0.33 /
///   0.42-0.57 / 0.37-0.40, where a row fills its blocks and the loops mask nothing;
/// - longer runs lost (65536 x 100, 2 rows, 25 blocks: log-softmax backward 0.48-0.49
///   against 0.39-0.41; 32768 x 256, 32 blocks: cross-entropy 0.28-0.29 against 0.25,
///   log-softmax backward 0.53 against 0.38-0.39): the held blocks of two tensors and their
///   outputs no longer fit the registers.
const MAX_TRAINING_RUN_BLOCKS: u64 = 16;
const MAX_TRAINING_PACKED_COLS: u64 = 64;

/// Whether the training kernels unroll a run of rows of `cols` logits (`packed_run`).
pub(crate) fn packs_training_rows(cols: u64) -> bool {
    cols <= MAX_TRAINING_PACKED_COLS
        && rows_filling_blocks(cols) * cols <= 8 * MAX_TRAINING_RUN_BLOCKS
}

/// The logits of one run: `rows` rows of `cols`, `blocks` blocks of 8.
struct Run {
    rows: usize,
    cols: usize,
    blocks: usize,
}

impl Run {
    fn of(cols: u32) -> Run {
        let cols = cols as usize;
        assert!(
            packs_training_rows(cols as u64),
            "rows of {cols} are not unrolled"
        );
        let rows = rows_filling_blocks(cols as u64) as usize;
        Run {
            rows,
            cols,
            blocks: rows * cols / 8,
        }
    }

    /// The elements of row `i` of the run.
    fn row(&self, i: usize) -> std::ops::Range<usize> {
        i * self.cols..(i + 1) * self.cols
    }

    /// `store_block` of every block of the run from the outputs `o_k`, at `base`.
    fn stores(&self, base: &str) -> String {
        let mut s = String::new();
        let o = |from: usize| {
            (from..from + 4)
                .map(|k| format!("o_{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for b in 0..self.blocks {
            let _ = writeln!(
                s,
                "    store_block({base} + {b}u, Block(vec4<f32>({}), vec4<f32>({})));",
                o(8 * b),
                o(8 * b + 4)
            );
        }
        s
    }
}

/// Component `k % 8` of held block `{name}_{k / 8}`.
fn held(name: &str, k: usize) -> String {
    format!("{name}_{}.{}", k / 8, component(k % 8))
}

/// Cross-entropy's `packed_run(row0)` for rows of `cols` logits, with the gradient where
/// `grad`: each row's online state from its screened logits (as the forward packed rows),
/// its exponentials kept for the gradient; its logsumexp and loss (with label smoothing the
/// sum of w_j (m - z_j) from the same values); then `grad_of_exp` of every logit. The
/// target's logit is read from the logits (one load a row) before any block is stored, so
/// that an in-place gradient cannot overwrite it first.
pub(crate) fn ce_run_source(cols: u32, grad: bool) -> String {
    let run = Run::of(cols);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         // Blocks of the gradient's layout, the logits at the same offset modulo 8 (wrapping\n    \
         // difference: the sum wraps back into range).\n    \
         let yb = (params.y_base + row0 * params.cols) / 8u;\n    \
         let xb = yb + params.x_base / 8u - params.y_base / 8u;\n",
    );
    for b in 0..run.blocks {
        let _ = writeln!(s, "    let b_{b} = load_block(xb + {b}u);");
    }
    for i in 0..run.rows {
        let ks: Vec<usize> = run.row(i).collect();
        screen_row(&mut s, i, &ks, "b");
        for &k in &ks {
            let _ = writeln!(s, "    let e_{k} = packed_exp(z_{k}, t_{i}, inv_t);");
        }
        let exps: Vec<String> = ks.iter().map(|k| format!("e_{k}")).collect();
        // w_j (m - z_j) of the logits as read: a -inf makes the smoothing term +inf.
        let smooth: Vec<String> = ks
            .iter()
            .map(|&k| {
                format!(
                    "class_weight({}u) * (st_{i}.m - bitcast<f32>(u_{k}))",
                    k - i * run.cols
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "    let st_{i} = row_stats(Online(t_{i}, {}, f_{i}), inv_t);\n    \
             let r_{i} = params.row0 + row0 + {i}u;\n    \
             let c_{i} = target_class(r_{i});\n    \
             var sm_{i} = 0.0;\n    \
             if (params.smoothing > 0.0) {{\n        \
             sm_{i} = {};\n    }}\n    \
             lse_buf[r_{i}] = st_{i}.lse;\n    \
             loss_buf[r_{i}] = row_loss(target_logit(params.x_base + (row0 + {i}u) * params.cols, \
             c_{i}), c_{i}, st_{i}, sm_{i});",
            sum_of(&exps),
            sum_of(&smooth),
        );
        if grad {
            let _ = writeln!(s, "    let g_{i} = grad_coef(c_{i}, st_{i});");
            for &k in &ks {
                let _ = writeln!(
                    s,
                    "    let o_{k} = grad_of_exp(e_{k}, {}u, g_{i});",
                    k - i * run.cols
                );
            }
        }
    }
    if grad {
        s += &run.stores("yb");
    }
    s += "}\n";
    s
}

/// The backward kernels' `packed_run(row0)` for rows of `cols` logits: each row's sum of
/// `dy * y` (of `dy` where `log`) as a balanced tree, then `grad_value` of every element.
pub(crate) fn backward_run_source(cols: u32, log: bool) -> String {
    let run = Run::of(cols);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         // Blocks of dx's layout, y and dy at the same offset modulo 8 (wrapping differences:\n    \
         // the sums wrap back into range).\n    \
         let xb = (params.y_base + row0 * params.cols) / 8u;\n    \
         let yb = xb + params.x_base / 8u - params.y_base / 8u;\n    \
         let db = xb + params.dy_base / 8u - params.y_base / 8u;\n",
    );
    for b in 0..run.blocks {
        let _ = writeln!(
            s,
            "    let y_{b} = load_block(yb + {b}u);\n    let d_{b} = load_dy_block(db + {b}u);"
        );
    }
    for i in 0..run.rows {
        let terms: Vec<String> = run
            .row(i)
            .map(|k| {
                if log {
                    held("d", k)
                } else {
                    format!("{} * {}", held("d", k), held("y", k))
                }
            })
            .collect();
        let _ = writeln!(s, "    let s_{i} = {};", sum_of(&terms));
        for k in run.row(i) {
            let _ = writeln!(
                s,
                "    let o_{k} = grad_value({}, {}, s_{i});",
                held("y", k),
                held("d", k)
            );
        }
    }
    s += &run.stores("xb");
    s += "}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_unrolled_up_to_16_blocks() {
        assert!(packs_training_rows(1) && packs_training_rows(10) && packs_training_rows(64));
        assert!(packs_training_rows(13) && packs_training_rows(15) && !packs_training_rows(17));
        assert!(!packs_training_rows(128));
        assert!(!packs_training_rows(100) && !packs_training_rows(256) && !packs_training_rows(33));
        let r = Run::of(10);
        assert_eq!((r.rows, r.blocks), (4, 5));
        assert_eq!(r.row(1), 10..20);
    }

    #[test]
    fn every_element_is_stored_once() {
        // Rows of 10: 4 rows, 5 blocks; every output o_0 .. o_39 in exactly one store.
        let src = backward_run_source(10, false);
        assert_eq!(src.matches("store_block(").count(), 5);
        for k in 0..40 {
            assert_eq!(
                src.matches(&format!("o_{k},")).count() + src.matches(&format!("o_{k})")).count(),
                1,
                "o_{k}"
            );
        }
        // Row 1's sum takes its own ten products, block 1 from component 2 on.
        assert!(src.contains("let s_1 = "));
        assert!(src.contains("d_1.lo.z * y_1.lo.z"));
        let ce = ce_run_source(10, true);
        assert_eq!(ce.matches("store_block(").count(), 5);
        assert!(ce.contains("grad_of_exp(e_19, 9u, g_1)"));
        assert!(!ce_run_source(10, false).contains("store_block("));
    }
}
