// Vocabulary-parallel softmax, log-softmax, logsumexp and cross-entropy: each shard holds
// columns [first_col, first_col + cols) of every row of logits [rows, C]. A shard computes a
// partial state per row, the states of all shards merge (here, on the host, or through any
// collective library), and each shard finishes its own columns from the merged state.
// Host mirror of the states and their merge: src/vocab_parallel/state.rs.
//
// Joined behind (see `vocab_source` in src/shader/mod.rs): a header (WG, CE, HAS_OUTPUT,
// WEIGHTED), the bindings of this module's one entry point with their accessors (`load_x`,
// `store_pair`, `target_of`, `class_weight`, `state_load`/`state_store` for the shard's
// states, `merged_load`/`merged_store` for the merged ones, `store_lse`, `store_loss`,
// `load_loss`, `meta_load`/`meta_store`; stubs for the bindings it lacks), the dtype
// preludes, common.wgsl and reduce_workgroup.wgsl.
//
// Entry points, one pipeline each:
//   partial   (a workgroup per row, or on GPUs for a few rows per piece of a row): the
//             shard's state of each row (of each piece, then merged by `merge_rows`);
//   merge_rows (a lane per row): `count` states per row, shard-major, merged in order;
//   forward   (a lane per output pair): softmax or log-softmax of the shard's columns
//             (HAS_OUTPUT), and where asked each row's logsumexp (a lane per row);
//   ce_rows   (a lane per row): each row's loss and logsumexp;
//   ce_reduce (1 workgroup): meta = [denominator, first invalid row, reduced loss, 0];
//   ce_grad   (a lane per output pair): the gradient of the shard's columns.

// Words of a row's state. Rust side: `PartialState` in src/vocab_parallel/state.rs.
const STATE_WORDS: u32 = 9u;
const S_M: u32 = 0u;       // max of the finite logits (raw, before 1/T); F32_LOWEST for none
const S_S: u32 = 1u;       // sum of exp((z - m) / T) over the finite logits
const S_FLAGS: u32 = 2u;   // FLAG_NAN | FLAG_POS_INF
const S_COLS: u32 = 3u;    // columns covered
const S_OWNERS: u32 = 4u;  // states holding the row's target
const S_Z_T: u32 = 5u;     // the target's logit (0 where not held)
const S_W_T: u32 = 6u;     // the target's class weight (0 where not held)
const S_SMOOTH: u32 = 7u;  // label smoothing: sum of w_j (m - z_j)
const S_W_SUM: u32 = 8u;   // label smoothing: sum of w_j

const REDUCTION_MEAN: u32 = 1u;
const NO_ROW: u32 = 0xffffffffu;
const OP_SOFTMAX: u32 = 0u;

// Rust side: `VocabParams` in src/params.rs. Keep both in the same order.
struct Params {
    // Rows of this dispatch (a chunk of the call's rows for `partial`, `forward`, `ce_grad`).
    rows: u32,
    // Columns of this shard.
    cols: u32,
    // Element index of the chunk's first logit in the x binding, first output in y.
    x_base: u32,
    y_base: u32,
    // The chunk's first row in targets, states, loss and lse.
    row0: u32,
    // The shard's first global column.
    first_col: u32,
    // `merge`: states per row.
    count: u32,
    ignore_index: i32,
    // 0 none, 1 mean, 2 sum.
    reduction: u32,
    inv_t: f32,
    smoothing: f32,
    z_loss: f32,
    grad_scale: f32,
    // `forward`: OP_SOFTMAX or log-softmax.
    op: u32,
    masked_zeros: u32,
    // `forward`: write each row's logsumexp.
    write_lse: u32,
    // `partial`: pieces per row; with more than one, piece c's state of row r goes to
    // c * total_rows + r, and `merge_rows` merges them.
    pieces: u32,
    total_rows: u32,
    _pad0: u32,
    _pad1: u32,
}

// A row's state, unpacked.
struct State {
    online: Online,
    cols: u32,
    owners: u32,
    z_t: f32,
    w_t: f32,
    smooth_sum: f32,
    w_sum: f32,
}

fn state_of(w: array<u32, STATE_WORDS>) -> State {
    return State(Online(bitcast<f32>(w[S_M]), bitcast<f32>(w[S_S]), w[S_FLAGS]), w[S_COLS],
                 w[S_OWNERS], bitcast<f32>(w[S_Z_T]), bitcast<f32>(w[S_W_T]),
                 bitcast<f32>(w[S_SMOOTH]), bitcast<f32>(w[S_W_SUM]));
}

