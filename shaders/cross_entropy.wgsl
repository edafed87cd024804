// Fused cross-entropy over logits [rows, cols] and integer targets, with PyTorch's
// `F.cross_entropy` options (ignore_index, label_smoothing, weight, reduction) plus a
// temperature and a z-loss, and the gradient with respect to the logits in the same pass.
// CPU mirror: `cross_entropy` in src/oracle.rs.
//
// Joined behind (see src/shader/mod.rs): a header (WG, CONTIGUOUS, HAS_GRAD, BLOCKS, COLUMNS,
// ROW_PER_LANE, PACKED), the bindings (logits as `x`, gradient as `y`, lse_buf, targets,
// loss_buf, meta_buf, class_weight; with BLOCKS the vector views with `load_block` and
// `store_block`; split-row's partials with `store_ce_partial` and its loads), the dtype
// preludes,
// common.wgsl, reduce_workgroup.wgsl and row_runs.wgsl; followed by the generated
// `packed_run` (src/shader/training_tiles.rs).
//
// With BLOCKS (the logits at the gradient's offset modulo 8), lanes take blocks of 8 aligned
// in the gradient, loaded and stored as vectors as in softmax.wgsl (on CPU adapters each lane
// a contiguous run, on GPUs every WG-th block), and lane 0 the row's unaligned head and tail
// by pairs.
//
// Entry points, dispatched in this order in one compute pass:
//   prepare (1 workgroup): meta[0] = sum of w[t_i] over counted rows (the mean's
//            denominator), meta[1] = first row whose target is out of range,
//            meta[3] = W, the sum of the class weights (0 where unused: weights without
//            label smoothing);
//   main (a workgroup per row, or with ROW_PER_LANE a lane per row): per-row loss,
//        logsumexp and gradient; or, split-row (a few long rows, each cut into pieces over
//        many workgroups), `partials` then `finish`;
//   reduce (1 workgroup): meta[2] = the reduced loss.
//
// With a = (z - m) / T, lse = m / T + log s, eps the smoothing, C = cols, W = sum_j w_j:
//   loss_i = (1 - eps) w_t (lse - z_t / T) + eps / C * sum_j w_j (lse - z_j / T) + zl lse^2
//   dloss_i/dz_j = [(1 - eps) w_t (p_j - [j == t]) + eps / C (W p_j - w_j) + 2 zl lse p_j] / T
// scaled by grad_scale, and divided by the denominator for the mean.

const REDUCTION_MEAN: u32 = 1u;
const NO_ROW: u32 = 0xffffffffu;
const TARGET_IGNORED: i32 = -1;
const TARGET_INVALID: i32 = -2;

