// Forward kernels of the softmax family: softmax, log_softmax and logsumexp along the last
// axis of row-major logits [rows, cols]. CPU mirror: `src/oracle.rs` (`softmax`,
// `log_softmax`, `logsumexp`), which every result of this file is tested against.
//
// Joined behind (see src/shader/mod.rs): a header of constants (WG, OP, CONTIGUOUS, HAS_LSE,
// LANES, RESIDENT, RESIDENT_BLOCKS, ALIGNED, SUBGROUP_ROWS, PACKED_COLS, PACKED_ROWS, COLUMNS) and
// `struct Ids`, the bindings with raw and vector accessors, the dtypes' `load_x`,
// `load_block`, `store_pair` and `store_block`, `store_partial`/`load_partial`, common.wgsl
// and one of reduce_row_tree.wgsl / reduce_row_subgroup.wgsl; after it, the generated
// `hold_blocks`, `exp_blocks`, `store_blocks` and `packed_tile`.
//
// One algorithm, four shapes of work (the variants of src/plan.rs):
// - `main` with RESIDENT: a row lives in registers, RESIDENT_BLOCKS blocks per lane. Each lane
//   finds its max, stores exp(z - its max) and sums it; the lanes' (max, sum) states merge;
//   outputs are the stored exponentials times exp(lane max - row max) / sum. One read, one
//   write, one exp per element.
// - `main` without RESIDENT (online): each lane folds its share into a running (max, sum)
//   (Milakov and Gimelshein, 2018), the states merge, then the row is read again to write
//   exp((z - m) / T) / s. Two reads, one write: for rows too long to hold.
// - Many rows per workgroup: LANES < WG (or one subgroup per row), so short rows keep every
//   invocation busy. Either of the two above; on CPU adapters also packed rows, several
//   whole rows to a lane (`packed_lane`).
// - Split-row, `partials` then `finish`: each row is cut into `chunks` pieces over as many
//   workgroups; each stores its piece's partial state; then every workgroup merges its row's
//   partials and writes its piece. For a few long rows, so that one row uses the whole GPU.
// - COLUMNS (batch-invariant mode, src/plan.rs `invariant_plan`): online or split-row, the
//   lanes folding the row's columns in their own order (`fold_columns`) rather than the
//   binding's blocks, so that a row's sums do not depend on where it lies; the outputs are
//   written by blocks as ever, each from the row's state alone.
//
// Blocks: lanes own blocks of 8 elements aligned in the output binding (16 or 32 bytes), so
// that loads and stores are vectors and packed 16-bit outputs write whole words; lane 0 of a
// row also takes the row's unaligned head and tail, by pairs (shared words are merged).

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

// `row_stats` with the output of every element of a row whose stats say NaN (a NaN or +inf
// in the row, or all -inf): NaN, or 0 for a fully masked row with `masked_zeros`.
fn forward_stats(st: Online, inv_t: f32) -> RowStats {
    var r = row_stats(st, inv_t);
    r.special = select(f32_nan(), 0.0, r.empty && params.masked_zeros != 0u);
    return r;
}

