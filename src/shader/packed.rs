//! Packed rows: the generated `packed_tile` of the forward kernel (see `packed_lane` in
//! shaders/softmax.wgsl), for CPU adapters' short rows.
//!
//! A lane takes `r` whole rows of `cols` logits, where `r * cols` is the least multiple of
//! 8: its logits start on a block and fill whole blocks, loaded as vectors, and no other
//! lane writes into them. Two forms:
//! - unrolled, where the `r` rows hold at most `MAX_UNROLLED_BLOCKS` blocks: every logit
//!   sits at a position known when the shader is built, so each row's max, exponentials,
//!   sum and outputs are plain statements on named values, without the pairs of an
//!   unaligned head and tail or any loop (Mesa's CPU drivers run an access indexed at run
//!   time as a loop over their SIMD lanes, see `held_passes` in src/shader/mod.rs);
//! - windowed, for longer rows whose length is not a multiple of 8 (33 to 256 logits): a
//!   loop over the `r` rows, each read as the blocks that cover it (a window), the logits of
//!   the rows before and after masked out, and the block it shares with the next row kept
//!   (`carry`) until that row completes it. Every lane is at the same row of its run, so
//!   the offsets are the same across lanes.

use std::fmt::Write;

use super::MAX_UNROLLED_BLOCKS;

/// The fewest rows of `cols` logits that fill whole blocks of 8: 8 / gcd(cols, 8) (the
/// runs of rows a lane takes here and in the training kernels' `row_runs.wgsl`).
pub(crate) fn rows_filling_blocks(cols: u64) -> u64 {
    8 >> cols.trailing_zeros().min(3)
}

/// Rows one lane takes when it packs rows of `cols` logits: `rows_filling_blocks`, or
/// `None` for rows longer than `MAX_UNROLLED_BLOCKS` blocks.
pub(crate) fn packed_rows(cols: usize) -> Option<u32> {
    (cols <= 8 * MAX_UNROLLED_BLOCKS as usize).then(|| rows_filling_blocks(cols as u64) as u32)
}

/// Whether a packed run of rows of `cols` logits is unrolled whole (see the module).
fn unrolled(cols: usize) -> bool {
    packed_rows(cols).is_some_and(|r| r as usize * cols <= 8 * MAX_UNROLLED_BLOCKS as usize)
}

/// Blocks one windowed row reads: those covering `cols` logits from any offset in a block.
fn window_blocks(cols: usize) -> usize {
    (cols + 6) / 8 + 1
}

/// Blocks a packing lane holds at a time: its whole run unrolled, one window otherwise.
pub(crate) fn packed_held_blocks(cols: usize) -> u32 {
    let rows = packed_rows(cols).unwrap_or(1) as usize;
    if unrolled(cols) {
        (rows * cols / 8) as u32
    } else {
        window_blocks(cols) as u32
    }
}

/// `terms` combined two at a time by `join` as a balanced tree, so that a sum's rounding
/// grows with the log of the count, as the other kernels' sums do (see `Stream` in
/// shaders/common.wgsl).
fn tree(join: &dyn Fn(String, String) -> String, terms: &[String]) -> String {
    match terms {
        [] => unreachable!("a row has at least one logit"),
        [one] => one.clone(),
        _ => {
            let (a, b) = terms.split_at(terms.len() / 2);
            join(tree(join, a), tree(join, b))
        }
    }
}

fn max_of(terms: &[String]) -> String {
    tree(&|a, b| format!("max({a}, {b})"), terms)
}

pub(super) fn sum_of(terms: &[String]) -> String {
    tree(&|a, b| format!("({a} + {b})"), terms)
}

/// The component of a block holding its element `i` (0 to 7).
pub(super) fn component(i: usize) -> String {
    let half = if i < 4 { "lo" } else { "hi" };
    format!("{half}.{}", ["x", "y", "z", "w"][i % 4])
}

