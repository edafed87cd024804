// Shared pieces of every kernel: special-value tests by bit pattern and the online
// (max, sum) state with its merge.
//
// WGSL lets a compiler assume that no NaN or infinity occurs, so `v != v` and `max` cannot be
// trusted to see them. Every special value is therefore classified from its bits, and the
// arithmetic below only ever sees finite numbers.

const F32_ABS_MASK: u32 = 0x7fffffffu;
const F32_INF_BITS: u32 = 0x7f800000u;
const F32_NEG_INF_BITS: u32 = 0xff800000u;
const F32_NAN_BITS: u32 = 0x7fc00000u;
// The lowest finite f32. A state with `s == 0` has seen no finite element and its `m` is
// this value, which is never above a real element, so the first finite element always
// takes over the max (see `fold`). It is never used as a shift of a real element.
const F32_LOWEST: f32 = -3.40282347e+38;

// Row flags, OR-reduced across the workgroup.
const FLAG_NAN: u32 = 1u;
const FLAG_POS_INF: u32 = 2u;

fn f32_nan() -> f32 { return bitcast<f32>(F32_NAN_BITS); }
fn f32_pos_inf() -> f32 { return bitcast<f32>(F32_INF_BITS); }
fn f32_neg_inf() -> f32 { return bitcast<f32>(F32_NEG_INF_BITS); }
fn is_neg_inf(v: f32) -> bool { return bitcast<u32>(v) == F32_NEG_INF_BITS; }

// Eight consecutive elements, widened to f32: the unit of vector loads and stores.
struct Block {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// Running state of the online normaliser (Milakov and Gimelshein, 2018):
// `m` is the max of the finite elements seen, `s = sum exp((z - m) * inv_t)` over them.
struct Online {
    m: f32,
    s: f32,
    flags: u32,
}

fn online_empty() -> Online {
    return Online(F32_LOWEST, 0.0, 0u);
}

// Folds one element into the state. NaN and +inf only set flags; -inf contributes
// exp(-inf) = 0 and is skipped.
fn fold(st: ptr<function, Online>, v: f32, inv_t: f32) {
    let bits = bitcast<u32>(v);
    let mag = bits & F32_ABS_MASK;
    if (mag >= F32_INF_BITS) {
        if (mag > F32_INF_BITS) {
            (*st).flags |= FLAG_NAN;
        } else if (bits == F32_INF_BITS) {
            (*st).flags |= FLAG_POS_INF;
        }
        return;
    }
    if (v > (*st).m) {
        // The old sum is rescaled to the new max; an empty state stays 0 whatever the factor.
        (*st).s = select((*st).s * exp(((*st).m - v) * inv_t), 0.0, (*st).s == 0.0) + 1.0;
        (*st).m = v;
    } else {
        (*st).s += exp((v - (*st).m) * inv_t);
    }
}

// Rescales a partial sum from its own max `m_part` to the merged max `m`.
fn rescale(s: f32, m_part: f32, m: f32, inv_t: f32) -> f32 {
    return select(s * exp((m_part - m) * inv_t), 0.0, s == 0.0);
}

fn merge(a: Online, b: Online, inv_t: f32) -> Online {
    let m = max(a.m, b.m);
    return Online(m, rescale(a.s, a.m, m, inv_t) + rescale(b.s, b.m, m, inv_t), a.flags | b.flags);
}

// Folds a pair of elements: one rescale for the pair where both are finite (the common case).
fn fold_pair(st: ptr<function, Online>, v: vec2<f32>, inv_t: f32) {
    let mag = bitcast<vec2<u32>>(v) & vec2<u32>(F32_ABS_MASK);
    if (all(mag < vec2<u32>(F32_INF_BITS))) {
        let top = max(v.x, v.y);
        if (top > (*st).m) {
            (*st).s = rescale((*st).s, (*st).m, top, inv_t);
            (*st).m = top;
        }
        (*st).s += exp((v.x - (*st).m) * inv_t) + exp((v.y - (*st).m) * inv_t);
    } else {
        fold(st, v.x, inv_t);
        fold(st, v.y, inv_t);
    }
}

// The per-row results every forward and backward kernel derives from the merged state.
struct RowStats {
    // The row max of the finite elements, the shift of every exponent.
    m: f32,
    // log(sum exp((z - m) * inv_t)).
    log_s: f32,
    // 1 / sum exp((z - m) * inv_t).
    inv_s: f32,
    // m * inv_t + log_s, with PyTorch's special values (NaN, +inf, -inf for an empty row).
    lse: f32,
    // True where every output of the row is NaN (a NaN or +inf in the row, or all -inf).
    nan_row: bool,
    // True where the row is all -inf (fully masked).
    empty: bool,
}

fn row_stats(st: Online, inv_t: f32) -> RowStats {
    var r: RowStats;
    r.m = st.m;
    r.log_s = log(st.s);
    r.inv_s = 1.0 / st.s;
    r.empty = st.s == 0.0 && st.flags == 0u;
    r.nan_row = st.flags != 0u || st.s == 0.0;
    if ((st.flags & FLAG_NAN) != 0u) {
        r.lse = f32_nan();
    } else if ((st.flags & FLAG_POS_INF) != 0u) {
        r.lse = f32_pos_inf();
    } else if (st.s == 0.0) {
        r.lse = f32_neg_inf();
    } else {
        r.lse = st.m * inv_t + r.log_s;
    }
    return r;
}

// Where an invocation works in the forward kernels (see `lane_of` in reduce_row_tree.wgsl
// and reduce_row_subgroup.wgsl): row `row` of the `rows` its workgroup takes at a time, lane
// `lane` of the `lanes` that share that row.
struct Lane {
    row: u32,
    rows: u32,
    lane: u32,
    lanes: u32,
}

// The share of `n` items that lane `lane` of `lanes` owns: a contiguous chunk (CPU adapters,
// whose lanes run one after another) or every `lanes`-th item (GPUs, so that neighbours read
// neighbours).
struct Share {
    first: u32,
    end: u32,
    step: u32,
}

fn share_in(n: u32, lane: u32, lanes: u32) -> Share {
    if (CONTIGUOUS) {
        let chunk = (n + lanes - 1u) / lanes;
        let first = min(lane * chunk, n);
        return Share(first, min(first + chunk, n), 1u);
    }
    return Share(lane, n, lanes);
}

// `share_in` over the whole workgroup.
fn share_of(n: u32, lid: u32) -> Share {
    return share_in(n, lid, WG);
}

// The output pairs lane `lane` of `lanes` owns in a row starting at element `out_row` of its
// binding, as absolute pair indices: pair q covers elements 2q and 2q + 1, so that packed
// 16-bit outputs write whole words. Column `2q - out_row` wraps below zero for a row that
// starts at an odd index; a `< cols` test rejects it.
fn pairs_in(out_row: u32, cols: u32, lane: u32, lanes: u32) -> Share {
    let q_first = out_row / 2u;
    let sh = share_in((out_row + cols + 1u) / 2u - q_first, lane, lanes);
    return Share(q_first + sh.first, q_first + sh.end, sh.step);
}

// `pairs_in` over the whole workgroup.
fn output_pairs(out_row: u32, cols: u32, lid: u32) -> Share {
    return pairs_in(out_row, cols, lid, WG);
}