// Rust side: `CeParams` in src/params.rs. Keep both in the same order.
struct Params {
    // Rows of this dispatch: a chunk for `main`, all rows for `prepare` and `reduce`.
    rows: u32,
    cols: u32,
    // Element index of the chunk's first logit in the x binding.
    x_base: u32,
    // Element index of the chunk's first gradient in the y binding; without a gradient,
    // x_base (BLOCKS lay rows out in the gradient's blocks, else in the logits').
    y_base: u32,
    // Index of the chunk's first row in targets, lse and loss.
    row0: u32,
    ignore_index: i32,
    // 0 none, 1 mean, 2 sum.
    reduction: u32,
    // Split-row: pieces per row (1 otherwise).
    chunks: u32,
    inv_t: f32,
    smoothing: f32,
    z_loss: f32,
    // Upstream gradient of the reduced loss (or of each row's loss for `none`).
    grad_scale: f32,
    _pad4: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// The class of row r, or TARGET_IGNORED, or TARGET_INVALID (never used as an index).
fn target_class(r: u32) -> i32 {
    let t = targets[r];
    if (t == params.ignore_index) {
        return TARGET_IGNORED;
    }
    if (t < 0 || u32(t) >= params.cols) {
        return TARGET_INVALID;
    }
    return t;
}

@compute @workgroup_size(WG)
fn prepare(@builtin(local_invocation_index) lid: u32) {
    var d = stream_empty();
    var first = NO_ROW;
    for (var r = lid; r < params.rows; r += WG) {
        let t = target_class(r);
        if (t >= 0) {
            stream_push(&d, class_weight(u32(t)));
        } else if (t == TARGET_INVALID) {
            first = min(first, r);
        }
    }
    // W: `cols` without class weights (every weight 1; f32(cols) is their sum correctly
    // rounded). With them it is summed here, a pass over the vocabulary on this one
    // workgroup, only where label smoothing uses it (0 otherwise). Summed always, that
    // serial pass weighed on single rows: lavapipe, one row, f32 / f16 ratio to copy, medians
    // of three alternating runs: 1M 0.23 / 0.15 -> 0.41 / 0.27, 262144 0.29 / 0.19 -> 0.38 /
    // 0.33, 32000 0.33 / 0.27 -> 0.41 / 0.37 (256 x 32000 unchanged).
    var w = stream_empty();
    if (WEIGHTED && params.smoothing > 0.0) {
        for (var j = lid; j < params.cols; j += WG) {
            stream_push(&w, class_weight(j));
        }
    }
    let total = reduce_sum(stream_state(d).s, lid);
    let bad = reduce_min_u32(first, lid);
    let weight_sum = select(f32(params.cols), reduce_sum(stream_state(w).s, lid), WEIGHTED);
    if (lid == 0u) {
        meta_buf[0] = bitcast<u32>(total);
        meta_buf[1] = bad;
        meta_buf[3] = bitcast<u32>(weight_sum);
    }
}

@compute @workgroup_size(WG)
fn reduce(@builtin(local_invocation_index) lid: u32) {
    var acc = stream_empty();
    for (var r = lid; r < params.rows; r += WG) {
        stream_push(&acc, loss_buf[r]);
    }
    let total = reduce_sum(stream_state(acc).s, lid);
    if (lid == 0u) {
        var v = total;
        if (params.reduction == REDUCTION_MEAN) {
            let d = bitcast<f32>(meta_buf[0]);
            // Every row ignored: NaN, as PyTorch.
            v = select(total / d, f32_nan(), d == 0.0);
        }
        meta_buf[2] = bitcast<u32>(v);
    }
}

// A row's gradient as g_j = a e_j + b w_j - h [j == t], e_j = exp((z_j - m) / T), the
// coefficients computed once per row from the formula in the header (p_j = e_j / s):
//   a = f ((1 - eps) w_t + eps / C W + 2 zl lse) / s,  b = -f eps / C,  h = f (1 - eps) w_t,
// f = grad_scale / T; every g_j is NaN in a row with a NaN or +inf (`nan`), and 0 for an
// ignored or invalid target (`off`). A few operations per logit instead of the formula's
// dozen: lavapipe, bound by instructions, ran cross-entropy 5 to 10% faster.
struct GradCoef {
    m: f32,
    a: f32,
    b: f32,
    h: f32,
    t: u32,
    nan: bool,
    off: bool,
}

fn grad_coef(t: i32, st: RowStats) -> GradCoef {
    let eps = params.smoothing;
    let f = grad_scale() * params.inv_t;
    let k = eps / f32(params.cols);
    let off = t < 0;
    let w_t = select(class_weight(u32(max(t, 0))), 0.0, off);
    let w_sum = bitcast<f32>(meta_buf[3]);
    // 0 * lse is NaN for a row of all -inf (lse = -inf), which is `nan` anyway.
    let zl = select(2.0 * params.z_loss * st.lse, 0.0, params.z_loss == 0.0);
    let a = f * ((1.0 - eps) * w_t + k * w_sum + zl) * st.inv_s;
    return GradCoef(st.m, select(a, 0.0, off), select(-f * k, 0.0, off),
                    f * (1.0 - eps) * w_t, u32(max(t, 0)), st.nan_row && !off, off);
}

// The gradient of one logit `z` of column `c`.
fn grad_value(z: f32, c: u32, g: GradCoef) -> f32 {
    if (g.off) {
        return 0.0;
    }
    if (g.nan) {
        return f32_nan();
    }
    return grad_of_exp(packed_exp(z, g.m, params.inv_t), c, g);
}

// The gradient of a logit of column `c` from its exponential `e` (the packed rows'
// `packed_run`, which keeps the exponentials of its online state), without branches.
fn grad_of_exp(e: f32, c: u32, g: GradCoef) -> f32 {
    let v = g.a * e + g.b * class_weight(c) - select(0.0, g.h, c == g.t);
    return select(select(v, f32_nan(), g.nan), 0.0, g.off);
}

// `grad_value` of the four columns `c` without branches, for the block layouts and CPU
// adapters' pairs (CPU adapters run both sides of every branch their SIMD lanes take
// differently).
fn grad4(z: vec4<f32>, c: vec4<u32>, g: GradCoef) -> vec4<f32> {
    return grad4_of_exp(shifted_exp(z, vec4<f32>(g.m), params.inv_t), c, g);
}

// `grad4` from the exponentials `e` (the windowed `packed_run`, which keeps them from the
// row's online state).
fn grad4_of_exp(e: vec4<f32>, c: vec4<u32>, g: GradCoef) -> vec4<f32> {
    let v = g.a * e + g.b * class_weight4(c) - select(vec4<f32>(0.0), vec4<f32>(g.h),
                                                     c == vec4<u32>(g.t));
    return select(select(v, vec4<f32>(f32_nan()), g.nan), vec4<f32>(0.0), g.off);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (ROW_PER_LANE) {
        // Short rows: a row, or a run of rows, per lane (row_runs.wgsl).
        for (var g = wid.x; g < row_lane_groups(); g += nwg.x) {
            let k = g * WG + lid;
            if (k < row_lanes()) {
                if (PACKED) {
                    packed_run(k * run_rows());
                } else if (BLOCKS) {
                    loss_and_grad_run(k * run_rows());
                } else {
                    loss_and_grad_lane(k);
                }
            }
        }
        return;
    }
    if (ROW_LOOP) {
        // More rows than one dimension of a dispatch holds: workgroups take turns.
        for (var row = wid.x; row < params.rows; row += nwg.x) {
            loss_and_grad_row(row, lid);
        }
    } else if (wid.x < params.rows) {
        // One row per workgroup, no loop (see `main` in softmax.wgsl).
        loss_and_grad_row(wid.x, lid);
    }
}

// The loss of a row of class `t` whose target logit is `z_t`, from its stats and (with label
// smoothing) `smooth_sum` = sum_j w_j (m - z_j).
fn row_loss(z_t: f32, t: i32, stats: RowStats, smooth_sum: f32) -> f32 {
    let inv_t = params.inv_t;
    let eps = params.smoothing;
    var loss = 0.0;
    if (t == TARGET_INVALID || (t >= 0 && stats.nan_row)) {
        loss = f32_nan();
    } else if (t >= 0) {
        let nll = select((stats.m - z_t) * inv_t + stats.log_s, f32_pos_inf(), is_neg_inf(z_t));
        loss = (1.0 - eps) * class_weight(u32(t)) * nll;
        if (eps > 0.0) {
            loss += eps / f32(params.cols) * (inv_t * smooth_sum + bitcast<f32>(meta_buf[3]) * stats.log_s);
        }
        // Skipped when off: lse^2 overflows f32 for logits near 1e30, and 0 * inf is NaN.
        if (params.z_loss != 0.0) {
            loss += params.z_loss * stats.lse * stats.lse;
        }
    }
    return loss;
}

// The factor of every gradient: grad_scale, over the denominator for the mean.
fn grad_scale() -> f32 {
    if (params.reduction == REDUCTION_MEAN) {
        return params.grad_scale / bitcast<f32>(meta_buf[0]);
    }
    return params.grad_scale;
}

// Writes gradient pair q (elements 2q and 2q + 1 of the y binding) of the row at x element
// `x_row` and y element `y_row`; a column outside the row is not stored.
fn store_grad_pair(q: u32, x_row: u32, y_row: u32, g: GradCoef) {
    let cols = params.cols;
    let c0 = 2u * q - y_row;
    let c1 = c0 + 1u;
    let lo = c0 < cols;
    let hi = c1 < cols;
    var v = vec2<f32>(0.0);
    if (CONTIGUOUS) {
        // Both columns clamped into the row (a column outside it is not stored).
        let c = min(vec2<u32>(c0, c1), vec2<u32>(cols - 1u));
        let z = vec2<f32>(load_x(x_row + c.x), load_x(x_row + c.y));
        v = grad4(vec4<f32>(z, z), vec4<u32>(c, c), g).xy;
    } else {
        if (lo) {
            v.x = grad_value(load_x(x_row + c0), c0, g);
        }
        if (hi) {
            v.y = grad_value(load_x(x_row + c1), c1, g);
        }
    }
    store_pair(q, v, lo, hi);
}

// One short row on one lane (ROW_PER_LANE): no reduction and no barrier. In place, the
// lane reads each pair of its row before it writes it; a word shared with a neighbouring
// row (odd `cols`, 16-bit gradients) is merged, keeping the neighbour's half.
fn loss_and_grad_lane(row: u32) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let x_row = params.x_base + row * cols;
    let y_row = params.y_base + row * cols;
    let r = params.row0 + row;
    var st = stream_empty();
    for (var c = 0u; c < cols; c++) {
        stream_fold(&st, load_x(x_row + c), inv_t);
    }
    let stats = row_stats(stream_state(st), inv_t);
    let t = target_class(r);
    var smooth_sum = 0.0;
    if (params.smoothing > 0.0) {
        var acc = stream_empty();
        for (var c = 0u; c < cols; c++) {
            stream_push(&acc, class_weight(c) * (stats.m - load_x(x_row + c)));
        }
        smooth_sum = stream_state(acc).s;
    }
    lse_buf[r] = stats.lse;
    loss_buf[r] = row_loss(target_logit(x_row, t), t, stats, smooth_sum);
    if (HAS_GRAD) {
        let g = grad_coef(t, stats);
        for (var q = y_row / 2u; q < (y_row + cols + 1u) / 2u; q++) {
            store_grad_pair(q, x_row, y_row, g);
        }
    }
}

