// Forward kernels of the softmax family: softmax, log_softmax and logsumexp along the last
// axis of row-major logits [rows, cols]. CPU mirror: `src/oracle.rs` (`softmax`,
// `log_softmax`, `logsumexp`), which every result of this file is tested against.
//
// Joined behind (see src/shader.rs): a header of constants (WG, OP, CONTIGUOUS, HAS_LSE,
// LANES, RESIDENT, RESIDENT_PAIRS) and `struct Ids`, the bindings with raw accessors, the
// dtype's `load_x` and `store_pair`, `store_partial`/`load_partial`, common.wgsl and one of
// reduce_row_tree.wgsl / reduce_row_subgroup.wgsl.
//
// One algorithm, four shapes of work (the variants of src/plan.rs):
// - `main` with RESIDENT: a row lives in registers, RESIDENT_PAIRS pairs per lane. Each lane
//   finds its max, stores exp(z - its max) and sums it; the lanes' (max, sum) states merge;
//   outputs are the stored exponentials times exp(lane max - row max) / sum. One read, one
//   write, one exp per element.
// - `main` without RESIDENT (online): each lane folds its share into a running (max, sum)
//   (Milakov and Gimelshein, 2018), the states merge, then the row is read again to write
//   exp((z - m) / T) / s. Two reads, one write: for rows too long to hold.
// - Many rows per workgroup: LANES < WG (or one subgroup per row), so short rows keep every
//   invocation busy. Either of the two above.
// - Split-row, `partials` then `finish`: each row is cut into `chunks` pieces over as many
//   workgroups; each stores its piece's partial state; then every workgroup merges its row's
//   partials and writes its piece. For a few long rows, so that one row uses the whole GPU.
//
// Pairs: a lane always owns whole output pairs (elements 2q, 2q + 1 of the output binding),
// so packed 16-bit outputs write whole words; reads follow the same pairs.

const OP_SOFTMAX: u32 = 0u;
const OP_LOG_SOFTMAX: u32 = 1u;
const OP_LOGSUMEXP: u32 = 2u;

// Rust side: `ForwardParams` in src/params.rs. Keep both in the same order.
struct Params {
    // Rows in this dispatch (one chunk of the tensor).
    rows: u32,
    cols: u32,
    // Element index of the chunk's first logit in the x binding.
    x_base: u32,
    // Element index of the chunk's first output in the y binding (of the x binding for
    // logsumexp, which has no output: it only decides the pairs).
    y_base: u32,
    // Index of the chunk's first logsumexp in the lse binding.
    lse_base: u32,
    // 1 to write zeros instead of NaN for rows that are entirely -inf.
    masked_zeros: u32,
    // 1 / temperature.
    inv_t: f32,
    // Split-row: pieces per row (1 otherwise).
    chunks: u32,
}

// The output of every element of a row whose stats say NaN (a NaN or +inf in the row, or
// all -inf): NaN, or 0 for a fully masked row with `masked_zeros`.
fn special_output(st: RowStats) -> f32 {
    return select(f32_nan(), 0.0, st.empty && params.masked_zeros != 0u);
}

fn output_value(z: f32, st: RowStats, inv_t: f32) -> f32 {
    if (st.nan_row) {
        return special_output(st);
    }
    if (OP == OP_SOFTMAX) {
        return select(exp((z - st.m) * inv_t) * st.inv_s, 0.0, is_neg_inf(z));
    }
    return select((z - st.m) * inv_t - st.log_s, f32_neg_inf(), is_neg_inf(z));
}

// Elements 2q - out_row and 2q - out_row + 1 of the row starting at x element `x_row`; -inf
// stands for a column outside the row (it adds nothing to any sum).
fn load_pair(x_row: u32, out_row: u32, q: u32, cols: u32) -> vec2<f32> {
    let c0 = 2u * q - out_row;
    var v = vec2<f32>(f32_neg_inf());
    if (c0 < cols) {
        v.x = load_x(x_row + c0);
    }
    if (c0 + 1u < cols) {
        v.y = load_x(x_row + c0 + 1u);
    }
    return v;
}