fn words_of(s: State) -> array<u32, STATE_WORDS> {
    return array<u32, STATE_WORDS>(bitcast<u32>(s.online.m), bitcast<u32>(s.online.s),
                                   s.online.flags, s.cols, s.owners, bitcast<u32>(s.z_t),
                                   bitcast<u32>(s.w_t), bitcast<u32>(s.smooth_sum),
                                   bitcast<u32>(s.w_sum));
}

fn load_state(r: u32) -> State {
    var w: array<u32, STATE_WORDS>;
    for (var k = 0u; k < STATE_WORDS; k++) {
        w[k] = state_load(STATE_WORDS * r + k);
    }
    return state_of(w);
}

fn load_merged(r: u32) -> State {
    var w: array<u32, STATE_WORDS>;
    for (var k = 0u; k < STATE_WORDS; k++) {
        w[k] = merged_load(STATE_WORDS * r + k);
    }
    return state_of(w);
}

// sum_j w_j (m_part - z_j) moved to the merged max m: plus (m - m_part) sum_j w_j, no term
// negative (m >= m_part). A part without weight adds nothing (0 * inf would be NaN).
fn shifted_smooth(p: State, m: f32) -> f32 {
    return p.smooth_sum + select(p.w_sum * (m - p.online.m), 0.0, p.w_sum == 0.0 || m == p.online.m);
}

// The merge of two states: associative up to f32 rounding, commutative exactly. Host twin:
// `PartialState::merge`.
fn merge_states(a: State, b: State, inv_t: f32) -> State {
    let online = merge(a.online, b.online, inv_t);
    return State(online, a.cols + b.cols, a.owners + b.owners, a.z_t + b.z_t, a.w_t + b.w_t,
                 shifted_smooth(a, online.m) + shifted_smooth(b, online.m),
                 a.w_sum + b.w_sum);
}

// The row's target class (raw), and whether it is ignored.
fn is_ignored(t: i32) -> bool {
    return t == params.ignore_index;
}

// ---- partial ----

// Piece `piece_index` of `row`: its state over the piece's columns (the whole row for one
// piece).
fn partial_piece(row: u32, piece_index: u32, lid: u32) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let x_row = params.x_base + row * cols;
    let piece = piece_of(cols, piece_index, params.pieces);
    let share = lane_part(cols, piece_index, params.pieces, lid);
    var st = stream_empty();
    fold_columns(&st, x_row, share, inv_t);
    let online = reduce_online(stream_state(st), lid, inv_t);
    let r = params.row0 + row;
    var out = State(online, piece.end - piece.first, 0u, 0.0, 0.0, 0.0, 0.0);
    if (CE) {
        // Label smoothing's sums, a second read of the shard (the max first: no term of
        // w_j (m - z_j) is negative).
        if (params.smoothing > 0.0) {
            var acc = stream_empty();
            var w_acc = stream_empty();
            for (var c = share.first; c < share.end; c += share.step) {
                let w = class_weight(c);
                stream_push(&acc, w * (online.m - load_x(x_row + c)));
                stream_push(&w_acc, w);
            }
            out.smooth_sum = reduce_sum(stream_state(acc).s, lid);
            out.w_sum = select(f32(out.cols), reduce_sum(stream_state(w_acc).s, lid), WEIGHTED);
        }
        let t = target_of(r);
        let local = u32(t) - params.first_col;
        if (!is_ignored(t) && t >= 0 && local >= piece.first && local < piece.end) {
            out.owners = 1u;
            out.z_t = load_x(x_row + local);
            out.w_t = class_weight(local);
        }
    }
    if (lid == 0u) {
        var w = words_of(out);
        let at = piece_index * params.total_rows + r;
        for (var k = 0u; k < STATE_WORDS; k++) {
            state_store(STATE_WORDS * at + k, w[k]);
        }
    }
}

// Pieces along x, rows along y (in turns past one dimension's limit).
@compute @workgroup_size(WG)
fn partial(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    for (var row = wid.y; row < params.rows; row += nwg.y) {
        partial_piece(row, wid.x, lid);
    }
}

// ---- merge ----

@compute @workgroup_size(WG)
fn merge_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    for (var r = gid.x; r < params.rows; r += nwg.x * WG) {
        var acc = load_state(r);
        for (var k = 1u; k < params.count; k++) {
            acc = merge_states(acc, load_state(k * params.rows + r), params.inv_t);
        }
        var w = words_of(acc);
        for (var k = 0u; k < STATE_WORDS; k++) {
            merged_store(STATE_WORDS * r + k, w[k]);
        }
    }
}

