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
// Spelled exactly (-(2 - 2^-23) * 2^127): the decimal -3.40282347e+38 lies just past it,
// which naga rounds and Tint (and the WGSL specification) refuses.
const F32_LOWEST: f32 = -0x1.fffffep+127f;

// Row flags, OR-reduced across the workgroup.
const FLAG_NAN: u32 = 1u;
const FLAG_POS_INF: u32 = 2u;

// NaN and the infinities come from private variables, not from `bitcast`s of constants: WGSL
// makes a NaN or infinity out of a const-expression a shader-creation error (Tint enforces
// it; naga folds it), and a private variable's value is not a const-expression.
var<private> nan_bits: u32 = F32_NAN_BITS;
var<private> pos_inf_bits: u32 = F32_INF_BITS;
var<private> neg_inf_bits: u32 = F32_NEG_INF_BITS;
fn f32_nan() -> f32 { return bitcast<f32>(nan_bits); }
fn f32_pos_inf() -> f32 { return bitcast<f32>(pos_inf_bits); }
fn f32_neg_inf() -> f32 { return bitcast<f32>(neg_inf_bits); }
fn is_neg_inf(v: f32) -> bool { return bitcast<u32>(v) == F32_NEG_INF_BITS; }

// exp(d * inv_t) as exp2(d * (inv_t * log2(e))). The compilers lower `exp(x)` to
// `exp2(x * log2(e))` anyway; folding log2(e) into the temperature's factor, a uniform,
// saves one multiplication per logit with the same two roundings of the argument (lavapipe,
// 256 x 32000 f32, medians of four alternating runs: logsumexp 0.58 -> 0.59 of copy,
// softmax 0.43 -> 0.45).
const LOG2_E: f32 = 1.4426950408889634;
fn exp_t(d: f32, inv_t: f32) -> f32 { return exp2(d * (inv_t * LOG2_E)); }
fn exp_t4(d: vec4<f32>, inv_t: f32) -> vec4<f32> { return exp2(d * (inv_t * LOG2_E)); }

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

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & F32_ABS_MASK) < F32_INF_BITS;
}

// The flags a non-finite element sets: NaN or +inf; -inf sets none (it adds exp(-inf) = 0).
fn non_finite_flags(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if ((bits & F32_ABS_MASK) > F32_INF_BITS) {
        return FLAG_NAN;
    }
    return select(0u, FLAG_POS_INF, bits == F32_INF_BITS);
}

// Folds one element into the state. NaN and +inf only set flags; -inf contributes
// exp(-inf) = 0 and is skipped.
fn fold(st: ptr<function, Online>, v: f32, inv_t: f32) {
    if (!is_finite(v)) {
        (*st).flags |= non_finite_flags(v);
        return;
    }
    if (v > (*st).m) {
        // The old sum is rescaled to the new max; an empty state stays 0 whatever the factor.
        (*st).s = select((*st).s * exp_t((*st).m - v, inv_t), 0.0, (*st).s == 0.0) + 1.0;
        (*st).m = v;
    } else {
        (*st).s += exp_t(v - (*st).m, inv_t);
    }
}

// Rescales a partial sum from its own max `m_part` to the merged max `m`.
fn rescale(s: f32, m_part: f32, m: f32, inv_t: f32) -> f32 {
    return select(s * exp_t(m_part - m, inv_t), 0.0, s == 0.0);
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
        (*st).s += exp_t(v.x - (*st).m, inv_t) + exp_t(v.y - (*st).m, inv_t);
    } else {
        fold(st, v.x, inv_t);
        fold(st, v.y, inv_t);
    }
}

// A lane's online state over a stream of terms: the max `m`, the flags, and the sum of
// exp((z - m) * inv_t) kept as a cascade of radix 16: `l0` adds up to 16 terms, then passes
// its sum to `l1`, which adds up to 16 of those, and so on; `l3` keeps a running sum past
// 4096 terms. A term then passes through at most 15 additions per level, about log2 of the
// count in all (random rounding), the depth the accuracy contract allows for
// (src/accuracy.rs); a running sum's error would grow with the count itself (a lane of a
// 16-wide workgroup folds a thousand blocks of a 128256 row). No loop: lavapipe stops any
// loop after 65535 iterations per invocation, and an inner loop here would count them all.
struct Stream {
    m: f32,
    flags: u32,
    l0: f32,
    l1: f32,
    l2: f32,
    l3: f32,
    count: u32,
}

