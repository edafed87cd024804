//! Packed rows of the training kernels: the generated `packed_run(row0)` of
//! shaders/cross_entropy.wgsl and shaders/backward.wgsl, for CPU adapters' short rows.
//!
//! A lane takes the run of rows that fill whole blocks (`rows_filling_blocks`), as
//! `loss_and_grad_run` and `backward_run` do, in code generated for the row length, as the
//! forward kernels' packed rows (src/shader/packed.rs). Two forms:
//! - unrolled, where the run holds at most `MAX_TRAINING_RUN_BLOCKS` blocks, of rows of up
//!   to 64 logits: every logit sits at a position known when the shader is built, the
//!   run's blocks are loaded once, every row's reductions and outputs are plain statements
//!   on named values, and the blocks are stored once at the end;
//! - windowed, for odd lengths up to `MAX_TRAINING_WINDOWED_COLS`: a loop over the run's 8
//!   rows, each loading the blocks that cover it once (`packed::Window`), the neighbours'
//!   elements masked, and storing the blocks it completes.
//!
//! The loops read each block twice (a pass for the row's sums, one for its outputs), the
//! blocks a row shares with its neighbours more often, and compute every exponential twice.

use crate::tuning::{
    MAX_TRAINING_PACKED_COLS, MAX_TRAINING_RUN_BLOCKS, MAX_TRAINING_WINDOWED_COLS,
};
use std::fmt::Write;

use super::packed::{block_stores, component, screen_row, sum_of, Window};
use super::rows_filling_blocks;

/// Whether the training kernels unroll a whole run of rows of `cols` logits.
fn unrolls(cols: u64) -> bool {
    cols <= MAX_TRAINING_PACKED_COLS
        && rows_filling_blocks(cols) * cols <= 8 * MAX_TRAINING_RUN_BLOCKS
}

/// Whether the training kernels work out a run of rows of `cols` logits in generated code
/// (`packed_run`): unrolled whole, or a row at a time through a window of blocks.
pub(crate) fn packs_training_rows(cols: u64) -> bool {
    unrolls(cols) || (cols > 8 && cols % 2 == 1 && cols <= MAX_TRAINING_WINDOWED_COLS)
}

/// Cross-entropy's `packed_run` for rows of `cols` (`packs_training_rows`).
pub(crate) fn ce_source(cols: u32, grad: bool) -> String {
    if unrolls(u64::from(cols)) {
        ce_run_source(cols, grad)
    } else {
        ce_window_source(cols, grad)
    }
}