// ---- forward ----

// Two outputs of one row, without branches (CPU adapters run both sides of a branch their
// SIMD lanes take differently).
fn forward_values(z: vec2<f32>, st: RowStats) -> vec2<f32> {
    return forward4(vec4<f32>(z, z), st).xy;
}

// Four outputs of one row, as `forward_values`.
fn forward4(z: vec4<f32>, st: RowStats) -> vec4<f32> {
    let neg = is_neg_inf4(z);
    let d = z - vec4<f32>(st.m);
    var v = select((d * params.inv_t) - vec4<f32>(st.log_s), vec4<f32>(f32_neg_inf()), neg);
    if (params.op == OP_SOFTMAX) {
        v = select(exp_t4(d, params.inv_t) * st.inv_s, vec4<f32>(0.0), neg);
    }
    return select(v, vec4<f32>(st.special), st.nan_row);
}

fn forward_stats(r: u32) -> RowStats {
    var st = row_stats(load_merged(r).online, params.inv_t);
    st.special = select(f32_nan(), 0.0, st.empty && params.masked_zeros != 0u);
    return st;
}

// The output pairs of the dispatch's lane `gid.x`: every lanes-th pair, as absolute pair
// indices of the y binding (pair q covers elements 2q and 2q + 1, so that packed 16-bit
// outputs write whole words). Strided on CPU adapters too: their SIMD lanes then load and
// store neighbouring words (contiguous runs per lane, gathered and scattered, took lavapipe
// 15 ms for the softmax of 16 x 128256).
fn lane_pairs(gid: vec3<u32>, nwg: vec3<u32>) -> Share {
    let n = params.rows * params.cols;
    let first = params.y_base / 2u;
    return Share(first + gid.x, (params.y_base + n + 1u) / 2u, nwg.x * WG);
}

// Whether element `e` starts a row other than the one from `start` (or the first): then
// `start` becomes that row's first element.
fn see_row(e: u32, start: ptr<function, u32>, fresh: ptr<function, bool>) -> bool {
    if (*fresh || e - *start >= params.cols) {
        *start = e - e % params.cols;
        *fresh = false;
        return true;
    }
    return false;
}

// Output pair q of the row from y element `out_row` (x element `x_row`): its elements in
// the row, stored; those outside it not.
fn finish_pair(q: u32, out_row: u32, x_row: u32, st: RowStats) {
    let c0 = 2u * q - out_row;
    let ok = vec2<bool>(c0 < params.cols, c0 + 1u < params.cols);
    let c = min(vec2<u32>(c0, c0 + 1u), vec2<u32>(params.cols - 1u));
    let z = vec2<f32>(load_x(x_row + c.x), load_x(x_row + c.y));
    store_pair(q, forward_values(z, st), ok.x, ok.y);
}

@compute @workgroup_size(WG)
fn forward(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if (HAS_OUTPUT && CONTIGUOUS) {
        // CPU adapters: a workgroup per row, each lane a contiguous run of its blocks, the
        // row's statistics read once (lanes over the whole tensor, strided or in runs,
        // took lavapipe 1.9 to 2.5 times as long: 16 x 128256 in two shards).
        for (var row = wid.x; row < params.rows; row += nwg.x) {
            let st = forward_stats(params.row0 + row);
            let out_row = params.y_base + row * params.cols;
            let x_row = params.x_base + row * params.cols;
            // The row's whole blocks of 8 in the y binding, stored as vectors; lane 0 the
            // pairs at either end (a word shared with the next row merged atomically).
            let r = block_row(out_row, params.cols);
            let sh = piece_blocks(r, 0u, 1u, lid);
            for (var b = sh.first; b < sh.end; b++) {
                let z = load_run(x_row + BLOCK * b - out_row);
                store_block(b, Block(forward4(z.lo, st), forward4(z.hi, st)));
            }
            if (lid == 0u) {
                for (var q = first_edge_pair(r); q < r.end; q = next_edge_pair(r, q)) {
                    finish_pair(q, out_row, x_row, st);
                }
            }
        }
    } else if (HAS_OUTPUT) {
        let n = params.rows * params.cols;
        let sh = lane_pairs(gid, nwg);
        // The stats of the row last seen, elements [start, start + cols): a lane's run of
        // pairs crosses few rows, and only a new row divides.
        var start = 0u;
        var fresh = true;
        var st: RowStats;
        for (var q = sh.first; q < sh.end; q += sh.step) {
            // Elements outside the chunk (a row starting at an odd index wraps below 0) are
            // not stored.
            let e0 = 2u * q - params.y_base;
            let ok = vec2<bool>(e0 < n, e0 + 1u < n);
            let e = vec2<u32>(min(e0, n - 1u), min(e0 + 1u, n - 1u));
            let z = vec2<f32>(load_x(params.x_base + e.x), load_x(params.x_base + e.y));
            if (see_row(e.x, &start, &fresh)) {
                st = forward_stats(params.row0 + start / params.cols);
            }
            let lo = forward_values(z, st).x;
            if (see_row(e.y, &start, &fresh)) {
                st = forward_stats(params.row0 + start / params.cols);
            }
            store_pair(q, vec2<f32>(lo, forward_values(z, st).y), ok.x, ok.y);
        }
    }
    if (params.write_lse != 0u) {
        for (var row = gid.x; row < params.rows; row += nwg.x * WG) {
            let r = params.row0 + row;
            store_lse(r, row_stats(load_merged(r).online, params.inv_t).lse);
        }
    }
}