// The columns of the four elements from `e` in the row from `start`, clamped into it.
fn cols4(e: u32, start: u32) -> vec4<u32> {
    return min(cols_at(e, start), vec4<u32>(params.cols - 1u));
}

// A lane's run of `run_rows()` short rows from `row0` with BLOCKS (the host gives such a
// dispatch whole runs only, the gradient's blocks, or without one the logits', starting on
// a block, and the rows left over to a dispatch by pairs): a row at a time through the
// blocks that cover it, loaded as vectors with the neighbours' logits masked, in two
// passes without branches (the online max, sum and flags; the gradient); the blocks the row
// completes are stored, and the one it shares with the next row is kept (`carry`) until
// that row fills in the rest. In place, every block is read before it is written.
fn loss_and_grad_run(row0: u32) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let neg = vec4<f32>(f32_neg_inf());
    // Wrapping difference: the sums below wrap back into range.
    let x_shift = params.x_base / BLOCK - params.y_base / BLOCK;
    var carry = Block(vec4<f32>(0.0), vec4<f32>(0.0));
    var end = params.y_base + row0 * cols;
    for (var row = row0; row < row0 + run_rows(); row++) {
        let start = end;
        end = start + cols;
        let b_end = (end + BLOCK - 1u) / BLOCK;
        // One online pass, two blocks at a time (`fold_two_blocks`), the neighbours' logits
        // masked to -inf.
        var g = guard_empty();
        var st = stream_empty();
        var b = start / BLOCK;
        for (; b + 1u < b_end; b += 2u) {
            fold_two_blocks(&st, &g, row_block(b, x_shift, start), row_block(b + 1u, x_shift, start),
                            inv_t);
        }
        if (b < b_end) {
            fold_two_blocks(&st, &g, row_block(b, x_shift, start), Block(neg, neg), inv_t);
        }
        st.flags |= guard_flags(g);
        let stats = row_stats(stream_state(st), inv_t);
        // sum_j w_j (m - z_j): a third read, only when smoothing is on.
        var smooth_sum = 0.0;
        if (params.smoothing > 0.0) {
            var sm = stream_empty();
            for (var b = start / BLOCK; b < b_end; b++) {
                let v = load_block(b + x_shift);
                let c = BLOCK * b;
                let lo = select(vec4<f32>(0.0), class_weight4(cols4(c, start)) * (stats.m - v.lo),
                                in_row4(c, start));
                let hi = select(vec4<f32>(0.0), class_weight4(cols4(c + 4u, start)) * (stats.m - v.hi),
                                in_row4(c + 4u, start));
                let t = lo + hi;
                stream_push(&sm, (t.x + t.y) + (t.z + t.w));
            }
            smooth_sum = stream_state(sm).s;
        }
        let x_row = start + params.x_base - params.y_base;
        let r = params.row0 + row;
        let t = target_class(r);
        lse_buf[r] = stats.lse;
        loss_buf[r] = row_loss(target_logit(x_row, t), t, stats, smooth_sum);
        if (HAS_GRAD) {
            let coef = grad_coef(t, stats);
            for (var b = start / BLOCK; b < b_end; b++) {
                let v = load_block(b + x_shift);
                let c = BLOCK * b;
                let in_lo = in_row4(c, start);
                let in_hi = in_row4(c + 4u, start);
                var out = Block(grad4(v.lo, cols4(c, start), coef),
                                grad4(v.hi, cols4(c + 4u, start), coef));
                if (b == start / BLOCK) {
                    out = Block(select(carry.lo, out.lo, in_lo), select(carry.hi, out.hi, in_hi));
                }
                if (BLOCK * b + BLOCK <= end) {
                    store_block(b, out);
                } else {
                    carry = out;
                }
            }
        }
    }
}