/// The backward kernels' `packed_run` for rows of `cols` (`packs_training_rows`).
pub(crate) fn backward_source(cols: u32, log: bool) -> String {
    if unrolls(u64::from(cols)) {
        backward_run_source(cols, log)
    } else {
        backward_window_source(cols, log)
    }
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
        assert!(unrolls(cols as u64), "rows of {cols} are not unrolled");
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
        block_stores(self.blocks, base, "    ")
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
fn ce_run_source(cols: u32, grad: bool) -> String {
    let run = Run::of(cols);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         // Blocks of the gradient's layout, the logits at the same offset modulo 8 (wrapping\n    \
         // difference: the sum wraps back into range).\n    \
         let yb = (params.y_base + row0 * params.cols) / BLOCK;\n    \
         let xb = yb + params.x_base / BLOCK - params.y_base / BLOCK;\n",
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
fn backward_run_source(cols: u32, log: bool) -> String {
    let run = Run::of(cols);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         // Blocks of dx's layout, y and dy at the same offset modulo 8 (wrapping differences:\n    \
         // the sums wrap back into range).\n    \
         let xb = (params.y_base + row0 * params.cols) / BLOCK;\n    \
         let yb = xb + params.x_base / BLOCK - params.y_base / BLOCK;\n    \
         let db = xb + params.dy_base / BLOCK - params.y_base / BLOCK;\n",
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

/// Cross-entropy's windowed `packed_run(row0)` for rows of `cols` logits (`Window`): per
/// row of the run, its window of blocks loaded once, the logits of the rows before and
/// after masked, then as `ce_run_source` on four logits at a time (`grad4_of_exp`); the
/// blocks the row completes are stored, the one it shares with the next row kept until that
/// row fills in the rest.
fn ce_window_source(cols: u32, grad: bool) -> String {
    let w = Window::of(cols as usize);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         // Blocks of the gradient's layout, the logits at the same offset modulo 8 (wrapping\n    \
         // difference: the sum wraps back into range).\n    \
         let yb = (params.y_base + row0 * params.cols) / BLOCK;\n    \
         let xb = yb + params.x_base / BLOCK - params.y_base / BLOCK;\n",
    );
    w.open(&mut s);
    w.loads(&mut s, "b", "load_block", "xb");
    w.screen(&mut s, "b");
    for h in w.halves() {
        let _ = writeln!(
            s,
            "        let e_{h} = shifted_exp(z_{h}, m, inv_t);\n        \
             let k_{h} = min(vec4<u32>({}u, {}u, {}u, {}u) - off, cols - 1u);",
            4 * h,
            4 * h + 1,
            4 * h + 2,
            4 * h + 3
        );
    }
    // w_j (m - z_j) of the logits as read (a -inf makes the smoothing term +inf), 0 outside
    // the row. The columns `k_h` are clamped into the row: the elements outside it are
    // masked here and never stored.
    let smooth = w.each(&|h| {
        format!(
            "select(vec4<f32>(0.0), class_weight4(k_{h}) * (m - bitcast<vec4<f32>>(u_{h})), n_{h})"
        )
    });
    let _ = writeln!(
        s,
        "        let s4 = {};\n        \
         let st = row_stats(Online(t, (s4.x + s4.y) + (s4.z + s4.w), f), inv_t);\n        \
         let r = params.row0 + row0 + i;\n        \
         let c = target_class(r);\n        \
         var sm = 0.0;\n        \
         if (params.smoothing > 0.0) {{\n            \
         let sm4 = {};\n            \
         sm = (sm4.x + sm4.y) + (sm4.z + sm4.w);\n        }}\n        \
         lse_buf[r] = st.lse;\n        \
         loss_buf[r] = row_loss(target_logit(params.x_base + (row0 + i) * params.cols, c), c, st, sm);",
        sum_of(&w.each(&|h| format!("e_{h}"))),
        sum_of(&smooth),
    );
    if grad {
        s += "        let g = grad_coef(c, st);\n";
        for h in w.halves() {
            let _ = writeln!(s, "        let o_{h} = grad4_of_exp(e_{h}, k_{h}, g);");
        }
        w.stores(&mut s, "yb", "        ");
    }
    w.close(&mut s);
    s
}

/// The backward kernels' windowed `packed_run(row0)` for rows of `cols` logits (`Window`):
/// per row, the windows of `y` and `dy` loaded once, the row's sum of `dy * y` (of `dy`
/// where `log`) with the neighbours' elements masked, `grad4` of every half-block and the
/// stores of `Window::stores`.
fn backward_window_source(cols: u32, log: bool) -> String {
    let w = Window::of(cols as usize);
    let mut s = String::from(
        "fn packed_run(row0: u32) {\n    \
         // Blocks of dx's layout, y and dy at the same offset modulo 8 (wrapping differences:\n    \
         // the sums wrap back into range).\n    \
         let xb = (params.y_base + row0 * params.cols) / BLOCK;\n    \
         let yb = xb + params.x_base / BLOCK - params.y_base / BLOCK;\n    \
         let db = xb + params.dy_base / BLOCK - params.y_base / BLOCK;\n",
    );
    w.open(&mut s);
    w.loads(&mut s, "y", "load_block", "yb");
    w.loads(&mut s, "d", "load_dy_block", "db");
    w.masks(&mut s);
    let half = |name: &str, h: usize| format!("{name}_{}.{}", h / 2, ["lo", "hi"][h % 2]);
    let terms = w.each(&|h| {
        let term = if log {
            half("d", h)
        } else {
            format!("{} * {}", half("d", h), half("y", h))
        };
        format!("select(vec4<f32>(0.0), {term}, n_{h})")
    });
    let _ = writeln!(
        s,
        "        let s4 = {};\n        \
         let s = (s4.x + s4.y) + (s4.z + s4.w);",
        sum_of(&terms)
    );
    for h in w.halves() {
        let _ = writeln!(
            s,
            "        let o_{h} = grad4({}, {}, s);",
            half("y", h),
            half("d", h)
        );
    }
    w.stores(&mut s, "xb", "        ");
    w.close(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_unrolled_up_to_16_blocks() {
        assert!(unrolls(1) && unrolls(10) && unrolls(64) && unrolls(13) && unrolls(15));
        assert!(!unrolls(17) && !unrolls(128) && !unrolls(100) && !unrolls(33));
        // Windows for the odd lengths up to 255.
        assert!(packs_training_rows(17) && packs_training_rows(33) && packs_training_rows(255));
        assert!(!packs_training_rows(128) && !packs_training_rows(100));
        assert!(!packs_training_rows(250) && !packs_training_rows(256));
        assert!(!packs_training_rows(257) && !packs_training_rows(1000));
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

    #[test]
    fn windows_mask_their_sums_and_carry_the_shared_block() {
        // Rows of 33: 8 rows, a window of 5 blocks (10 half-blocks) over 33 blocks in all.
        let src = backward_window_source(33, true);
        assert!(src.contains("for (var i = 0u; i < 8u; i++)"));
        assert!(src.contains("let last = 32u;"));
        assert_eq!(src.matches("= load_dy_block(db + min(wb + ").count(), 5);
        // Every half-block's term of the sum is masked to the row.
        for h in 0..10 {
            assert!(src.contains(&format!(", n_{h})")), "n_{h}");
        }
        assert!(src.contains("select(carry.lo, o_0, n_0)"));
        let ce = ce_window_source(33, true);
        assert!(ce.contains("grad4_of_exp(e_9, k_9, g)"));
        assert!(ce.contains("carry = Block(o_8, o_9)"));
        assert!(!ce_window_source(33, false).contains("store_block("));
        // The dispatch picks the form by length.
        assert!(ce_source(33, true).contains("wb + 4u"));
        assert!(!ce_source(10, true).contains("carry"));
    }
}