// ---- cross-entropy ----

// Why a row counts: 1 counted, 0 ignored, 2 invalid (no state, or several, holds its target).
fn row_kind(r: u32, st: State) -> u32 {
    if (is_ignored(target_of(r))) {
        return 0u;
    }
    return select(2u, 1u, st.owners == 1u);
}

// The loss of a row from its merged state (`row_loss` in shaders/cross_entropy.wgsl, with the
// vocabulary's size and weight sum from the state).
fn merged_loss(r: u32, st: State, stats: RowStats) -> f32 {
    let kind = row_kind(r, st);
    if (kind == 0u) {
        return 0.0;
    }
    if (kind == 2u || stats.nan_row) {
        return f32_nan();
    }
    let inv_t = params.inv_t;
    let eps = params.smoothing;
    let nll = select((stats.m - st.z_t) * inv_t + stats.log_s, f32_pos_inf(), is_neg_inf(st.z_t));
    var loss = (1.0 - eps) * st.w_t * nll;
    if (eps > 0.0) {
        loss += eps / f32(st.cols) * (inv_t * st.smooth_sum + st.w_sum * stats.log_s);
    }
    // Skipped when off: lse^2 overflows f32 for logits near 1e30, and 0 * inf is NaN.
    if (params.z_loss != 0.0) {
        loss += params.z_loss * stats.lse * stats.lse;
    }
    return loss;
}

@compute @workgroup_size(WG)
fn ce_rows(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    for (var r = gid.x; r < params.rows; r += nwg.x * WG) {
        let st = load_merged(r);
        let stats = row_stats(st.online, params.inv_t);
        store_lse(r, stats.lse);
        store_loss(r, merged_loss(r, st, stats));
    }
}

@compute @workgroup_size(WG)
fn ce_reduce(@builtin(local_invocation_index) lid: u32) {
    var d = stream_empty();
    var acc = stream_empty();
    var first = NO_ROW;
    for (var r = lid; r < params.rows; r += WG) {
        let st = load_merged(r);
        let kind = row_kind(r, st);
        if (kind == 1u) {
            stream_push(&d, st.w_t);
        } else if (kind == 2u) {
            first = min(first, r);
        }
        stream_push(&acc, load_loss(r));
    }
    let denom = reduce_sum(stream_state(d).s, lid);
    let total = reduce_sum(stream_state(acc).s, lid);
    let bad = reduce_min_u32(first, lid);
    if (lid == 0u) {
        var v = total;
        if (params.reduction == REDUCTION_MEAN) {
            // Every row ignored: NaN, as PyTorch.
            v = select(total / denom, f32_nan(), denom == 0.0);
        }
        meta_store(0u, bitcast<u32>(denom));
        meta_store(1u, bad);
        meta_store(2u, bitcast<u32>(v));
        meta_store(3u, 0u);
    }
}

// A row's gradient as g_j = a e_j - b w_j - h [j == t], e_j = exp((z_j - m) / T) (`grad_coef`
// in shaders/cross_entropy.wgsl, from the merged state, C and W the state's):
//   a = f ((1 - eps) w_t + eps / C W + 2 zl lse) / s,  b = f eps / C,  h = f (1 - eps) w_t,
// f = grad_scale / T (over the denominator for the mean); NaN in a row with a NaN, +inf or
// only -inf, 0 in a row not counted.
struct GradRow {
    m: f32,
    a: f32,
    b: f32,
    h: f32,
    t: u32,
    nan: bool,
    off: bool,
}