// Block b of the y binding's layout (x block b + x_shift) with the logits outside the row
// from `start` as -inf.
fn row_block(b: u32, x_shift: u32, start: u32) -> Block {
    let v = load_block(b + x_shift);
    let neg = vec4<f32>(f32_neg_inf());
    return Block(select(neg, v.lo, in_row4(BLOCK * b, start)),
                 select(neg, v.hi, in_row4(BLOCK * b + 4u, start)));
}

// The class weights of four columns.
fn class_weight4(c: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(class_weight(c.x), class_weight(c.y), class_weight(c.z), class_weight(c.w));
}

// One row: its logsumexp, loss and (HAS_GRAD) gradient.
fn loss_and_grad_row(row: u32, lid: u32) {
    let inv_t = params.inv_t;
    let stats = row_stats(reduce_online(fold_part(row, 0u, 1u, lid), lid, inv_t), inv_t);
    let r = params.row0 + row;
    let t = target_class(r);
    // sum_j w_j (m - z_j): a second read of the row, only when smoothing is on.
    var smooth_sum = 0.0;
    if (params.smoothing > 0.0) {
        smooth_sum = reduce_sum(smooth_part(row, 0u, 1u, lid, stats.m).x, lid);
    }
    if (lid == 0u) {
        lse_buf[r] = stats.lse;
        loss_buf[r] = row_loss(target_logit(params.x_base + row * params.cols, t), t, stats,
                               smooth_sum);
    }
    // In place, the gradient overwrites logits that invocation 0 has just read.
    workgroupBarrier();
    if (HAS_GRAD) {
        write_grad_part(row, 0u, 1u, lid, t, stats);
    }
}

