//! Packed rows: the generated `packed_tile` of the forward kernel (see `packed_lane` in
//! shaders/softmax.wgsl), for CPU adapters' short rows.
//!
//! A lane takes `r` whole rows of `cols` logits, where `r * cols` is the least multiple of
//! 8: its logits start on a block and fill whole blocks, loaded as vectors. Every logit then
//! sits at a position known when the shader is built, so each row's max, exponentials, sum
//! and outputs are plain statements on named values, without the pairs of an unaligned head
//! and tail or any loop (Mesa's CPU drivers run an access indexed at run time as a loop over
//! their SIMD lanes, see `held_passes` in src/shader/mod.rs).

use std::fmt::Write;

use super::MAX_UNROLLED_BLOCKS;

/// Rows one lane takes when it packs rows of `cols` logits: the fewest that fill whole
/// blocks of 8, or `None` where they would be more than `MAX_UNROLLED_BLOCKS` blocks.
pub(crate) fn packed_rows(cols: usize) -> Option<u32> {
    let rows = 8 / gcd(cols.max(1), 8);
    (rows * cols <= 8 * MAX_UNROLLED_BLOCKS as usize).then_some(rows as u32)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
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

fn sum_of(terms: &[String]) -> String {
    tree(&|a, b| format!("({a} + {b})"), terms)
}

/// The component of a block holding its element `i` (0 to 7).
fn component(i: usize) -> String {
    let half = if i < 4 { "lo" } else { "hi" };
    format!("{half}.{}", ["x", "y", "z", "w"][i % 4])
}

/// `packed_tile(row0)` for rows of `cols` logits, without a branch: NaN and +inf become
/// -inf after setting their row's flags (`flags_of`), as `guarded` does for the other
/// CPU kernels, so that the same statements give every row its special values.
pub(crate) fn packed_tile_source(cols: u32) -> String {
    let cols = cols as usize;
    let rows = packed_rows(cols).expect("the plan packs only rows that fit") as usize;
    let n = rows * cols;
    let mut s = String::from(
        "fn packed_tile(row0: u32) {\n    \
         let inv_t = params.inv_t;\n    \
         let xb = (params.x_base + row0 * PACKED_COLS) / 8u;\n    \
         let yb = (params.y_base + row0 * PACKED_COLS) / 8u;\n",
    );
    for b in 0..n / 8 {
        let _ = writeln!(s, "    let b_{b} = load_block(xb + {b}u);");
    }
    let list = |ks: &[usize], f: &dyn Fn(usize) -> String| -> Vec<String> {
        ks.iter().map(|&k| f(k)).collect()
    };
    for i in 0..rows {
        let ks: Vec<usize> = (i * cols..(i + 1) * cols).collect();
        for &k in &ks {
            let _ = writeln!(
                s,
                "    let u_{k} = bitcast<u32>(b_{}.{});\n    \
                 let a_{k} = u_{k} & F32_ABS_MASK;\n    \
                 let z_{k} = select(f32_neg_inf(), bitcast<f32>(u_{k}), a_{k} < F32_INF_BITS);",
                k / 8,
                component(k % 8)
            );
        }
        let mags = max_of(&list(&ks, &|k| format!("a_{k}")));
        let bits = max_of(&list(&ks, &|k| format!("bitcast<i32>(u_{k})")));
        let _ = writeln!(s, "    let f_{i} = flags_of({mags}, {bits});");
        let mut tops = list(&ks, &|k| format!("z_{k}"));
        tops.insert(0, "F32_LOWEST".into());
        let _ = writeln!(s, "    let t_{i} = {};", max_of(&tops));
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
    for b in 0..n / 8 {
        let o = |from: usize| {
            (from..from + 4)
                .map(|k| format!("o_{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "        store_block(yb + {b}u, Block(vec4<f32>({}), vec4<f32>({})));",
            o(8 * b),
            o(8 * b + 4)
        );
    }
    s += "    }\n}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fill_whole_blocks_up_to_the_unrolled_limit() {
        assert_eq!(packed_rows(2), Some(4));
        assert_eq!(packed_rows(3), Some(8));
        assert_eq!(packed_rows(12), Some(2));
        assert_eq!(packed_rows(40), Some(1));
        assert_eq!(packed_rows(32), Some(1));
        assert_eq!(packed_rows(33), None);
        assert_eq!(packed_rows(64), Some(1));
        assert_eq!(packed_rows(100), Some(2));
        assert_eq!(packed_rows(256), Some(1));
        assert_eq!(packed_rows(264), None);
    }

    #[test]
    fn sums_are_trees() {
        let t: Vec<String> = (0..5).map(|k| format!("e_{k}")).collect();
        assert_eq!(sum_of(&t), "((e_0 + e_1) + (e_2 + (e_3 + e_4)))");
        assert_eq!(max_of(&t[..3]), "max(e_0, max(e_1, e_2))");
    }
}