fn stream_empty() -> Stream {
    return Stream(F32_LOWEST, 0u, 0.0, 0.0, 0.0, 0.0, 0u);
}

// Adds a term already relative to the stream's max.
fn stream_push(st: ptr<function, Stream>, v: f32) {
    (*st).l0 += v;
    (*st).count += 1u;
    if (((*st).count & 0xfu) == 0u) {
        (*st).l1 += (*st).l0;
        (*st).l0 = 0.0;
        if (((*st).count & 0xffu) == 0u) {
            (*st).l2 += (*st).l1;
            (*st).l1 = 0.0;
            if (((*st).count & 0xfffu) == 0u) {
                (*st).l3 += (*st).l2;
                (*st).l2 = 0.0;
            }
        }
    }
}

// Raises the stream's max to `m` (never lowers it), rescaling the partial sums.
fn stream_raise(st: ptr<function, Stream>, m: f32, inv_t: f32) {
    if (m > (*st).m) {
        if ((*st).count != 0u) {
            let f = exp_t((*st).m - m, inv_t);
            (*st).l0 *= f;
            (*st).l1 *= f;
            (*st).l2 *= f;
            (*st).l3 *= f;
        }
        (*st).m = m;
    }
}

// Adds a partial state (its own max, sum and flags).
fn stream_add(st: ptr<function, Stream>, part: Online, inv_t: f32) {
    (*st).flags |= part.flags;
    if (part.s != 0.0) {
        stream_raise(st, part.m, inv_t);
        stream_push(st, rescale(part.s, part.m, (*st).m, inv_t));
    }
}

// Folds one logit, as `fold` does for an `Online`: NaN and +inf only set flags, -inf adds 0.
fn stream_fold(st: ptr<function, Stream>, v: f32, inv_t: f32) {
    if (!is_finite(v)) {
        (*st).flags |= non_finite_flags(v);
        return;
    }
    stream_raise(st, v, inv_t);
    stream_push(st, exp_t(v - (*st).m, inv_t));
}

// The stream as one online state; for a stream of plain terms (`stream_push` only), `.s` is
// their sum.
fn stream_state(st: Stream) -> Online {
    return Online(st.m, ((st.l0 + st.l1) + st.l2) + st.l3, st.flags);
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
    // Every output of a `nan_row` row: NaN here; the forward kernels' `forward_stats` sets
    // their masked zeros, once per row (read from the uniforms inside the output loops,
    // behind a short-circuit `&&`, it was gathered lane by lane for every block on
    // lavapipe).
    special: f32,
}