// The logit of class `t` in the row starting at x element `x_row` (0 for an ignored or
// invalid target).
fn target_logit(x_row: u32, t: i32) -> f32 {
    return select(0.0, load_x(x_row + u32(max(t, 0))), t >= 0);
}

// Piece `c` of `chunks` of `row` (the whole row for c = 0, chunks = 1), as lane `lid`'s share:
// with BLOCKS, its blocks of 8 aligned in the gradient (see the header), piece 0's lane 0
// also taking the row's unaligned head and tail by pairs; otherwise its columns.
// `fold_part`, `smooth_part` and `write_grad_part` share it, so that a piece's partials cover
// the same logits in both split-row passes.
struct Part {
    // Element index of the row's first logit in the x binding and of its first gradient in
    // the y binding (the blocks' binding).
    x_row: u32,
    y_row: u32,
    // Blocks of the y binding that hold x block b + x_shift (wrapping difference).
    x_shift: u32,
    edges: BlockRow,
    // With BLOCKS: blocks; otherwise columns.
    share: Share,
    // Piece 0's lane 0 with BLOCKS: the edge pairs are this lane's.
    has_edges: bool,
}

fn part_of(row: u32, c: u32, chunks: u32, lid: u32) -> Part {
    let cols = params.cols;
    let x_row = params.x_base + row * cols;
    let y_row = params.y_base + row * cols;
    let edges = block_row(y_row, cols);
    var share = lane_part(cols, c, chunks, lid);
    if (BLOCKS) {
        share = piece_blocks(edges, c, chunks, lid);
    }
    return Part(x_row, y_row, x_row / BLOCK - y_row / BLOCK, edges, share,
                BLOCKS && c == 0u && lid == 0u);
}