fn output_value(z: f32, st: RowStats, inv_t: f32) -> f32 {
    if (st.nan_row) {
        return st.special;
    }
    if (OP == OP_SOFTMAX) {
        return select(exp_t(z - st.m, inv_t) * st.inv_s, 0.0, is_neg_inf(z));
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

// How a row splits into blocks of 8 elements aligned in the output binding (vector loads
// and stores) and the pairs of its unaligned head and tail (fewer than 8 elements each).
struct Row {
    x_row: u32,
    out_row: u32,
    // Blocks [first_block, end_block), as block indices of the output binding.
    first_block: u32,
    end_block: u32,
    // Head pairs [head.first, head.end) and tail pairs [tail_first, tail_end).
    head_end: u32,
    tail_first: u32,
    tail_end: u32,
}

fn row_of(row: u32) -> Row {
    let cols = params.cols;
    let x_row = params.x_base + row * cols;
    let out_row = params.y_base + row * cols;
    let end = out_row + cols;
    var r: Row;
    r.x_row = x_row;
    r.out_row = out_row;
    r.first_block = (out_row + BLOCK - 1u) / BLOCK;
    r.end_block = max(end / BLOCK, r.first_block);
    r.tail_end = (end + 1u) / 2u;
    if (end / BLOCK <= r.first_block) {
        // No whole block: every pair is head.
        r.head_end = r.tail_end;
        r.tail_first = r.tail_end;
    } else {
        r.head_end = 4u * r.first_block;
        r.tail_first = 4u * r.end_block;
    }
    return r;
}

// Block b of the output binding's row, read from the logits: one vector load where the input
// is aligned like the output (ALIGNED), eight scalar loads elsewhere.
fn load_row_block(r: Row, b: u32) -> Block {
    if (ALIGNED) {
        return load_block(b + r.x_row / BLOCK - r.out_row / BLOCK);
    }
    let x = r.x_row + BLOCK * b - r.out_row;
    return Block(
        vec4<f32>(load_x(x), load_x(x + 1u), load_x(x + 2u), load_x(x + 3u)),
        vec4<f32>(load_x(x + 4u), load_x(x + 5u), load_x(x + 6u), load_x(x + 7u)),
    );
}

// Folds the blocks `blocks` of row `r` into a lane's stream.
fn fold_blocks(st: ptr<function, Stream>, r: Row, blocks: Share, inv_t: f32) {
    if (!CONTIGUOUS) {
        for (var b = blocks.first; b < blocks.end; b += blocks.step) {
            fold_block(st, load_row_block(r, b), inv_t);
        }
        return;
    }
    // Contiguous shares (step 1), two blocks at a time; an odd last block with -inf.
    var g = guard_empty();
    var b = blocks.first;
    for (; b + 1u < blocks.end; b += 2u) {
        fold_two_blocks(st, &g, load_row_block(r, b), load_row_block(r, b + 1u), inv_t);
    }
    if (b < blocks.end) {
        let none = vec4<f32>(f32_neg_inf());
        fold_two_blocks(st, &g, load_row_block(r, b), Block(none, none), inv_t);
    }
    (*st).flags |= guard_flags(g);
}

// `block_output` without branches, for CPU adapters (see `fold_two_blocks`). In a row
// without NaN or +inf every non-finite logit is -inf; a row with one gets the special output.
fn block_output_branchless(v: Block, st: RowStats, inv_t: f32) -> Block {
    let m = vec4<f32>(st.m);
    let special = vec4<f32>(st.special);
    let neg = vec4<f32>(f32_neg_inf());
    var lo: vec4<f32>;
    var hi: vec4<f32>;
    if (OP == OP_SOFTMAX) {
        // 0 for -inf: inv_s is finite wherever the row is not special.
        lo = shifted_exp(v.lo, m, inv_t) * st.inv_s;
        hi = shifted_exp(v.hi, m, inv_t) * st.inv_s;
    } else {
        let l = vec4<f32>(st.log_s);
        lo = select((v.lo - m) * inv_t - l, neg, is_neg_inf4(v.lo));
        hi = select((v.hi - m) * inv_t - l, neg, is_neg_inf4(v.hi));
    }
    let nan_row = vec4<bool>(st.nan_row);
    return Block(select(lo, special, nan_row), select(hi, special, nan_row));
}

// The outputs of a block from the row's stats.
fn block_output(v: Block, st: RowStats, inv_t: f32) -> Block {
    if (CONTIGUOUS) {
        return block_output_branchless(v, st, inv_t);
    }
    if (st.nan_row || !block_finite(v)) {
        return Block(
            vec4<f32>(output_value(v.lo.x, st, inv_t), output_value(v.lo.y, st, inv_t),
                      output_value(v.lo.z, st, inv_t), output_value(v.lo.w, st, inv_t)),
            vec4<f32>(output_value(v.hi.x, st, inv_t), output_value(v.hi.y, st, inv_t),
                      output_value(v.hi.z, st, inv_t), output_value(v.hi.w, st, inv_t)),
        );
    }
    let m = vec4<f32>(st.m);
    if (OP == OP_SOFTMAX) {
        return Block(exp_t4(v.lo - m, inv_t) * st.inv_s, exp_t4(v.hi - m, inv_t) * st.inv_s);
    }
    let l = vec4<f32>(st.log_s);
    return Block((v.lo - m) * inv_t - l, (v.hi - m) * inv_t - l);
}

// Writes the outputs of the blocks `blocks` of row `r`. Contiguous shares go two blocks at
// a time, both loaded before either is stored: on lavapipe 1.0 to 1.22 times as fast as a
// block at a time (docs/lavapipe-history.md, "Two blocks per write step").
fn write_blocks(r: Row, blocks: Share, stats: RowStats, inv_t: f32) {
    var b = blocks.first;
    if (CONTIGUOUS) {
        for (; b + 1u < blocks.end; b += 2u) {
            let v0 = load_row_block(r, b);
            let v1 = load_row_block(r, b + 1u);
            store_block(b, block_output(v0, stats, inv_t));
            store_block(b + 1u, block_output(v1, stats, inv_t));
        }
    }
    for (; b < blocks.end; b += blocks.step) {
        store_block(b, block_output(load_row_block(r, b), stats, inv_t));
    }
}

// Folds the head and tail pairs of a row (lane 0's job).
fn fold_edges(st: ptr<function, Online>, r: Row, inv_t: f32) {
    for (var q = r.out_row / 2u; q < r.head_end; q++) {
        fold_pair(st, load_pair(r.x_row, r.out_row, q, params.cols), inv_t);
    }
    for (var q = r.tail_first; q < r.tail_end; q++) {
        fold_pair(st, load_pair(r.x_row, r.out_row, q, params.cols), inv_t);
    }
}

// Writes the head and tail pairs of a row (lane 0's job).
fn write_edges(r: Row, stats: RowStats, inv_t: f32) {
    let cols = params.cols;
    for (var q = r.out_row / 2u; q < r.head_end; q++) {
        let v = load_pair(r.x_row, r.out_row, q, cols);
        let out = vec2<f32>(output_value(v.x, stats, inv_t), output_value(v.y, stats, inv_t));
        store_output_pair(r.out_row, q, cols, out);
    }
    for (var q = r.tail_first; q < r.tail_end; q++) {
        let v = load_pair(r.x_row, r.out_row, q, cols);
        let out = vec2<f32>(output_value(v.x, stats, inv_t), output_value(v.y, stats, inv_t));
        store_output_pair(r.out_row, q, cols, out);
    }
}

// The blocks [first, end) a lane owns, as a Share of block indices.
fn lane_blocks(first: u32, end: u32, lane: u32, lanes: u32) -> Share {
    let sh = share_in(end - first, lane, lanes);
    return Share(first + sh.first, first + sh.end, sh.step);
}

// One row of the online variant: fold the lane's blocks, merge, write. `live` is false for
// lanes past the last row, which still take part in the merge.
fn online_row(row: u32, at: Lane, ids: Ids, live: bool) {
    let inv_t = params.inv_t;
    let r = row_of(row);
    var blocks = lane_blocks(r.first_block, r.end_block, at.lane, at.lanes);
    if (!live) {
        blocks.end = blocks.first;
    }
    var stream = stream_empty();
    if (COLUMNS) {
        // The row's columns in their own order, whatever the binding's blocks.
        var share = column_share(Share(0u, params.cols, 1u), at.lane, at.lanes);
        if (!live) {
            share.end = share.first;
        }
        fold_row_columns(&stream, r, share, inv_t);
    } else {
        fold_blocks(&stream, r, blocks, inv_t);
    }
    var st = stream_state(stream);
    if (!COLUMNS && live && at.lane == 0u) {
        fold_edges(&st, r, inv_t);
    }
    let stats = forward_stats(reduce_row(st, at, ids, inv_t), inv_t);
    if (HAS_LSE && live && at.lane == 0u) {
        store_lse(params.lse_base + row, stats.lse);
    }
    if (OP == OP_LOGSUMEXP) {
        return;
    }
    write_blocks(r, blocks, stats, inv_t);
    if (live && at.lane == 0u) {
        write_edges(r, stats, inv_t);
    }
}

// One row of the row-resident variant (see the top of the file). Block k of the lane is
// `blocks.first + k * blocks.step`; the plan guarantees RESIDENT_BLOCKS of them cover the
// share. Lane 0 also folds and writes the row's head and tail, re-reading them.
//
// The three passes over the held blocks, `hold_blocks`, `exp_blocks` and `store_blocks`,
// are generated by src/shader/mod.rs (`held_passes`) around `held_load`, `held_exp` and
// `held_store` below: one statement per block with a constant index, so that the compiler
// keeps the blocks in registers (Mesa's CPU drivers run every access to an array indexed
// at run time as a loop over the SIMD lanes, as slow as reading the logits again; the
// H100's driver left such an array in memory too), and loops past
// `shader::MAX_UNROLLED_BLOCKS`.
fn resident_row(row: u32, at: Lane, ids: Ids, live: bool) {
    let inv_t = params.inv_t;
    let r = row_of(row);
    var blocks = lane_blocks(r.first_block, r.end_block, at.lane, at.lanes);
    if (!live) {
        blocks.end = blocks.first;
    }
    // Logits, NaN and +inf replaced by -inf (they only set flags); later the exponentials.
    var held: array<Block, RESIDENT_BLOCKS>;
    var top = F32_LOWEST;
    var flags = 0u;
    hold_blocks(&held, r, blocks, &top, &flags);
    // `top` stays F32_LOWEST for a lane without finite logits (-inf is below it).
    // The exponentials' sum, pairwise; the max is already known.
    var sum = stream_empty();
    sum.m = top;
    sum.flags = flags;
    exp_blocks(&held, vec4<f32>(top), inv_t, &sum);
    var st = stream_state(sum);
    if (live && at.lane == 0u) {
        var edges = online_empty();
        fold_edges(&edges, r, inv_t);
        st = merge(st, edges, inv_t);
    }
    let stats = forward_stats(reduce_row(st, at, ids, inv_t), inv_t);
    if (HAS_LSE && live && at.lane == 0u) {
        store_lse(params.lse_base + row, stats.lse);
    }
    if (OP == OP_LOGSUMEXP) {
        return;
    }
    // Softmax: exp(z - top) * exp(top - m) / s; a lane without finite logits has held 0.
    let out = HeldOutput(
        vec4<f32>(rescale(1.0, top, stats.m, inv_t) * stats.inv_s),
        vec4<f32>(stats.special),
        vec4<f32>(stats.m),
        vec4<f32>(stats.log_s),
        inv_t,
        stats.nan_row,
    );
    store_blocks(&held, r, blocks, out);
    if (live && at.lane == 0u) {
        write_edges(r, stats, inv_t);
    }
}

// Block k of a lane's share, or -inf past its end; NaN and +inf go to `flags` and become
// -inf; `top` keeps the largest logit.
fn held_load(r: Row, blocks: Share, k: u32, top: ptr<function, f32>,
             flags: ptr<function, u32>) -> Block {
    let b = blocks.first + k * blocks.step;
    let neg = vec4<f32>(f32_neg_inf());
    var v = Block(neg, neg);
    if (b < blocks.end) {
        v = load_row_block(r, b);
    }
    if (!block_finite(v)) {
        v.lo = screen(flags, v.lo);
        v.hi = screen(flags, v.hi);
    }
    let t4 = max(v.lo, v.hi);
    *top = max(*top, max(max(t4.x, t4.y), max(t4.z, t4.w)));
    return v;
}

// Adds exp((v - m) / T) of a held block to `sum`; returns the exponentials for softmax
// (which writes them rescaled), the logits otherwise.
fn held_exp(v: Block, m: vec4<f32>, inv_t: f32, sum: ptr<function, Stream>) -> Block {
    let lo = shifted_exp(v.lo, m, inv_t);
    let hi = shifted_exp(v.hi, m, inv_t);
    let e = lo + hi;
    stream_push(sum, (e.x + e.y) + (e.z + e.w));
    if (OP == OP_SOFTMAX) {
        return Block(lo, hi);
    }
    return v;
}

// What `held_store` needs of the row's stats.
struct HeldOutput {
    // exp(lane max - row max) / sum: the held exponentials' factor (softmax).
    scale: vec4<f32>,
    special: vec4<f32>,
    m: vec4<f32>,
    log_s: vec4<f32>,
    inv_t: f32,
    nan_row: bool,
}

// Writes the outputs of held block k (nothing past the share's end).
fn held_store(r: Row, blocks: Share, k: u32, v: Block, o: HeldOutput) {
    let b = blocks.first + k * blocks.step;
    if (b >= blocks.end) {
        return;
    }
    let neg = vec4<f32>(f32_neg_inf());
    var out: Block;
    if (OP == OP_SOFTMAX) {
        out = Block(v.lo * o.scale, v.hi * o.scale);
    } else {
        out = Block(
            select((v.lo - o.m) * o.inv_t - o.log_s, neg, is_neg_inf4(v.lo)),
            select((v.hi - o.m) * o.inv_t - o.log_s, neg, is_neg_inf4(v.hi)),
        );
    }
    if (o.nan_row) {
        out = Block(o.special, o.special);
    }
    store_block(b, out);
}

// Records NaN and +inf of `v` in `flags` and replaces them by -inf.
fn screen(flags: ptr<function, u32>, v: vec4<f32>) -> vec4<f32> {
    let bits = bitcast<vec4<u32>>(v);
    let mag = bits & vec4<u32>(F32_ABS_MASK);
    *flags |= select(0u, FLAG_NAN, any(mag > vec4<u32>(F32_INF_BITS)));
    *flags |= select(0u, FLAG_POS_INF, any(bits == vec4<u32>(F32_INF_BITS)));
    return select(vec4<f32>(f32_neg_inf()), v, mag < vec4<u32>(F32_INF_BITS));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    ids: Ids,
) {
    let at = lane_of(ids);
    // Rows go in groups of `at.rows` (times PACKED_ROWS where lanes pack rows), one group
    // per workgroup at a time.
    // (From constants, not from `at`: the loop below must be uniform, see split_row.wgsl.)
    let per_group = rows_per_workgroup() * max(PACKED_ROWS, 1u);
    let groups = (params.rows + per_group - 1u) / per_group;
    if (ROW_LOOP) {
        // More groups than one dimension of a dispatch holds: workgroups take turns, every
        // invocation of a workgroup running the same iterations (the merge has barriers).
        for (var g = wid.x; g < groups; g += nwg.x) {
            row_group(g, at, ids);
        }
    } else if (wid.x < groups) {
        // One group per workgroup, no loop: lavapipe ran a loop around the merge's barriers
        // at about half speed, even when it went round once.
        row_group(wid.x, at, ids);
    }
}

// The rows of group `g`, one per `at.row`; lanes past the last row still take part in the
// merge.
fn row_group(g: u32, at: Lane, ids: Ids) {
    if (PACKED_ROWS > 0u) {
        packed_lane((g * at.rows + at.row) * PACKED_ROWS);
        return;
    }
    let row = g * at.rows + at.row;
    let live = row < params.rows;
    if (RESIDENT) {
        resident_row(row, at, ids, live);
    } else {
        online_row(row, at, ids, live);
    }
}

// Packed rows (a row per lane on CPU adapters, `packed_cols` in src/shader/keys.rs): the
// lane takes the PACKED_ROWS rows of PACKED_COLS logits from `row0`, which fill whole
// blocks starting on one, and `packed_tile` (generated by src/shader/packed.rs) works each
// row out from the blocks' components, without pairs (Mesa's CPU drivers run every side of
// every branch): unrolled, without loops or branches, where the run holds at most
// `shader::MAX_UNROLLED_BLOCKS` blocks; otherwise a row at a time through a window of
// blocks, the neighbours' logits masked. The dispatch holds whole runs of rows only: the
// host runs the rows left over unpacked (`record_forward` in src/record.rs).
fn packed_lane(row0: u32) {
    if (row0 + PACKED_ROWS <= params.rows) {
        packed_tile(row0);
    }
}

// The stats of packed row `row` from its state: the max of F32_LOWEST and its logits, the
// sum of their `packed_exp` and its flags; stores its logsumexp.
fn packed_stats(row: u32, state: Online, inv_t: f32) -> RowStats {
    let st = forward_stats(state, inv_t);
    if (HAS_LSE) {
        store_lse(params.lse_base + row, st.lse);
    }
    return st;
}

// The output of logit `z` of a packed row, `e` its `packed_exp`.
fn packed_output(z: f32, e: f32, st: RowStats, inv_t: f32) -> f32 {
    var o: f32;
    if (OP == OP_SOFTMAX) {
        o = e * st.inv_s;
    } else {
        o = select((z - st.m) * inv_t - st.log_s, f32_neg_inf(), is_neg_inf(z));
    }
    return select(o, st.special, st.nan_row);
}

// `packed_output` of four logits (the windowed rows).
fn packed_output4(z: vec4<f32>, e: vec4<f32>, st: RowStats, inv_t: f32) -> vec4<f32> {
    var o: vec4<f32>;
    if (OP == OP_SOFTMAX) {
        o = e * st.inv_s;
    } else {
        let l = (z - vec4<f32>(st.m)) * inv_t - vec4<f32>(st.log_s);
        o = select(l, vec4<f32>(f32_neg_inf()), is_neg_inf4(z));
    }
    return select(o, vec4<f32>(st.special), vec4<bool>(st.nan_row));
}

// Split-row: the blocks of piece `c` of a row.
fn piece(r: Row, c: u32) -> Share {
    let p = piece_of(r.end_block - r.first_block, c, params.chunks);
    return Share(r.first_block + p.first, r.first_block + p.end, 1u);
}

// The partial state of piece `c` of `row`.
fn partial_of_piece(row: u32, c: u32, ids: Ids) {
    let at = lane_of(ids);
    let inv_t = params.inv_t;
    let r = row_of(row);
    var stream = stream_empty();
    if (COLUMNS) {
        // Piece c of the row's columns, in their own order (the pieces `finish_piece`
        // writes need not be the same: outputs depend on the row's state alone).
        let len = (params.cols + params.chunks - 1u) / params.chunks;
        let first = min(c * column_run(len), params.cols);
        let p = Share(first, min(first + column_run(len), params.cols), 1u);
        fold_row_columns(&stream, r, column_share(p, at.lane, at.lanes), inv_t);
    } else {
        let p = piece(r, c);
        fold_blocks(&stream, r, lane_blocks(p.first, p.end, at.lane, at.lanes), inv_t);
    }
    var st = stream_state(stream);
    if (!COLUMNS && c == 0u && at.lane == 0u) {
        fold_edges(&st, r, inv_t);
    }
    let merged = reduce_row(st, at, ids, inv_t);
    if (at.lane == 0u) {
        store_partial(row * params.chunks + c, merged);
    }
}

// COLUMNS: `n` columns rounded up to a whole number of runs of 16 on CPU adapters, so that
// every contiguous share and piece starts on a run (`fold_row_columns`); `n` on GPUs.
fn column_run(n: u32) -> u32 {
    if (CONTIGUOUS) {
        return (n + 2u * BLOCK - 1u) / (2u * BLOCK) * (2u * BLOCK);
    }
    return n;
}

// COLUMNS: lane `lane`'s share of the columns `p` of a row: every `lanes`-th on GPUs, a
// contiguous chunk of whole runs of 16 on CPU adapters.
fn column_share(p: Share, lane: u32, lanes: u32) -> Share {
    if (CONTIGUOUS) {
        let chunk = column_run((p.end - p.first + lanes - 1u) / lanes);
        let first = min(p.first + lane * chunk, p.end);
        return Share(first, min(first + chunk, p.end), 1u);
    }
    let sh = share_in(p.end - p.first, lane, lanes);
    return Share(p.first + sh.first, p.first + sh.end, sh.step);
}

// COLUMNS: `fold_columns` of the columns `share` of row `r`, its runs of 16 loaded as two
// blocks where the row starts on a block of the x binding (ALIGNED keys, rows of a multiple
// of 8 from an aligned base): the same values in the same order, a quarter of the loads
// (the shares start on runs, `column_share`).
fn fold_row_columns(st: ptr<function, Stream>, r: Row, share: Share, inv_t: f32) {
    if (!(CONTIGUOUS && ALIGNED && r.x_row % BLOCK == 0u)) {
        fold_columns(st, r.x_row, share, inv_t);
        return;
    }
    var g = guard_empty();
    var c = share.first;
    for (; c + 2u * BLOCK <= share.end; c += 2u * BLOCK) {
        let b = (r.x_row + c) / BLOCK;
        fold_two_blocks(st, &g, load_block(b), load_block(b + 1u), inv_t);
    }
    (*st).flags |= guard_flags(g);
    for (; c < share.end; c++) {
        stream_fold(st, load_x(r.x_row + c), inv_t);
    }
}

// Merges the partial states of `row` and writes its piece `c`.
fn finish_piece(row: u32, c: u32, ids: Ids) {
    // Logsumexp writes no piece: piece 0 writes the row's.
    if (OP == OP_LOGSUMEXP && c != 0u) {
        return;
    }
    let at = lane_of(ids);
    let inv_t = params.inv_t;
    var st = online_empty();
    for (var i = at.lane; i < params.chunks; i += at.lanes) {
        st = merge(st, load_partial(row * params.chunks + i), inv_t);
    }
    let stats = forward_stats(reduce_row(st, at, ids, inv_t), inv_t);
    if (HAS_LSE && c == 0u && at.lane == 0u) {
        store_lse(params.lse_base + row, stats.lse);
    }
    if (OP == OP_LOGSUMEXP) {
        return;
    }
    let r = row_of(row);
    let p = piece(r, c);
    let blocks = lane_blocks(p.first, p.end, at.lane, at.lanes);
    write_blocks(r, blocks, stats, inv_t);
    if (c == 0u && at.lane == 0u) {
        write_edges(r, stats, inv_t);
    }
}