fn grad_row(r: u32) -> GradRow {
    let st = load_merged(r);
    let stats = row_stats(st.online, params.inv_t);
    let eps = params.smoothing;
    var f = params.grad_scale * params.inv_t;
    if (params.reduction == REDUCTION_MEAN) {
        f = f / bitcast<f32>(meta_load(0u));
    }
    let k = eps / f32(st.cols);
    let zl = select(2.0 * params.z_loss * stats.lse, 0.0, params.z_loss == 0.0);
    let a = f * ((1.0 - eps) * st.w_t + k * st.w_sum + zl) * stats.inv_s;
    return GradRow(stats.m, a, f * k, f * (1.0 - eps) * st.w_t,
                   u32(target_of(r)) - params.first_col, stats.nan_row, row_kind(r, st) != 1u);
}

// The gradient of logit `z` of local column `c`.
fn grad_value(z: f32, c: u32, g: GradRow) -> f32 {
    if (g.off) {
        return 0.0;
    }
    if (g.nan) {
        return f32_nan();
    }
    return g.a * packed_exp(z, g.m, params.inv_t) - g.b * class_weight(c)
        - select(0.0, g.h, c == g.t);
}

// The gradients of four logits `z` of columns c .. c + 4, without branches.
fn grad4(z: vec4<f32>, c: u32, g: GradRow) -> vec4<f32> {
    let cs = vec4<u32>(c, c + 1u, c + 2u, c + 3u);
    let w = vec4<f32>(class_weight(c), class_weight(c + 1u), class_weight(c + 2u),
                      class_weight(c + 3u));
    let e = shifted_exp(z, vec4<f32>(g.m), params.inv_t);
    let v = g.a * e - g.b * w - select(vec4<f32>(0.0), vec4<f32>(g.h), cs == vec4<u32>(g.t));
    return select(select(v, vec4<f32>(f32_nan()), g.nan), vec4<f32>(0.0), g.off);
}

@compute @workgroup_size(WG)
fn ce_grad(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    if (CONTIGUOUS) {
        // CPU adapters: a workgroup per row, as in `forward`.
        for (var row = wid.x; row < params.rows; row += nwg.x) {
            let g = grad_row(params.row0 + row);
            let out_row = params.y_base + row * params.cols;
            let x_row = params.x_base + row * params.cols;
            let r = block_row(out_row, params.cols);
            let sh = piece_blocks(r, 0u, 1u, lid);
            for (var b = sh.first; b < sh.end; b++) {
                // The block's logits first: in place, the block is this lane's.
                let c = BLOCK * b - out_row;
                let z = load_run(x_row + c);
                store_block(b, Block(grad4(z.lo, c, g), grad4(z.hi, c + 4u, g)));
            }
            if (lid == 0u) {
                for (var q = first_edge_pair(r); q < r.end; q = next_edge_pair(r, q)) {
                    let c0 = 2u * q - out_row;
                    let ok = vec2<bool>(c0 < params.cols, c0 + 1u < params.cols);
                    let c = min(vec2<u32>(c0, c0 + 1u), vec2<u32>(params.cols - 1u));
                    let z = vec2<f32>(load_x(x_row + c.x), load_x(x_row + c.y));
                    store_pair(q, vec2<f32>(grad_value(z.x, c.x, g), grad_value(z.y, c.y, g)),
                               ok.x, ok.y);
                }
            }
        }
        return;
    }
    let n = params.rows * params.cols;
    let sh = lane_pairs(gid, nwg);
    // As in `forward`: the coefficients of the row last seen, from element `start`.
    var start = 0u;
    var fresh = true;
    var g: GradRow;
    for (var q = sh.first; q < sh.end; q += sh.step) {
        let e0 = 2u * q - params.y_base;
        let ok = vec2<bool>(e0 < n, e0 + 1u < n);
        let e = vec2<u32>(min(e0, n - 1u), min(e0 + 1u, n - 1u));
        // Both logits first: in place, this lane's word is the gradient's.
        let z = vec2<f32>(load_x(params.x_base + e.x), load_x(params.x_base + e.y));
        if (see_row(e.x, &start, &fresh)) {
            g = grad_row(params.row0 + start / params.cols);
        }
        let lo = grad_value(z.x, e.x - start, g);
        if (see_row(e.y, &start, &fresh)) {
            g = grad_row(params.row0 + start / params.cols);
        }
        store_pair(q, vec2<f32>(lo, grad_value(z.y, e.y - start, g)), ok.x, ok.y);
    }
}