// Lane `lid`'s online state of its share of piece `c` of `row`.
fn fold_part(row: u32, c: u32, chunks: u32, lid: u32) -> Online {
    let cols = params.cols;
    let inv_t = params.inv_t;
    let p = part_of(row, c, chunks, lid);
    var st = stream_empty();
    var k = p.share.first;
    if (BLOCKS && !COLUMNS) {
        if (CONTIGUOUS) {
            // CPU adapters: a contiguous run, two blocks at a time without branches.
            var g = guard_empty();
            for (; k + 1u < p.share.end; k += 2u) {
                fold_two_blocks(&st, &g, load_block(k + p.x_shift),
                                load_block(k + 1u + p.x_shift), inv_t);
            }
            if (k < p.share.end) {
                let none = vec4<f32>(f32_neg_inf());
                fold_two_blocks(&st, &g, load_block(k + p.x_shift), Block(none, none), inv_t);
            }
            st.flags |= guard_flags(g);
        } else {
            // GPUs: strided blocks, so that neighbouring lanes read neighbouring blocks.
            for (; k < p.share.end; k += p.share.step) {
                fold_block(&st, load_block(k + p.x_shift), inv_t);
            }
        }
        if (p.has_edges) {
            for (var q = first_edge_pair(p.edges); q < p.edges.end; q = next_edge_pair(p.edges, q)) {
                // Column 2q - y_row wraps below zero for a row starting at an odd index.
                let c0 = 2u * q - p.y_row;
                if (c0 < cols) {
                    stream_fold(&st, load_x(p.x_row + c0), inv_t);
                }
                if (c0 + 1u < cols) {
                    stream_fold(&st, load_x(p.x_row + c0 + 1u), inv_t);
                }
            }
        }
        return stream_state(st);
    }
    // The row's columns in their own order (without blocks, or with COLUMNS, where the
    // blocks serve the gradient's stores only).
    fold_columns(&st, p.x_row, lane_part(cols, c, chunks, lid), inv_t);
    return stream_state(st);
}

// Lane `lid`'s sums over its share of piece `c` of `row`: of w_j (m - z_j), and of w_j. With
// `m` at least every finite logit of the piece, no term is negative: no cancellation.
fn smooth_part(row: u32, c: u32, chunks: u32, lid: u32, m: f32) -> vec2<f32> {
    let cols = params.cols;
    let p = part_of(row, c, chunks, lid);
    var acc = stream_empty();
    var w_acc = stream_empty();
    if (BLOCKS && !COLUMNS) {
        for (var b = p.share.first; b < p.share.end; b += p.share.step) {
            let z = load_block(b + p.x_shift);
            let k = cols_at(BLOCK * b, p.y_row);
            let w_lo = class_weight4(k);
            let w_hi = class_weight4(k + 4u);
            let s = w_lo * (m - z.lo) + w_hi * (m - z.hi);
            let w = w_lo + w_hi;
            stream_push(&acc, (s.x + s.y) + (s.z + s.w));
            stream_push(&w_acc, (w.x + w.y) + (w.z + w.w));
        }
        if (p.has_edges) {
            for (var q = first_edge_pair(p.edges); q < p.edges.end; q = next_edge_pair(p.edges, q)) {
                // Column 2q - y_row wraps below zero for a row starting at an odd index.
                let c0 = 2u * q - p.y_row;
                for (var i = 0u; i < 2u; i++) {
                    let j = c0 + i;
                    if (j < cols) {
                        stream_push(&acc, class_weight(j) * (m - load_x(p.x_row + j)));
                        stream_push(&w_acc, class_weight(j));
                    }
                }
            }
        }
    } else {
        let sh = lane_part(cols, c, chunks, lid);
        for (var k = sh.first; k < sh.end; k += sh.step) {
            stream_push(&acc, class_weight(k) * (m - load_x(p.x_row + k)));
            stream_push(&w_acc, class_weight(k));
        }
    }
    return vec2<f32>(stream_state(acc).s, stream_state(w_acc).s);
}

// The gradient of block `b` of a row starting at element `y_row` of the output binding, `z`
// its logits. Whole blocks lie inside the row: no column wraps.
fn grad_block(z: Block, b: u32, y_row: u32, g: GradCoef) -> Block {
    let k = cols_at(BLOCK * b, y_row);
    return Block(grad4(z.lo, k, g), grad4(z.hi, k + 4u, g));
}