// Writes pair q of the row from the values `v` of its two columns.
fn store_output_pair(out_row: u32, q: u32, cols: u32, v: vec2<f32>) {
    let c0 = 2u * q - out_row;
    store_pair(q, v, c0 < cols, c0 + 1u < cols);
}

// One row of the online variant: fold the lane's pairs, merge, write. `live` is false for
// lanes past the last row, which still take part in the merge.
fn online_row(row: u32, pairs: Share, at: Lane, ids: Ids, live: bool) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let x_row = params.x_base + row * cols;
    let out_row = params.y_base + row * cols;
    var st = online_empty();
    for (var q = pairs.first; q < pairs.end; q += pairs.step) {
        fold_pair(&st, load_pair(x_row, out_row, q, cols), inv_t);
    }
    let stats = row_stats(reduce_row(st, at, ids, inv_t), inv_t);
    if (HAS_LSE && live && at.lane == 0u) {
        store_lse(params.lse_base + row, stats.lse);
    }
    if (OP == OP_LOGSUMEXP) {
        return;
    }
    for (var q = pairs.first; q < pairs.end; q += pairs.step) {
        let v = load_pair(x_row, out_row, q, cols);
        let out = vec2<f32>(output_value(v.x, stats, inv_t), output_value(v.y, stats, inv_t));
        store_output_pair(out_row, q, cols, out);
    }
}

// One row of the row-resident variant (see the top of the file). Pair k of the lane is
// `pairs.first + k * pairs.step`; the plan guarantees RESIDENT_PAIRS of them cover the share.
fn resident_row(row: u32, pairs: Share, at: Lane, ids: Ids, live: bool) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let x_row = params.x_base + row * cols;
    let out_row = params.y_base + row * cols;
    // Logits, NaN and +inf replaced by -inf (they only set flags); later the exponentials.
    var held: array<vec2<f32>, RESIDENT_PAIRS>;
    var top = F32_LOWEST;
    var flags = 0u;
    for (var k = 0u; k < RESIDENT_PAIRS; k++) {
        let q = pairs.first + k * pairs.step;
        var v = vec2<f32>(f32_neg_inf());
        if (q < pairs.end) {
            v = load_pair(x_row, out_row, q, cols);
        }
        let bits = bitcast<vec2<u32>>(v);
        let mag = bits & vec2<u32>(F32_ABS_MASK);
        let finite = mag < vec2<u32>(F32_INF_BITS);
        if (!all(finite)) {
            flags |= select(0u, FLAG_NAN, any(mag > vec2<u32>(F32_INF_BITS)));
            flags |= select(0u, FLAG_POS_INF, any(bits == vec2<u32>(F32_INF_BITS)));
            v = select(vec2<f32>(f32_neg_inf()), v, finite);
        }
        top = max(top, max(select(F32_LOWEST, v.x, finite.x), select(F32_LOWEST, v.y, finite.y)));
        held[k] = v;
    }
    var s = 0.0;
    for (var k = 0u; k < RESIDENT_PAIRS; k++) {
        let v = held[k];
        let skip = bitcast<vec2<u32>>(v) == vec2<u32>(F32_NEG_INF_BITS);
        let e = select(exp((v - vec2<f32>(top)) * inv_t), vec2<f32>(0.0), skip);
        s += e.x + e.y;
        if (OP == OP_SOFTMAX) {
            held[k] = e;
        }
    }
    let stats = row_stats(reduce_row(Online(top, s, flags), at, ids, inv_t), inv_t);
    if (HAS_LSE && live && at.lane == 0u) {
        store_lse(params.lse_base + row, stats.lse);
    }
    if (OP == OP_LOGSUMEXP) {
        return;
    }
    // Softmax: exp(z - top) * exp(top - m) / s; a lane without finite logits has held 0.
    let scale = rescale(1.0, top, stats.m, inv_t) * stats.inv_s;
    let special = vec2<f32>(special_output(stats));
    for (var k = 0u; k < RESIDENT_PAIRS; k++) {
        let q = pairs.first + k * pairs.step;
        if (q < pairs.end) {
            let v = held[k];
            var out: vec2<f32>;
            if (OP == OP_SOFTMAX) {
                out = v * scale;
            } else {
                let skip = bitcast<vec2<u32>>(v) == vec2<u32>(F32_NEG_INF_BITS);
                out = select((v - vec2<f32>(stats.m)) * inv_t - vec2<f32>(stats.log_s),
                             vec2<f32>(f32_neg_inf()), skip);
            }
            store_output_pair(out_row, q, cols, select(out, special, stats.nan_row));
        }
    }
}