/// `store_block` of each of `blocks` held blocks from the outputs `o_k` of its elements,
/// at `base`: the end of every unrolled run, forward and training.
pub(super) fn block_stores(blocks: usize, base: &str, indent: &str) -> String {
    let mut s = String::new();
    let o = |from: usize| {
        (from..from + 4)
            .map(|k| format!("o_{k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for b in 0..blocks {
        let _ = writeln!(
            s,
            "{indent}store_block({base} + {b}u, Block(vec4<f32>({}), vec4<f32>({})));",
            o(8 * b),
            o(8 * b + 4)
        );
    }
    s
}

/// The statements that screen row `i` of an unrolled run, its logits `ks` held in the
/// blocks `{blocks}_0`, `{blocks}_1`...: for each logit `k` its bits `u_k`, their magnitude
/// `a_k` and `z_k`, the logit with -inf in place of NaN and +inf; then the row's flags
/// `f_i` (`flags_of`) and its max `t_i`, at least `F32_LOWEST`.
pub(super) fn screen_row(s: &mut String, i: usize, ks: &[usize], blocks: &str) {
    for &k in ks {
        let _ = writeln!(
            s,
            "    let u_{k} = bitcast<u32>({blocks}_{}.{});\n    \
             let a_{k} = u_{k} & F32_ABS_MASK;\n    \
             let z_{k} = select(f32_neg_inf(), bitcast<f32>(u_{k}), a_{k} < F32_INF_BITS);",
            k / 8,
            component(k % 8)
        );
    }
    let each = |f: &dyn Fn(usize) -> String| -> Vec<String> { ks.iter().map(|&k| f(k)).collect() };
    let mags = max_of(&each(&|k| format!("a_{k}")));
    let bits = max_of(&each(&|k| format!("bitcast<i32>(u_{k})")));
    let _ = writeln!(s, "    let f_{i} = flags_of({mags}, {bits});");
    let mut tops = each(&|k| format!("z_{k}"));
    tops.insert(0, "F32_LOWEST".into());
    let _ = writeln!(s, "    let t_{i} = {};", max_of(&tops));
}

/// `packed_tile(row0)` for rows of `cols` logits; unrolled, without a branch: NaN and +inf
/// become -inf after setting their row's flags (`flags_of`), as `guarded` does for the other
/// CPU kernels, so that the same statements give every row its special values.
pub(crate) fn packed_tile_source(cols: u32) -> String {
    let cols = cols as usize;
    if !unrolled(cols) {
        return windowed_tile_source(cols);
    }
    let rows = packed_rows(cols).expect("the plan packs only rows that fit") as usize;
    let n = rows * cols;
    let mut s = String::from(
        "fn packed_tile(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         let xb = (params.x_base + row0 * PACKED_COLS) / BLOCK;\n    \
         let yb = (params.y_base + row0 * PACKED_COLS) / BLOCK;\n",
    );
    for b in 0..n / 8 {
        let _ = writeln!(s, "    let b_{b} = load_block(xb + {b}u);");
    }
    let list = |ks: &[usize], f: &dyn Fn(usize) -> String| -> Vec<String> {
        ks.iter().map(|&k| f(k)).collect()
    };
    for i in 0..rows {
        let ks: Vec<usize> = (i * cols..(i + 1) * cols).collect();
        screen_row(&mut s, i, &ks, "b");
        for &k in &ks {
            let _ = writeln!(s, "    let e_{k} = packed_exp(z_{k}, t_{i}, inv_t);");
        }
        let _ = writeln!(
            s,
            "    let st_{i} = packed_stats(row0 + {i}u, Online(t_{i}, {}, f_{i}), inv_t);",
            sum_of(&list(&ks, &|k| format!("e_{k}")))
        );
        for &k in &ks {
            let _ = writeln!(
                s,
                "    let o_{k} = packed_output(z_{k}, e_{k}, st_{i}, inv_t);"
            );
        }
    }
    s += "    if (OP != OP_LOGSUMEXP) {\n";
    s += &block_stores(n / 8, "yb", "        ");
    s += "    }\n}\n";
    s
}

/// The windowed `packed_tile(row0)` (see the module): for row `i` of the run, starting
/// `off = i * cols % 8` elements into block `wb`, `window_blocks` blocks from `wb`, each
/// half-block `h` with its in-row mask `n_h`. Logits outside the row read as -inf and set
/// no flags; NaN and +inf set their row's flags and become -inf (as in the unrolled form).
/// Blocks the row completes are stored; the one it leaves partial is kept in `carry`, whose
/// first `off` outputs the next row's first block takes.
fn windowed_tile_source(cols: usize) -> String {
    let mut s = String::from(
        "fn packed_tile(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         let xb = (params.x_base + row0 * PACKED_COLS) / BLOCK;\n    \
         let yb = (params.y_base + row0 * PACKED_COLS) / BLOCK;\n",
    );
    let w = Window::of(cols);
    w.open(&mut s);
    w.loads(&mut s, "b", "load_block", "xb");
    w.screen(&mut s, "b");
    for h in w.halves() {
        let _ = writeln!(s, "        let e_{h} = shifted_exp(z_{h}, m, inv_t);");
    }
    let _ = writeln!(
        s,
        "        let s4 = {};\n        \
         let st = packed_stats(row0 + i, Online(t, (s4.x + s4.y) + (s4.z + s4.w), f), inv_t);\n        \
         if (OP != OP_LOGSUMEXP) {{",
        sum_of(&w.each(&|h| format!("e_{h}"))),
    );
    for h in w.halves() {
        let _ = writeln!(
            s,
            "            let o_{h} = packed_output4(z_{h}, e_{h}, st, inv_t);"
        );
    }
    w.stores(&mut s, "yb", "            ");
    s += "        }\n";
    w.close(&mut s);
    s
}

/// A windowed run (see the module): `rows` rows of `cols` logits, each read through a
/// window of `blocks` blocks (`window_blocks`) from block `wb`, `off` elements into it, in
/// a loop over the rows (`i`, from the run's first element `start`). Its pieces generate
/// the statements of the loop; the training kernels' windowed runs share them
/// (src/shader/training_tiles.rs).
pub(super) struct Window {
    rows: usize,
    cols: usize,
    blocks: usize,
}

impl Window {
    pub(super) fn of(cols: usize) -> Window {
        assert!(cols > 8, "a windowed row spans at least two blocks");
        Window {
            rows: rows_filling_blocks(cols as u64) as usize,
            cols,
            blocks: window_blocks(cols),
        }
    }

    /// The half-blocks of a window (vec4 each): 0 to 2 * blocks.
    pub(super) fn halves(&self) -> std::ops::Range<usize> {
        0..2 * self.blocks
    }

    /// `f` of every half-block.
    pub(super) fn each(&self, f: &dyn Fn(usize) -> String) -> Vec<String> {
        self.halves().map(f).collect()
    }

    /// The loop over the rows, opened: `last` (the run's last block: windows read no
    /// further, and mask what they read past it), the column count `cols` as a vector,
    /// `carry`, and per row `start`, `wb` and `off`.
    pub(super) fn open(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "    let last = {}u;\n    \
             let cols = vec4<u32>({}u);\n    \
             var carry = Block(vec4<f32>(0.0), vec4<f32>(0.0));\n    \
             for (var i = 0u; i < {}u; i++) {{\n        \
             let start = i * {}u;\n        \
             let wb = start / BLOCK;\n        \
             let off = vec4<u32>(start % BLOCK);",
            self.rows * self.cols / 8 - 1,
            self.cols,
            self.rows,
            self.cols,
        );
    }

    /// The window's blocks `{name}_k` by `load(base + block)`.
    pub(super) fn loads(&self, s: &mut String, name: &str, load: &str, base: &str) {
        for k in 0..self.blocks {
            let _ = writeln!(
                s,
                "        let {name}_{k} = {load}({base} + min(wb + {k}u, last));"
            );
        }
    }

    /// Per half-block `h` of the logits held in `{blocks}_k`: its in-row mask `n_h`, bits
    /// `u_h` (0 outside the row), their magnitudes `a_h` and `z_h`, the logits with -inf
    /// outside the row and in place of NaN and +inf; then the row's flags `f`, its max `t`
    /// (at least `F32_LOWEST`) and `m`, that max as a vector.
    pub(super) fn screen(&self, s: &mut String, blocks: &str) {
        self.masks(s);
        for h in self.halves() {
            let _ = writeln!(
                s,
                "        let u_{h} = select(vec4<u32>(0u), bitcast<vec4<u32>>({blocks}_{}.{}), n_{h});\n        \
                 let a_{h} = u_{h} & vec4<u32>(F32_ABS_MASK);\n        \
                 let z_{h} = select(vec4<f32>(f32_neg_inf()), bitcast<vec4<f32>>(u_{h}), \
                 n_{h} & (a_{h} < vec4<u32>(F32_INF_BITS)));",
                h / 2,
                if h % 2 == 0 { "lo" } else { "hi" },
            );
        }
        let _ = writeln!(
            s,
            "        let a = {};\n        \
             let u = {};\n        \
             let f = flags_of(max(max(a.x, a.y), max(a.z, a.w)), max(max(u.x, u.y), max(u.z, u.w)));\n        \
             let t4 = {};\n        \
             let t = max(F32_LOWEST, max(max(t4.x, t4.y), max(t4.z, t4.w)));\n        \
             let m = vec4<f32>(t);",
            max_of(&self.each(&|h| format!("a_{h}"))),
            max_of(&self.each(&|h| format!("bitcast<vec4<i32>>(u_{h})"))),
            max_of(&self.each(&|h| format!("z_{h}"))),
        );
    }

    /// Per half-block `h`: `n_h`, which of its four elements lie in the row.
    pub(super) fn masks(&self, s: &mut String) {
        for h in self.halves() {
            let c = 4 * h;
            let _ = writeln!(
                s,
                "        let n_{h} = vec4<u32>({c}u, {}u, {}u, {}u) - off < cols;",
                c + 1,
                c + 2,
                c + 3,
            );
        }
    }

    /// Stores the outputs `o_h` (one vec4 per half-block) at `base`: blocks below `cols / 8`
    /// are complete at any offset, the rest where the row reaches their end (`full` blocks
    /// in all); the first takes the previous row's outputs from `carry` where it is outside
    /// the row, and the one the row leaves partial goes to `carry`.
    pub(super) fn stores(&self, s: &mut String, base: &str, indent: &str) {
        let whole = self.cols / 8;
        let _ = writeln!(
            s,
            "{indent}let full = (start % BLOCK + {}u) / BLOCK;\n\
             {indent}store_block({base} + wb, Block(select(carry.lo, o_0, n_0), select(carry.hi, o_1, n_1)));",
            self.cols
        );
        for k in 1..self.blocks {
            let store = format!(
                "store_block({base} + wb + {k}u, Block(o_{}, o_{}));",
                2 * k,
                2 * k + 1
            );
            if k < whole {
                let _ = writeln!(s, "{indent}{store}");
            } else {
                let _ = writeln!(s, "{indent}if ({k}u < full) {{ {store} }}");
            }
        }
        let _ = writeln!(
            s,
            "{indent}carry = Block(o_{}, o_{});",
            2 * whole,
            2 * whole + 1
        );
        if whole + 1 < self.blocks {
            let _ = writeln!(
                s,
                "{indent}if (full > {whole}u) {{ carry = Block(o_{}, o_{}); }}",
                2 * whole + 2,
                2 * whole + 3
            );
        }
    }

    /// Closes the loop and the function.
    pub(super) fn close(&self, s: &mut String) {
        s.push_str("    }\n}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fill_whole_blocks_unrolled_or_windowed() {
        assert_eq!(packed_rows(2), Some(4));
        assert_eq!(packed_rows(3), Some(8));
        assert_eq!(packed_rows(12), Some(2));
        assert_eq!(packed_rows(40), Some(1));
        assert_eq!(packed_rows(32), Some(1));
        assert_eq!(packed_rows(33), Some(8));
        assert_eq!(packed_rows(197), Some(8));
        assert_eq!(packed_rows(64), Some(1));
        assert_eq!(packed_rows(100), Some(2));
        assert_eq!(packed_rows(256), Some(1));
        assert_eq!(packed_rows(257), None);
        assert!(unrolled(31) && !unrolled(33) && unrolled(256) && !unrolled(250));
        assert_eq!(packed_held_blocks(31), 31);
        assert_eq!(packed_held_blocks(33), 5);
        assert_eq!(packed_held_blocks(197), 26);
    }

    #[test]
    fn sums_are_trees() {
        let t: Vec<String> = (0..5).map(|k| format!("e_{k}")).collect();
        assert_eq!(sum_of(&t), "((e_0 + e_1) + (e_2 + (e_3 + e_4)))");
        assert_eq!(max_of(&t[..3]), "max(e_0, max(e_1, e_2))");
    }
}