// Writes lane `lid`'s gradients of piece `c` of `row`, of class `t`, from the row's stats.
// In place, each lane reads every logit it overwrites, and only those.
fn write_grad_part(row: u32, c: u32, chunks: u32, lid: u32, t: i32, stats: RowStats) {
    let p = part_of(row, c, chunks, lid);
    let g = grad_coef(t, stats);
    if (BLOCKS) {
        // Contiguous shares two blocks at a time, both loaded before either is stored (as
        // softmax.wgsl's `write_blocks`).
        var b = p.share.first;
        if (CONTIGUOUS) {
            for (; b + 1u < p.share.end; b += 2u) {
                let z0 = load_block(b + p.x_shift);
                let z1 = load_block(b + 1u + p.x_shift);
                store_block(b, grad_block(z0, b, p.y_row, g));
                store_block(b + 1u, grad_block(z1, b + 1u, p.y_row, g));
            }
        }
        for (; b < p.share.end; b += p.share.step) {
            store_block(b, grad_block(load_block(b + p.x_shift), b, p.y_row, g));
        }
        if (p.has_edges) {
            for (var q = first_edge_pair(p.edges); q < p.edges.end; q = next_edge_pair(p.edges, q)) {
                store_grad_pair(q, p.x_row, p.y_row, g);
            }
        }
        return;
    }
    let cols = params.cols;
    let q0 = p.y_row / 2u;
    let pairs = lane_part((p.y_row + cols + 1u) / 2u - q0, c, chunks, lid);
    for (var q = q0 + pairs.first; q < q0 + pairs.end; q += pairs.step) {
        store_grad_pair(q, p.x_row, p.y_row, g);
    }
}

// Split-row (the entry points are in shaders/split_row.wgsl): each piece's online state,
// with label smoothing its sums of w_j (m_p - z_j) and of w_j (m_p the piece's max), and
// (piece 0) the target's logit, which an in-place gradient may overwrite before `finish`
// reads it. Then the row's stats from its pieces', piece 0 its logsumexp and loss, every
// piece its gradients. With smoothing, the row's sum of w_j (m - z_j) is that of each piece
// plus (m - m_p) times the piece's weights, all terms non-negative.

// The partials of piece `c` of `row`.
fn partial_of_piece(row: u32, c: u32, ids: Ids) {
    let lid = ids.lid;
    let st = reduce_online(fold_part(row, c, params.chunks, lid), lid, params.inv_t);
    var smoothing_sums = vec2<f32>(0.0);
    if (params.smoothing > 0.0) {
        let s = smooth_part(row, c, params.chunks, lid, st.m);
        smoothing_sums = vec2<f32>(reduce_sum(s.x, lid), reduce_sum(s.y, lid));
    }
    if (lid == 0u) {
        var z_t = 0.0;
        if (c == 0u) {
            z_t = target_logit(params.x_base + row * params.cols, target_class(params.row0 + row));
        }
        store_ce_partial(row * params.chunks + c, st, smoothing_sums, z_t);
    }
}

// Merges the partials of `row`; piece 0 writes its logsumexp and loss, piece `c` its
// gradients.
fn finish_piece(row: u32, c: u32, ids: Ids) {
    let lid = ids.lid;
    let chunks = params.chunks;
    let inv_t = params.inv_t;
    var st = online_empty();
    for (var i = lid; i < chunks; i += WG) {
        st = merge(st, load_partial(row * chunks + i), inv_t);
    }
    let stats = row_stats(reduce_online(st, lid, inv_t), inv_t);
    let r = params.row0 + row;
    let t = target_class(r);
    if (c == 0u) {
        var smooth_sum = 0.0;
        if (params.smoothing > 0.0) {
            var acc = stream_empty();
            for (var i = lid; i < chunks; i += WG) {
                let s = load_partial_smooth(row * chunks + i);
                stream_push(&acc, s.x + (stats.m - load_partial(row * chunks + i).m) * s.y);
            }
            smooth_sum = reduce_sum(stream_state(acc).s, lid);
        }
        if (lid == 0u) {
            lse_buf[r] = stats.lse;
            loss_buf[r] = row_loss(load_partial_target(row * chunks), t, stats, smooth_sum);
        }
    }
    if (HAS_GRAD) {
        write_grad_part(row, c, chunks, lid, t, stats);
    }
}