fn row_stats(st: Online, inv_t: f32) -> RowStats {
    var r: RowStats;
    r.m = st.m;
    r.log_s = log(st.s);
    r.inv_s = 1.0 / st.s;
    r.empty = st.s == 0.0 && st.flags == 0u;
    r.nan_row = st.flags != 0u || st.s == 0.0;
    r.special = f32_nan();
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

// Split-row: piece `c` of `n` items cut into `chunks` (the whole for c = 0, chunks = 1).
fn piece_of(n: u32, c: u32, chunks: u32) -> Share {
    let len = (n + chunks - 1u) / chunks;
    let first = min(c * len, n);
    return Share(first, min(first + len, n), 1u);
}

// The share of lane `lid` in piece `c` of `chunks` of n items, as item indices.
fn lane_part(n: u32, c: u32, chunks: u32, lid: u32) -> Share {
    let p = piece_of(n, c, chunks);
    let sh = share_of(p.end - p.first, lid);
    return Share(p.first + sh.first, p.first + sh.end, sh.step);
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

fn is_neg_inf4(v: vec4<f32>) -> vec4<bool> {
    return bitcast<vec4<u32>>(v) == vec4<u32>(F32_NEG_INF_BITS);
}

// Non-finite logits seen by a CPU fold (`fold_two_blocks`), kept as running maxima and
// turned into flags once per lane (`guard_flags`), which costs less per block than testing
// every block: the largest magnitude (above +inf's bits: a NaN) and the largest bits read
// as signed integers (+inf's bits or above: a +inf, or a NaN, which wins anyway).
struct Guard {
    mag: vec4<u32>,
    bits: vec4<i32>,
}

fn guard_empty() -> Guard {
    return Guard(vec4<u32>(0u), vec4<i32>(bitcast<i32>(0x80000000u)));
}

fn guard_flags(g: Guard) -> u32 {
    let mag = max(max(g.mag.x, g.mag.y), max(g.mag.z, g.mag.w));
    let bits = max(max(g.bits.x, g.bits.y), max(g.bits.z, g.bits.w));
    return flags_of(mag, bits);
}

// The flags of logits from the largest magnitude of their bits (above +inf's: a NaN) and
// their largest bits read as signed integers (+inf's or above: a +inf).
fn flags_of(mag: u32, bits: i32) -> u32 {
    return select(0u, FLAG_NAN, mag > F32_INF_BITS)
        | select(0u, FLAG_POS_INF, bits >= bitcast<i32>(F32_INF_BITS));
}

// Records `v` in the guard and returns it with -inf in place of NaN and +inf.
fn guarded(g: ptr<function, Guard>, v: vec4<f32>) -> vec4<f32> {
    let bits = bitcast<vec4<u32>>(v);
    let mag = bits & vec4<u32>(F32_ABS_MASK);
    (*g).mag = max((*g).mag, mag);
    (*g).bits = max((*g).bits, bitcast<vec4<i32>>(bits));
    return select(vec4<f32>(f32_neg_inf()), v, mag < vec4<u32>(F32_INF_BITS));
}

// exp((z - m) * inv_t), 0 for z = -inf: one logit of the packed rows' generated runs
// (src/shader/packed.rs and training_tiles.rs).
fn packed_exp(z: f32, m: f32, inv_t: f32) -> f32 {
    return select(exp_t(z - m, inv_t), 0.0, is_neg_inf(z));
}

// exp((x - m) * inv_t), 0 for x = -inf.
fn shifted_exp(x: vec4<f32>, m: vec4<f32>, inv_t: f32) -> vec4<f32> {
    return select(exp_t4(x - m, inv_t), vec4<f32>(0.0), is_neg_inf4(x));
}

fn block_finite(v: Block) -> bool {
    let m = vec4<u32>(F32_ABS_MASK);
    let inf = vec4<u32>(F32_INF_BITS);
    return all((bitcast<vec4<u32>>(v.lo) & m) < inf) && all((bitcast<vec4<u32>>(v.hi) & m) < inf);
}

// Folds a block into a lane's stream: one rescale at most and one pairwise addition per
// block where all eight are finite (the common case). GPUs' fold (strided blocks).
fn fold_block(st: ptr<function, Stream>, v: Block, inv_t: f32) {
    if (block_finite(v)) {
        let top4 = max(v.lo, v.hi);
        stream_raise(st, max(max(top4.x, top4.y), max(top4.z, top4.w)), inv_t);
        let m = vec4<f32>((*st).m);
        let e = exp_t4(v.lo - m, inv_t) + exp_t4(v.hi - m, inv_t);
        stream_push(st, (e.x + e.y) + (e.z + e.w));
    } else {
        var part = online_empty();
        fold_pair(&part, v.lo.xy, inv_t);
        fold_pair(&part, v.lo.zw, inv_t);
        fold_pair(&part, v.hi.xy, inv_t);
        fold_pair(&part, v.hi.zw, inv_t);
        stream_add(st, part, inv_t);
    }
}

// The CPU adapters' (CONTIGUOUS) fold of 16 logits into a lane's stream, the counterpart of
// `fold_block` above, without branches:
// lavapipe and llvmpipe run both sides of a branch that their SIMD lanes take differently,
// so the rare non-finite and new-max paths of `fold_block` cost every block as much as the
// common one (measured on lavapipe: 256 x 32000 logsumexp took 13 to 21 ms with them, 10 ms
// with the exponentials alone). NaN and +inf go to the guard and become -inf; -inf adds 0;
// the stream is rescaled to the new max once per 16 logits, by exactly 1 where the max did
// not move. Two blocks at a time and the guard instead of per-block tests took 256 x 32000
// f32 logsumexp on lavapipe from 7.3 to 6.2 ms (softmax 17.4 to 16.5 ms).
fn fold_two_blocks(st: ptr<function, Stream>, g: ptr<function, Guard>, a: Block, b: Block,
                   inv_t: f32) {
    let x0 = guarded(g, a.lo);
    let x1 = guarded(g, a.hi);
    let x2 = guarded(g, b.lo);
    let x3 = guarded(g, b.hi);
    let t4 = max(max(x0, x1), max(x2, x3));
    // The stream's max is at least F32_LOWEST, so `m` is finite even for blocks of -inf.
    let m = max((*st).m, max(max(t4.x, t4.y), max(t4.z, t4.w)));
    // `exp_t` with its base-2 exponent clamped at -182 (about e^-126), so that an
    // overflow to -inf (tiny temperatures) never reaches `exp2`.
    let f = exp2(max(((*st).m - m) * (inv_t * LOG2_E), -182.0));
    (*st).l0 *= f;
    (*st).l1 *= f;
    (*st).l2 *= f;
    (*st).l3 *= f;
    (*st).m = m;
    let mv = vec4<f32>(m);
    let e = (shifted_exp(x0, mv, inv_t) + shifted_exp(x1, mv, inv_t))
        + (shifted_exp(x2, mv, inv_t) + shifted_exp(x3, mv, inv_t));
    stream_push(st, (e.x + e.y) + (e.z + e.w));
}

// Logits i .. i + 8 of the x binding, by scalar loads (blocks that need not be aligned).
fn load_run(i: u32) -> Block {
    return Block(
        vec4<f32>(load_x(i), load_x(i + 1u), load_x(i + 2u), load_x(i + 3u)),
        vec4<f32>(load_x(i + 4u), load_x(i + 5u), load_x(i + 6u), load_x(i + 7u)),
    );
}

// Folds the columns `share` of the row starting at x element `x_row` into a lane's stream,
// in the order of the columns, whatever the row's place in its binding: CPU adapters
// (CONTIGUOUS) sixteen at a time through `fold_two_blocks`, then one at a time; GPUs every
// `share.step`-th column. The kernels' column layout, which batch-invariant mode runs
// (docs/batch_invariance.md), and the vocabulary-parallel partial states'.
fn fold_columns(st: ptr<function, Stream>, x_row: u32, share: Share, inv_t: f32) {
    var c = share.first;
    if (CONTIGUOUS) {
        var g = guard_empty();
        for (; c + 2u * BLOCK <= share.end; c += 2u * BLOCK) {
            fold_two_blocks(st, &g, load_run(x_row + c), load_run(x_row + c + BLOCK), inv_t);
        }
        (*st).flags |= guard_flags(g);
    }
    for (; c < share.end; c += share.step) {
        stream_fold(st, load_x(x_row + c), inv_t);
    }
}

// A row of `cols` elements starting at element `out_row` of an output binding, as the
// blocks of 8 aligned in that binding, [first_block, end_block), and the pairs outside them
// (fewer than 8 elements at either end), as absolute pair indices: the head
// [first, head_end) and the tail [tail_first, end). The backward and cross-entropy kernels'
// CPU layout; softmax.wgsl's `Row` is the same for the forward kernels.
struct BlockRow {
    first_block: u32,
    end_block: u32,
    first: u32,
    head_end: u32,
    tail_first: u32,
    end: u32,
}

fn block_row(out_row: u32, cols: u32) -> BlockRow {
    let end = out_row + cols;
    let first_block = (out_row + BLOCK - 1u) / BLOCK;
    var r = BlockRow(first_block, max(end / BLOCK, first_block), out_row / 2u, BLOCK / 2u * first_block,
                     0u, (end + 1u) / 2u);
    r.tail_first = 4u * r.end_block;
    if (end / BLOCK <= first_block) {
        // No whole block: every pair is head.
        r.head_end = r.end;
        r.tail_first = r.end;
    }
    return r;
}

// Lane `lid`'s share of the whole blocks of piece `c` of `chunks` of row `r`, as block
// indices (all of them for c = 0, chunks = 1).
fn piece_blocks(r: BlockRow, c: u32, chunks: u32, lid: u32) -> Share {
    let b = lane_part(r.end_block - r.first_block, c, chunks, lid);
    return Share(r.first_block + b.first, r.first_block + b.end, b.step);
}

// The first edge pair of the row (the tail's where the head is empty).
fn first_edge_pair(r: BlockRow) -> u32 {
    return select(r.first, r.tail_first, r.first == r.head_end);
}

// The edge pair after `q` (the head, then the tail; `r.end` after the last).
fn next_edge_pair(r: BlockRow, q: u32) -> u32 {
    return select(q + 1u, r.tail_first, q + 1u == r.head_end);
}