@compute @workgroup_size(WG)
fn main(ids: Ids) {
    let at = lane_of(ids);
    let cols = params.cols;
    // Rows go in groups of `at.rows`, one group per workgroup at a time, so that every
    // invocation of a workgroup runs the same iterations (the merge has barriers).
    let groups = (params.rows + at.rows - 1u) / at.rows;
    for (var g = ids.wid.x; g < groups; g += ids.nwg.x) {
        let row = g * at.rows + at.row;
        let live = row < params.rows;
        var pairs = pairs_in(params.y_base + row * cols, cols, at.lane, at.lanes);
        if (!live) {
            pairs.end = pairs.first;
        }
        if (RESIDENT) {
            resident_row(row, pairs, at, ids, live);
        } else {
            online_row(row, pairs, at, ids, live);
        }
    }
}

// Split-row: the pairs of piece `c` of the row starting at output element `out_row`.
fn piece(out_row: u32, c: u32) -> Share {
    let q_first = out_row / 2u;
    let n = (out_row + params.cols + 1u) / 2u - q_first;
    let len = (n + params.chunks - 1u) / params.chunks;
    let first = min(c * len, n);
    return Share(q_first + first, q_first + min(first + len, n), 1u);
}

// Split-row, first dispatch, `chunks` x rows workgroups: the partial state of each piece.
@compute @workgroup_size(WG)
fn partials(ids: Ids) {
    let at = lane_of(ids);
    let cols = params.cols;
    let inv_t = params.inv_t;
    let c = ids.wid.x;
    for (var row = ids.wid.y; row < params.rows; row += ids.nwg.y) {
        let x_row = params.x_base + row * cols;
        let out_row = params.y_base + row * cols;
        let p = piece(out_row, c);
        let sh = share_in(p.end - p.first, at.lane, at.lanes);
        var st = online_empty();
        for (var i = sh.first; i < sh.end; i += sh.step) {
            fold_pair(&st, load_pair(x_row, out_row, p.first + i, cols), inv_t);
        }
        let merged = reduce_row(st, at, ids, inv_t);
        if (at.lane == 0u) {
            store_partial(row * params.chunks + c, merged);
        }
    }
}

// Split-row, second dispatch, same grid: merge the row's partials, write the piece.
@compute @workgroup_size(WG)
fn finish(ids: Ids) {
    let at = lane_of(ids);
    let cols = params.cols;
    let inv_t = params.inv_t;
    let c = ids.wid.x;
    if (OP == OP_LOGSUMEXP && c != 0u) {
        return;
    }
    for (var row = ids.wid.y; row < params.rows; row += ids.nwg.y) {
        var st = online_empty();
        for (var i = at.lane; i < params.chunks; i += at.lanes) {
            st = merge(st, load_partial(row * params.chunks + i), inv_t);
        }
        let stats = row_stats(reduce_row(st, at, ids, inv_t), inv_t);
        if (HAS_LSE && c == 0u && at.lane == 0u) {
            store_lse(params.lse_base + row, stats.lse);
        }
        if (OP == OP_LOGSUMEXP) {
            continue;
        }
        let x_row = params.x_base + row * cols;
        let out_row = params.y_base + row * cols;
        let p = piece(out_row, c);
        let sh = share_in(p.end - p.first, at.lane, at.lanes);
        for (var i = sh.first; i < sh.end; i += sh.step) {
            let q = p.first + i;
            let v = load_pair(x_row, out_row, q, cols);
            let out = vec2<f32>(output_value(v.x, stats, inv_t), output_value(v.y, stats, inv_t));
            store_output_pair(out_row, q, cols, out);
        }
    }
}
