// Sampling: from one row of logits to one token (src/sampling/, whose module documentation
// states the semantics; `oracle::sample` is the reference); with FILTERED, the row's
// filtered, renormalised probabilities instead (`oracle::sample_probs`).
//
// A row is cut into `chunks` pieces of `chunk_len` logits, a number fixed by the row's length
// alone (src/launch/sample.rs), and a call is a fixed sequence of stages, one dispatch each:
// chunk stages run a workgroup per piece (x) and row (y) and leave a partial record each;
// row stages run a workgroup per row, merge the row's partial records in piece order and
// move its state on. Each row's state says which stages still have work for it (`phase`);
// the others return at once. The stages, in order:
//
//   STATS, MERGE_STATS     the maximum, its first index, the NaN / +inf flags, the sum of
//                          exp((z - m) / T), the ties at the maximum; greedy rows end here;
//   COUNT, MERGE_COUNT     x4: top-k, a radix select of the k-th largest key, 8-bit digits
//                          counted with workgroup atomics (ties at the k-th value all kept),
//                          until at most CAP keys lie at or above the digits found;
//   GATHER, CANDIDATES     those keys are copied out and put in index order, and the select's
//                          end, top-p, min-p and the draw run over them alone;
//   MASS, MERGE_MASS       x8: otherwise top-p, the same select over 4-bit digits weighted
//                          by exp((z - m) / T), the kept mass summed in its first round,
//                          until the boundary digit holds at most CAP tokens;
//   GROUP_GATHER, GROUP    those tokens are copied out, put in index order, and top-p's
//                          threshold found among them;
//   SUMS, MERGE_SUMS       each piece's kept mass (lanes' contiguous shares in index order);
//   FINISH                 the piece that holds u times the kept mass walks to the token;
//                          or, with FILTERED, every piece writes its probabilities.
//
// Rows of one piece run every stage in turn in one workgroup, one dispatch (STAGE_ALL).
//
// Every sum is taken in an order fixed by the row's length alone, so a row gives the same
// token in any batch and at any position, and the number of passes does not grow with the
// row's length.
//
// Needs from the header: WG (a power of two, at most 256), `load_x(i)` for the input dtype,
// `row_uniform`, `write_result`, `store_prob` (src/shader/mod.rs) and common.wgsl
// (is_finite, non_finite_flags, exp_t, the NaN helpers).

// The uniform of the sampling kernel. Rust side: `SampleParams` in src/params.rs.
struct Params {
    // Rows of this dispatch, and their length.
    rows: u32,
    cols: u32,
    // Element of the dispatch's first logit in x_buf.
    x_base: u32,
    // The dispatch's first row in the per-row buffers (parameters, uniforms, results).
    row0: u32,
    // Philox key (PHILOX), low and high words.
    seed_lo: u32,
    seed_hi: u32,
    // Element of the dispatch's first probability in y_buf (FILTERED).
    y_base: u32,
    // Which stage this dispatch runs (STAGE_*), and its round of a select.
    stage: u32,
    round: u32,
    // Pieces per row and logits per piece (the last may be shorter).
    chunks: u32,
    chunk_len: u32,
    // Words of scratch per row: the state, the pieces' partial records, the candidates.
    row_words: u32,
}

const NO_TOKEN: u32 = 0xffffffffu;
const STATUS_OK: u32 = 0u;
const STATUS_NAN: u32 = 1u;
const STATUS_POS_INF: u32 = 2u;
const STATUS_ALL_MASKED: u32 = 3u;
const STATUS_INVALID_PARAMS: u32 = 4u;

// Stages; src/launch/sample.rs records them in this order (`stages()`).
const STAGE_STATS: u32 = 0u;
const STAGE_MERGE_STATS: u32 = 1u;
const STAGE_COUNT: u32 = 2u;
const STAGE_MERGE_COUNT: u32 = 3u;
const STAGE_GATHER: u32 = 4u;
const STAGE_CANDIDATES: u32 = 5u;
const STAGE_MASS: u32 = 6u;
const STAGE_MERGE_MASS: u32 = 7u;
const STAGE_SUMS: u32 = 8u;
const STAGE_MERGE_SUMS: u32 = 9u;
const STAGE_FINISH: u32 = 10u;
// Every stage in turn, in one workgroup per row: rows of one piece.
const STAGE_ALL: u32 = 11u;
const STAGE_GROUP_GATHER: u32 = 12u;
const STAGE_GROUP: u32 = 13u;

// What a row still needs (its state's S_PHASE).
const PHASE_DONE: u32 = 0u;
const PHASE_TOP_K: u32 = 1u;
const PHASE_CANDIDATES: u32 = 2u;
const PHASE_TOP_P: u32 = 3u;
const PHASE_SUMS: u32 = 4u;
const PHASE_WALK: u32 = 5u;
const PHASE_PROBS: u32 = 6u;
const PHASE_GREEDY_PROBS: u32 = 7u;
const PHASE_NAN_PROBS: u32 = 8u;
const PHASE_TOP_P_GROUP: u32 = 9u;

// A row's state: words of its scratch record. Rust side: `STATE_WORDS` in
// src/launch/sample.rs.
const STATE_WORDS: u32 = 16u;
const S_PHASE: u32 = 0u;
const S_M: u32 = 1u;
const S_ARGMAX: u32 = 2u;
const S_TOTAL: u32 = 3u;
const S_FLOOR: u32 = 4u;      // the lowest key the filters so far keep
const S_PREFIX: u32 = 5u;     // the select's digits found so far
const S_WANT: u32 = 6u;       // the select's rank (top-k) or mass (top-p, f32) left
const S_KEPT: u32 = 7u;       // tokens kept
const S_KEPT_MASS: u32 = 8u;  // their mass (f32)
const S_GOAL: u32 = 9u;       // u times the kept mass (f32)
const S_CHUNK: u32 = 10u;     // the piece that holds the goal
const S_BEFORE: u32 = 11u;    // the kept mass of the pieces before it (f32)
const S_TIES: u32 = 12u;      // logits equal to the maximum
const S_U: u32 = 13u;         // the row's uniform (f32)
const S_DIGIT: u32 = 14u;     // the digit the select's last round chose
const S_ROUND: u32 = 15u;     // top-p's last round

// A piece's partial record: 256 digit counts and the count above the select's prefix
// (COUNT); 16 digit masses, and from round MASS_COUNTED on 16 digit counts (MASS); `[max, first index, flags, sum, ties]` (STATS);
// `[kept mass, kept, last kept + 1]` (SUMS). Rust side: `PARTIAL_WORDS`.
const PARTIAL_WORDS: u32 = 260u;
// The most tokens top-k may keep for the candidates' path. Rust side: `CANDIDATES`.
const CAP: u32 = 256u;

const DIGITS: u32 = 16u;
const MASS_ROUNDS: u32 = 8u;
// The first round of top-p that counts its digits too, so that a small boundary digit can
// end the rounds.
const MASS_COUNTED: u32 = 2u;
const COUNT_ROUNDS: u32 = 4u;
// Lanes whose digit histograms the workgroup holds at once (WG is a multiple, or smaller).
const BIN_LANES: u32 = min(64u, WG);

var<workgroup> smp_f: array<f32, WG>;
var<workgroup> smp_u: array<u32, WG>;
var<workgroup> smp_v: array<u32, WG>;
// Lanes' digit masses (MASS), the merged counts (MERGE_COUNT), the candidates as gathered
// (CANDIDATES: indices, then logits' bits).
var<workgroup> smp_bins: array<u32, 1024>;
// The candidates in index order: indices, then logits' bits.
var<workgroup> smp_cand: array<u32, 512>;
var<workgroup> smp_hist: array<atomic<u32>, 256>;
var<workgroup> smp_digit: array<u32, DIGITS>;
// Values every invocation reads through workgroupUniformLoad, so that control flow that
// holds barriers depends only on what the uniformity analysis can prove uniform.
var<workgroup> smp_word: u32;
var<workgroup> smp_float: f32;
var<workgroup> smp_token: atomic<u32>;
var<workgroup> smp_slot: atomic<u32>;

fn broadcast_u(lid: u32, v: u32) -> u32 {
    if (lid == 0u) {
        smp_word = v;
    }
    return workgroupUniformLoad(&smp_word);
}

fn broadcast_f(lid: u32, v: f32) -> f32 {
    if (lid == 0u) {
        smp_float = v;
    }
    return workgroupUniformLoad(&smp_float);
}

// The scratch: per row of the dispatch, `row_words` words from `r * row_words`.
fn state_at(r: u32, w: u32) -> u32 {
    return r * params.row_words + w;
}

fn partial_at(r: u32, c: u32, w: u32) -> u32 {
    return r * params.row_words + STATE_WORDS + c * PARTIAL_WORDS + w;
}

fn candidate_at(r: u32, j: u32) -> u32 {
    return r * params.row_words + STATE_WORDS + params.chunks * PARTIAL_WORDS + 2u * j;
}

fn state_f(r: u32, w: u32) -> f32 {
    return bitcast<f32>(scratch_buf[state_at(r, w)]);
}

// An order-preserving key: a < b as floats (not NaN) exactly when key(a) < key(b); -0 and +0
// share one key.
fn order_key(z: f32) -> u32 {
    var b = bitcast<u32>(z);
    if (b == 0x80000000u) {
        b = 0u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Sum over the workgroup in a fixed tree; every lane gets the total.
fn tree_sum(lid: u32, v: f32) -> f32 {
    smp_f[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off /= 2u) {
        if (lid < off) {
            smp_f[lid] += smp_f[lid + off];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&smp_f[0]);
}

fn tree_count(lid: u32, v: u32) -> u32 {
    smp_u[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off /= 2u) {
        if (lid < off) {
            smp_u[lid] += smp_u[lid + off];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&smp_u[0]);
}

// The digit totals of every lane's histogram of masses `bins` (f32 bits), into smp_digit:
// 64 lanes at a time, each group's 16 digits summed in one tree, the groups in order.
fn digit_totals(lid: u32, bins: array<u32, 16>) {
    if (lid < DIGITS) {
        smp_digit[lid] = 0u;
    }
    for (var g = 0u; g < WG / BIN_LANES; g++) {
        if (lid / BIN_LANES == g) {
            for (var d = 0u; d < DIGITS; d++) {
                smp_bins[(lid % BIN_LANES) * DIGITS + d] = bins[d];
            }
        }
        workgroupBarrier();
        for (var off = BIN_LANES / 2u; off > 0u; off /= 2u) {
            for (var i = lid; i < off * DIGITS; i += WG) {
                let a = bitcast<f32>(smp_bins[i]);
                let b = bitcast<f32>(smp_bins[i + off * DIGITS]);
                smp_bins[i] = bitcast<u32>(a + b);
            }
            workgroupBarrier();
        }
        if (lid < DIGITS) {
            smp_digit[lid] = bitcast<u32>(bitcast<f32>(smp_digit[lid]) + bitcast<f32>(smp_bins[lid]));
        }
        workgroupBarrier();
    }
}

// Philox4x32-10 (src/sampling/philox.rs is the CPU twin), for each row's uniform where
// PHILOX.
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let mid = ((a0 * b0) >> 16u) + ((a1 * b0) & 0xffffu) + ((a0 * b1) & 0xffffu);
    return a1 * b1 + ((a1 * b0) >> 16u) + ((a0 * b1) >> 16u) + (mid >> 16u);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let hi0 = mulhi(0xD2511F53u, c.x);
        let lo0 = 0xD2511F53u * c.x;
        let hi1 = mulhi(0xCD9E8D57u, c.z);
        let lo1 = 0xCD9E8D57u * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// What every stage knows of its workgroup's row and piece.
struct Row {
    // Row of the dispatch, and of the per-row buffers.
    r: u32,
    row: u32,
    // Its first logit in x_buf, its first probability in y_buf.
    base: u32,
    out_base: u32,
    // The piece: its index and its logits [start, end) within the row.
    c: u32,
    start: u32,
    end: u32,
    // The row's parameters.
    t: f32,
    inv_t: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
}

fn row_of(wid: vec3<u32>) -> Row {
    var w: Row;
    w.r = wid.y;
    w.row = params.row0 + wid.y;
    w.base = params.x_base + wid.y * params.cols;
    w.out_base = params.y_base + wid.y * params.cols;
    w.c = wid.x;
    w.start = min(wid.x * params.chunk_len, params.cols);
    w.end = min(w.start + params.chunk_len, params.cols);
    let sp = sample_buf[w.row];
    w.t = bitcast<f32>(sp.x);
    w.inv_t = select(1.0, 1.0 / w.t, w.t > 0.0);
    w.top_k = sp.y;
    w.top_p = bitcast<f32>(sp.z);
    w.min_p = bitcast<f32>(sp.w);
    return w;
}

// The row's phase, uniform over the workgroup.
fn phase_of(lid: u32, w: Row) -> u32 {
    return broadcast_u(lid, scratch_buf[state_at(w.r, S_PHASE)]);
}

fn is_kept(z: f32, floor_key: u32, e: f32, min_p: f32) -> bool {
    return !is_neg_inf(z) && order_key(z) >= floor_key && e >= min_p;
}

// STATS: the piece's maximum, its first index, the flags, the sum of exp((z - m_c) / T) and
// the ties at its maximum.
fn stage_stats(lid: u32, w: Row) {
    var m = f32_neg_inf();
    var at = NO_TOKEN;
    var flags = 0u;
    for (var i = w.start + lid; i < w.end; i += WG) {
        let z = load_x(w.base + i);
        if (is_finite(z)) {
            if (z > m) {
                m = z;
                at = i;
            }
        } else {
            flags |= non_finite_flags(z);
        }
    }
    smp_f[lid] = m;
    smp_u[lid] = at;
    smp_v[lid] = flags;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off /= 2u) {
        if (lid < off) {
            let om = smp_f[lid + off];
            let oi = smp_u[lid + off];
            if (om > smp_f[lid] || (om == smp_f[lid] && oi < smp_u[lid])) {
                smp_f[lid] = om;
                smp_u[lid] = oi;
            }
            smp_v[lid] |= smp_v[lid + off];
        }
        workgroupBarrier();
    }
    let m_c = workgroupUniformLoad(&smp_f[0]);
    let at_c = workgroupUniformLoad(&smp_u[0]);
    let flags_c = workgroupUniformLoad(&smp_v[0]);
    var part = 0.0;
    var ties = 0u;
    if (at_c != NO_TOKEN) {
        for (var i = w.start + lid; i < w.end; i += WG) {
            let z = load_x(w.base + i);
            if (is_finite(z)) {
                part += exp_t(z - m_c, w.inv_t);
                ties += u32(z == m_c);
            }
        }
    }
    let s = tree_sum(lid, part);
    let n = tree_count(lid, ties);
    if (lid == 0u) {
        scratch_buf[partial_at(w.r, w.c, 0u)] = bitcast<u32>(m_c);
        scratch_buf[partial_at(w.r, w.c, 1u)] = at_c;
        scratch_buf[partial_at(w.r, w.c, 2u)] = flags_c;
        scratch_buf[partial_at(w.r, w.c, 3u)] = bitcast<u32>(s);
        scratch_buf[partial_at(w.r, w.c, 4u)] = n;
    }
}

// MERGE_STATS: the row's statistics from its pieces in order; the parameters' check; greedy
// rows and rows without a token end here.
fn stage_merge_stats(lid: u32, w: Row) {
    if (lid != 0u) {
        return;
    }
    var m = f32_neg_inf();
    var at = NO_TOKEN;
    var flags = 0u;
    for (var c = 0u; c < params.chunks; c++) {
        let m_c = bitcast<f32>(scratch_buf[partial_at(w.r, c, 0u)]);
        if (m_c > m) {
            m = m_c;
            at = scratch_buf[partial_at(w.r, c, 1u)];
        }
        flags |= scratch_buf[partial_at(w.r, c, 2u)];
    }
    var total = 0.0;
    var ties = 0u;
    for (var c = 0u; c < params.chunks; c++) {
        let m_c = bitcast<f32>(scratch_buf[partial_at(w.r, c, 0u)]);
        if (is_finite(m_c)) {
            total += bitcast<f32>(scratch_buf[partial_at(w.r, c, 3u)]) * exp_t(m_c - m, w.inv_t);
            if (m_c == m) {
                ties += scratch_buf[partial_at(w.r, c, 4u)];
            }
        }
    }
    let u = row_uniform(w.row);
    // Parameters out of their domain (the device-level API cannot check a buffer's
    // contents) flag the row; tested on bits where NaN could hide.
    let t = w.t;
    let valid = (t == 0.0 || (is_finite(t) && t >= 1.17549435e-38))
        && is_finite(w.top_p) && w.top_p > 0.0 && w.top_p <= 1.0
        && is_finite(w.min_p) && w.min_p >= 0.0 && w.min_p <= 1.0
        && is_finite(u) && u >= 0.0 && u < 1.0;
    var status = STATUS_OK;
    if (!valid) {
        status = STATUS_INVALID_PARAMS;
    } else if ((flags & FLAG_NAN) != 0u) {
        status = STATUS_NAN;
    } else if ((flags & FLAG_POS_INF) != 0u) {
        status = STATUS_POS_INF;
    } else if (at == NO_TOKEN) {
        status = STATUS_ALL_MASKED;
    }
    var phase = PHASE_SUMS;
    if (status != STATUS_OK) {
        write_result(w.row, NO_TOKEN, status, f32_nan(), 0u);
        phase = select(PHASE_DONE, PHASE_NAN_PROBS, FILTERED);
    } else if (t == 0.0) {
        // Greedy: the first maximum; its log-probability in the limit T -> 0.
        write_result(w.row, at, STATUS_OK, -log(f32(ties)), ties);
        phase = select(PHASE_DONE, PHASE_GREEDY_PROBS, FILTERED);
    } else if (w.top_k > 0u && w.top_k < params.cols) {
        phase = PHASE_TOP_K;
    } else if (w.top_p < 1.0) {
        phase = PHASE_TOP_P;
    }
    scratch_buf[state_at(w.r, S_PHASE)] = phase;
    scratch_buf[state_at(w.r, S_M)] = bitcast<u32>(m);
    scratch_buf[state_at(w.r, S_ARGMAX)] = at;
    scratch_buf[state_at(w.r, S_TOTAL)] = bitcast<u32>(total);
    scratch_buf[state_at(w.r, S_FLOOR)] = 0u;
    scratch_buf[state_at(w.r, S_PREFIX)] = 0u;
    scratch_buf[state_at(w.r, S_WANT)] = w.top_k;
    scratch_buf[state_at(w.r, S_TIES)] = ties;
    scratch_buf[state_at(w.r, S_U)] = bitcast<u32>(u);
}

// The select's digit of `key` in round `round` of `rounds` (of `bits` each), and whether the
// digits above it match `prefix`; `above` where they are greater.
fn digit_shift(round: u32, bits: u32) -> u32 {
    return 32u - bits * (round + 1u);
}

fn high_mask(round: u32, bits: u32) -> u32 {
    return select(0u, 0xffffffffu << (32u - bits * round), round > 0u);
}

// COUNT: the piece's counts of the next 8-bit digit of the finite keys that match the prefix,
// and how many lie above it.
fn stage_count(lid: u32, w: Row, round: u32) {
    if (phase_of(lid, w) != PHASE_TOP_K) {
        return;
    }
    let prefix = scratch_buf[state_at(w.r, S_PREFIX)];
    let shift = digit_shift(round, 8u);
    let high = high_mask(round, 8u);
    for (var d = lid; d < 256u; d += WG) {
        atomicStore(&smp_hist[d], 0u);
    }
    workgroupBarrier();
    var above = 0u;
    for (var i = w.start + lid; i < w.end; i += WG) {
        let z = load_x(w.base + i);
        if (!is_neg_inf(z)) {
            let key = order_key(z);
            if ((key & high) == prefix) {
                atomicAdd(&smp_hist[(key >> shift) & 255u], 1u);
            } else if ((key & high) > prefix) {
                above += 1u;
            }
        }
    }
    let n_above = tree_count(lid, above);
    for (var d = lid; d < 256u; d += WG) {
        scratch_buf[partial_at(w.r, w.c, d)] = atomicLoad(&smp_hist[d]);
    }
    if (lid == 0u) {
        scratch_buf[partial_at(w.r, w.c, 256u)] = n_above;
    }
}

// Where top-k's rounds end: the lowest key they keep (the threshold after the last round,
// else the digits found so far), how many keys lie at or above it, and the round's digit;
// on to the candidates' path where they are few, else to top-p or the draw.
fn end_top_k(w: Row, floor_key: u32, kept: u32, digit: u32) {
    scratch_buf[state_at(w.r, S_FLOOR)] = floor_key;
    scratch_buf[state_at(w.r, S_KEPT)] = kept;
    scratch_buf[state_at(w.r, S_DIGIT)] = digit;
    scratch_buf[state_at(w.r, S_PREFIX)] = 0u;
    var phase = PHASE_SUMS;
    if (kept <= CAP) {
        phase = PHASE_CANDIDATES;
    } else if (w.top_p < 1.0) {
        phase = PHASE_TOP_P;
    }
    scratch_buf[state_at(w.r, S_PHASE)] = phase;
}

// MERGE_COUNT: the digit of the k-th largest key among the row's counts.
fn stage_merge_count(lid: u32, w: Row, round: u32) {
    if (phase_of(lid, w) != PHASE_TOP_K) {
        return;
    }
    for (var d = lid; d < 256u; d += WG) {
        var n = 0u;
        for (var c = 0u; c < params.chunks; c++) {
            n += scratch_buf[partial_at(w.r, c, d)];
        }
        smp_bins[d] = n;
    }
    workgroupBarrier();
    if (lid != 0u) {
        return;
    }
    let want = scratch_buf[state_at(w.r, S_WANT)];
    var prefix = scratch_buf[state_at(w.r, S_PREFIX)];
    var above = 0u;
    for (var d = 255; d >= 0; d--) {
        let n = smp_bins[u32(d)];
        if (above + n >= want) {
            let left = want - above;
            prefix |= u32(d) << digit_shift(round, 8u);
            // Keys at or above the digits found: after the last round, those above the
            // threshold and its ties.
            let at_or_above = w.top_k - left + n;
            if (round + 1u == COUNT_ROUNDS || at_or_above <= CAP) {
                end_top_k(w, prefix, at_or_above, u32(d));
            } else {
                scratch_buf[state_at(w.r, S_PREFIX)] = prefix;
                scratch_buf[state_at(w.r, S_WANT)] = left;
            }
            return;
        }
        above += n;
    }
    // Fewer finite logits than k: top-k keeps them all.
    end_top_k(w, 0u, w.top_k - want + above, 0u);
}

// GATHER: the piece's keys at or above top-k's floor, to the row's candidates from the
// offset of the pieces before it (their counts from the last COUNT round), in any order.
fn stage_gather(lid: u32, w: Row) {
    if (phase_of(lid, w) != PHASE_CANDIDATES) {
        return;
    }
    let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
    let digit = scratch_buf[state_at(w.r, S_DIGIT)];
    // (Where top-k kept every finite logit, its rounds stopped after the first, whose counts
    // are of every finite key: digit 0 takes them all.)
    var before = 0u;
    for (var c = 0u; c < w.c; c++) {
        for (var d = digit + lid; d < 256u; d += WG) {
            before += scratch_buf[partial_at(w.r, c, d)];
        }
        if (lid == 0u) {
            before += scratch_buf[partial_at(w.r, c, 256u)];
        }
    }
    let offset = tree_count(lid, before);
    if (lid == 0u) {
        atomicStore(&smp_slot, 0u);
    }
    workgroupBarrier();
    for (var i = w.start + lid; i < w.end; i += WG) {
        let z = load_x(w.base + i);
        if (!is_neg_inf(z) && order_key(z) >= floor_key) {
            let j = candidate_at(w.r, offset + atomicAdd(&smp_slot, 1u));
            scratch_buf[j] = i;
            scratch_buf[j + 1u] = bitcast<u32>(z);
        }
    }
}

// The row's `S_KEPT` candidates into smp_cand in index order (indices, then logits' bits);
// returns their number.
fn load_candidates(lid: u32, w: Row) -> u32 {
    let n = broadcast_u(lid, scratch_buf[state_at(w.r, S_KEPT)]);
    for (var j = lid; j < n; j += WG) {
        let at = candidate_at(w.r, j);
        smp_bins[j] = scratch_buf[at];
        smp_bins[CAP + j] = scratch_buf[at + 1u];
    }
    workgroupBarrier();
    // Each candidate's place in index order (indices are distinct).
    for (var j = lid; j < n; j += WG) {
        let i = smp_bins[j];
        var rank = 0u;
        for (var l = 0u; l < n; l++) {
            rank += u32(smp_bins[l] < i);
        }
        smp_cand[rank] = i;
        smp_cand[CAP + rank] = smp_bins[CAP + j];
    }
    workgroupBarrier();
    return n;
}

// The mass exp((z - m) / T) of the first `n` candidates whose keys are at least `key`,
// summed in index order.
fn mass_from(key: u32, n: u32, m: f32, inv_t: f32) -> f32 {
    var mass = 0.0;
    for (var l = 0u; l < n; l++) {
        let z = bitcast<f32>(smp_cand[CAP + l]);
        if (order_key(z) >= key) {
            mass += exp_t(z - m, inv_t);
        }
    }
    return mass;
}

// CANDIDATES: top-k's threshold, top-p, min-p and the draw (or, with FILTERED, the
// threshold and the kept mass) over the few keys at or above top-k's floor, in index order.
fn stage_candidates(lid: u32, w: Row) {
    if (phase_of(lid, w) != PHASE_CANDIDATES) {
        return;
    }
    let n = load_candidates(lid, w);
    let m = state_f(w.r, S_M);
    if (lid == 0u) {
        atomicStore(&smp_token, 0u);
    }
    workgroupBarrier();
    // Top-k's threshold: the largest key with at least k keys at or above it (none where
    // fewer than k are finite).
    for (var j = lid; j < n; j += WG) {
        let key = order_key(bitcast<f32>(smp_cand[CAP + j]));
        var at_or_above = 0u;
        for (var l = 0u; l < n; l++) {
            at_or_above += u32(order_key(bitcast<f32>(smp_cand[CAP + l])) >= key);
        }
        if (at_or_above >= w.top_k) {
            atomicMax(&smp_token, key);
        }
    }
    workgroupBarrier();
    var floor_key = max(scratch_buf[state_at(w.r, S_FLOOR)], atomicLoad(&smp_token));
    workgroupBarrier();
    if (lid == 0u) {
        atomicStore(&smp_token, 0u);
    }
    workgroupBarrier();
    if (broadcast_f(lid, w.top_p) < 1.0) {
        // The kept mass in index order; then the largest key whose mass from the top, each
        // summed in index order, reaches top_p of it.
        let goal = w.top_p * mass_from(floor_key, n, m, w.inv_t);
        for (var j = lid; j < n; j += WG) {
            let key = order_key(bitcast<f32>(smp_cand[CAP + j]));
            if (key < floor_key) {
                continue;
            }
            if (mass_from(key, n, m, w.inv_t) >= goal) {
                atomicMax(&smp_token, key);
            }
        }
        workgroupBarrier();
        // Rounding left the goal beyond every sum: keep them all.
        floor_key = max(floor_key, atomicLoad(&smp_token));
    }
    if (lid != 0u) {
        return;
    }
    var kept_mass = 0.0;
    var kept = 0u;
    var last = 0u;
    for (var l = 0u; l < n; l++) {
        let z = bitcast<f32>(smp_cand[CAP + l]);
        let e = exp_t(z - m, w.inv_t);
        if (is_kept(z, floor_key, e, w.min_p)) {
            kept_mass += e;
            kept += 1u;
            last = l;
        }
    }
    if (FILTERED) {
        scratch_buf[state_at(w.r, S_FLOOR)] = floor_key;
        scratch_buf[state_at(w.r, S_KEPT_MASS)] = bitcast<u32>(kept_mass);
        scratch_buf[state_at(w.r, S_PHASE)] = PHASE_PROBS;
        return;
    }
    let goal = state_f(w.r, S_U) * kept_mass;
    var token = smp_cand[last];
    var cum = 0.0;
    for (var l = 0u; l < n; l++) {
        let z = bitcast<f32>(smp_cand[CAP + l]);
        let e = exp_t(z - m, w.inv_t);
        if (is_kept(z, floor_key, e, w.min_p)) {
            cum += e;
            if (cum > goal) {
                token = smp_cand[l];
                break;
            }
        }
    }
    finish_token(w, token, kept);
}

// The row's result for `token`, with its log-probability under softmax(z / T).
fn finish_token(w: Row, token: u32, kept: u32) {
    let m = state_f(w.r, S_M);
    let logprob = (load_x(w.base + token) - m) * w.inv_t - log(state_f(w.r, S_TOTAL));
    write_result(w.row, token, STATUS_OK, logprob, kept);
    scratch_buf[state_at(w.r, S_PHASE)] = PHASE_DONE;
}

// MASS: the piece's masses exp((z - m) / T) of the next 4-bit digit of the kept keys that
// match the prefix.
fn stage_mass(lid: u32, w: Row, round: u32) {
    if (phase_of(lid, w) != PHASE_TOP_P) {
        return;
    }
    let m = state_f(w.r, S_M);
    let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
    let prefix = scratch_buf[state_at(w.r, S_PREFIX)];
    let shift = digit_shift(round, 4u);
    let high = high_mask(round, 4u);
    // From round MASS_COUNTED on, the same tokens counted by digit too.
    let counted = round >= MASS_COUNTED;
    if (counted) {
        if (lid < DIGITS) {
            atomicStore(&smp_hist[lid], 0u);
        }
        workgroupBarrier();
    }
    var bins: array<u32, 16>;
    for (var i = w.start + lid; i < w.end; i += WG) {
        let z = load_x(w.base + i);
        let key = order_key(z);
        if ((key & high) == prefix && key >= floor_key && !is_neg_inf(z)) {
            let d = (key >> shift) & 15u;
            bins[d] = bitcast<u32>(bitcast<f32>(bins[d]) + exp_t(z - m, w.inv_t));
            if (counted) {
                atomicAdd(&smp_hist[d], 1u);
            }
        }
    }
    // (digit_totals' barriers also settle the counts.)
    digit_totals(lid, bins);
    if (lid < DIGITS) {
        scratch_buf[partial_at(w.r, w.c, lid)] = smp_digit[lid];
        if (counted) {
            scratch_buf[partial_at(w.r, w.c, DIGITS + lid)] = atomicLoad(&smp_hist[lid]);
        }
    }
}

// MERGE_MASS: the digit of the top-p threshold: the largest key v such that the kept tokens
// with keys >= v hold at least top_p of the kept mass (ties at it kept).
fn stage_merge_mass(lid: u32, w: Row, round: u32) {
    if (phase_of(lid, w) != PHASE_TOP_P) {
        return;
    }
    if (lid < DIGITS) {
        var s = 0.0;
        var n = 0u;
        for (var c = 0u; c < params.chunks; c++) {
            s += bitcast<f32>(scratch_buf[partial_at(w.r, c, lid)]);
            n += scratch_buf[partial_at(w.r, c, DIGITS + lid)];
        }
        smp_f[lid] = s;
        smp_bins[lid] = n;
    }
    workgroupBarrier();
    if (lid != 0u) {
        return;
    }
    var want = state_f(w.r, S_WANT);
    if (round == 0u) {
        var mass = 0.0;
        for (var d = 0u; d < DIGITS; d++) {
            mass += smp_f[d];
        }
        want = w.top_p * mass;
    }
    var digit = 0u;
    var left = want;
    var above = 0.0;
    var lowest = 16u;
    var found = false;
    for (var d = 15; d >= 0; d--) {
        let s = smp_f[u32(d)];
        if (s > 0.0) {
            lowest = u32(d);
        }
        if (s > 0.0 && above + s >= want) {
            digit = u32(d);
            left = want - above;
            found = true;
            break;
        }
        above += s;
    }
    // Rounding left the goal beyond the sums: keep down to the smallest digit held.
    if (!found) {
        digit = select(0u, lowest, lowest < 16u);
        left = 0.0;
    }
    let prefix = scratch_buf[state_at(w.r, S_PREFIX)] | (digit << digit_shift(round, 4u));
    scratch_buf[state_at(w.r, S_PREFIX)] = prefix;
    scratch_buf[state_at(w.r, S_WANT)] = bitcast<u32>(left);
    if (found && round >= MASS_COUNTED && round + 1u < MASS_ROUNDS && smp_bins[digit] <= CAP) {
        // Few tokens in the boundary digit: the threshold among them.
        scratch_buf[state_at(w.r, S_KEPT)] = smp_bins[digit];
        scratch_buf[state_at(w.r, S_DIGIT)] = digit;
        scratch_buf[state_at(w.r, S_ROUND)] = round;
        scratch_buf[state_at(w.r, S_PHASE)] = PHASE_TOP_P_GROUP;
    } else if (round + 1u == MASS_ROUNDS) {
        let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
        scratch_buf[state_at(w.r, S_FLOOR)] = max(floor_key, prefix);
        scratch_buf[state_at(w.r, S_PHASE)] = PHASE_SUMS;
    }
}

// GROUP_GATHER: the piece's tokens in top-p's boundary digit, to the row's candidates from
// the offset of the pieces before it (their counts from the last MASS round), in any order.
fn stage_group_gather(lid: u32, w: Row) {
    if (phase_of(lid, w) != PHASE_TOP_P_GROUP) {
        return;
    }
    let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
    let prefix = scratch_buf[state_at(w.r, S_PREFIX)];
    let high = high_mask(scratch_buf[state_at(w.r, S_ROUND)] + 1u, 4u);
    let digit = scratch_buf[state_at(w.r, S_DIGIT)];
    var before = 0u;
    for (var c = lid; c < w.c; c += WG) {
        before += scratch_buf[partial_at(w.r, c, DIGITS + digit)];
    }
    let offset = tree_count(lid, before);
    if (lid == 0u) {
        atomicStore(&smp_slot, 0u);
    }
    workgroupBarrier();
    for (var i = w.start + lid; i < w.end; i += WG) {
        let z = load_x(w.base + i);
        let key = order_key(z);
        if ((key & high) == prefix && key >= floor_key && !is_neg_inf(z)) {
            let j = candidate_at(w.r, offset + atomicAdd(&smp_slot, 1u));
            scratch_buf[j] = i;
            scratch_buf[j + 1u] = bitcast<u32>(z);
        }
    }
}

// GROUP: top-p's threshold among its boundary digit's tokens, in index order: the largest
// key whose mass from the top of the digit reaches the mass the digits above left wanting
// (all of them where rounding leaves none that does).
fn stage_group(lid: u32, w: Row) {
    if (phase_of(lid, w) != PHASE_TOP_P_GROUP) {
        return;
    }
    let n = load_candidates(lid, w);
    let m = state_f(w.r, S_M);
    let want = state_f(w.r, S_WANT);
    if (lid == 0u) {
        atomicStore(&smp_token, 0u);
        atomicStore(&smp_slot, 0xffffffffu);
    }
    workgroupBarrier();
    for (var j = lid; j < n; j += WG) {
        let key = order_key(bitcast<f32>(smp_cand[CAP + j]));
        if (mass_from(key, n, m, w.inv_t) >= want) {
            atomicMax(&smp_token, key);
        }
        atomicMin(&smp_slot, key);
    }
    workgroupBarrier();
    if (lid == 0u) {
        var threshold = atomicLoad(&smp_token);
        if (threshold == 0u) {
            threshold = atomicLoad(&smp_slot);
        }
        let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
        scratch_buf[state_at(w.r, S_FLOOR)] = max(floor_key, threshold);
        scratch_buf[state_at(w.r, S_PHASE)] = PHASE_SUMS;
    }
}

// A lane's contiguous share of its piece, its kept tokens summed in index order.
struct LaneKept {
    start: u32,
    end: u32,
    mass: f32,
    kept: u32,
    last: u32,
}

fn lane_kept(lid: u32, w: Row, m: f32, floor_key: u32) -> LaneKept {
    var k: LaneKept;
    let share = (w.end - w.start + WG - 1u) / WG;
    k.start = min(w.start + lid * share, w.end);
    k.end = min(k.start + share, w.end);
    for (var i = k.start; i < k.end; i++) {
        let z = load_x(w.base + i);
        let e = exp_t(z - m, w.inv_t);
        if (is_kept(z, floor_key, e, w.min_p)) {
            k.mass += e;
            k.kept += 1u;
            k.last = i + 1u;
        }
    }
    return k;
}

// SUMS: the piece's kept mass (lanes in order), its kept count and its last kept token.
fn stage_sums(lid: u32, w: Row) {
    if (phase_of(lid, w) != PHASE_SUMS) {
        return;
    }
    let k = lane_kept(lid, w, state_f(w.r, S_M), scratch_buf[state_at(w.r, S_FLOOR)]);
    smp_f[lid] = k.mass;
    smp_u[lid] = k.kept;
    smp_v[lid] = k.last;
    workgroupBarrier();
    if (lid == 0u) {
        var mass = 0.0;
        var kept = 0u;
        var last = 0u;
        for (var l = 0u; l < WG; l++) {
            mass += smp_f[l];
            kept += smp_u[l];
            last = max(last, smp_v[l]);
        }
        scratch_buf[partial_at(w.r, w.c, 0u)] = bitcast<u32>(mass);
        scratch_buf[partial_at(w.r, w.c, 1u)] = kept;
        scratch_buf[partial_at(w.r, w.c, 2u)] = last;
    }
}

// MERGE_SUMS: the kept mass (pieces in order) and the piece that holds u times it.
fn stage_merge_sums(lid: u32, w: Row) {
    if (lid != 0u || scratch_buf[state_at(w.r, S_PHASE)] != PHASE_SUMS) {
        return;
    }
    var mass = 0.0;
    var kept = 0u;
    var last = 0u;
    for (var c = 0u; c < params.chunks; c++) {
        mass += bitcast<f32>(scratch_buf[partial_at(w.r, c, 0u)]);
        kept += scratch_buf[partial_at(w.r, c, 1u)];
        last = max(last, scratch_buf[partial_at(w.r, c, 2u)]);
    }
    scratch_buf[state_at(w.r, S_KEPT)] = kept;
    scratch_buf[state_at(w.r, S_KEPT_MASS)] = bitcast<u32>(mass);
    if (FILTERED) {
        scratch_buf[state_at(w.r, S_PHASE)] = PHASE_PROBS;
        return;
    }
    let goal = state_f(w.r, S_U) * mass;
    var before = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        let s = bitcast<f32>(scratch_buf[partial_at(w.r, c, 0u)]);
        if (s > 0.0 && before <= goal && goal < before + s) {
            scratch_buf[state_at(w.r, S_CHUNK)] = c;
            scratch_buf[state_at(w.r, S_BEFORE)] = bitcast<u32>(before);
            scratch_buf[state_at(w.r, S_GOAL)] = bitcast<u32>(goal);
            scratch_buf[state_at(w.r, S_PHASE)] = PHASE_WALK;
            return;
        }
        before += s;
    }
    // Rounding put the goal at the very end: the last kept token.
    finish_token(w, last - 1u, kept);
}

// FINISH: the walk to the token in the piece that holds the goal (each lane's share laid end
// to end, the lane whose share holds it walks it); or, with FILTERED, the probabilities.
fn stage_finish(lid: u32, w: Row) {
    let phase = phase_of(lid, w);
    if (phase == PHASE_WALK) {
        finish_walk(lid, w);
    } else if (phase == PHASE_PROBS) {
        let m = state_f(w.r, S_M);
        let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
        let kept_mass = state_f(w.r, S_KEPT_MASS);
        for (var i = w.start + lid; i < w.end; i += WG) {
            let z = load_x(w.base + i);
            let e = exp_t(z - m, w.inv_t);
            store_prob(w.out_base + i, select(0.0, e / kept_mass, is_kept(z, floor_key, e, w.min_p)));
        }
    } else if (phase == PHASE_GREEDY_PROBS) {
        let m = state_f(w.r, S_M);
        let share = 1.0 / f32(scratch_buf[state_at(w.r, S_TIES)]);
        for (var i = w.start + lid; i < w.end; i += WG) {
            store_prob(w.out_base + i, select(0.0, share, load_x(w.base + i) == m));
        }
    } else if (phase == PHASE_NAN_PROBS) {
        for (var i = w.start + lid; i < w.end; i += WG) {
            store_prob(w.out_base + i, f32_nan());
        }
    }
}

fn finish_walk(lid: u32, w: Row) {
    if (w.c != broadcast_u(lid, scratch_buf[state_at(w.r, S_CHUNK)])) {
        return;
    }
    let m = state_f(w.r, S_M);
    let floor_key = scratch_buf[state_at(w.r, S_FLOOR)];
    let k = lane_kept(lid, w, m, floor_key);
    smp_f[lid] = k.mass;
    smp_v[lid] = k.last;
    if (lid == 0u) {
        atomicStore(&smp_token, NO_TOKEN);
    }
    workgroupBarrier();
    if (lid == 0u) {
        var before = state_f(w.r, S_BEFORE);
        var last = 0u;
        for (var l = 0u; l < WG; l++) {
            let s = smp_f[l];
            smp_f[l] = before;
            before += s;
            last = max(last, smp_v[l]);
        }
        smp_v[0] = last;
    }
    workgroupBarrier();
    let goal = state_f(w.r, S_GOAL);
    let lane_from = smp_f[lid];
    if (k.kept > 0u && lane_from <= goal && goal < lane_from + k.mass) {
        var cum = lane_from;
        for (var i = k.start; i < k.end; i++) {
            let z = load_x(w.base + i);
            let e = exp_t(z - m, w.inv_t);
            if (is_kept(z, floor_key, e, w.min_p)) {
                cum += e;
                if (cum > goal) {
                    atomicMin(&smp_token, i);
                    break;
                }
            }
        }
        // Rounding put the goal at this share's end: its last kept token.
        if (cum <= goal) {
            atomicMin(&smp_token, k.last - 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var token = atomicLoad(&smp_token);
        if (token == NO_TOKEN) {
            // Rounding put the goal at the piece's end: its last kept token.
            token = smp_v[0] - 1u;
        }
        finish_token(w, token, scratch_buf[state_at(w.r, S_KEPT)]);
    }
}

// Between stages in one workgroup: the state and partial records one stage wrote, and the
// workgroup memory it read, settled before the next.
fn settle() {
    storageBarrier();
    workgroupBarrier();
}

// STAGE_ALL: a row of one piece is its own row stage, so one dispatch runs them all, in the
// order and with the arithmetic of the separate dispatches.
fn all_stages(lid: u32, w: Row) {
    stage_stats(lid, w);
    settle();
    stage_merge_stats(lid, w);
    settle();
    // The stages the row needs, each phase read once (the stages check it again).
    var phase = phase_of(lid, w);
    for (var round = 0u; round < COUNT_ROUNDS && phase == PHASE_TOP_K; round++) {
        stage_count(lid, w, round);
        settle();
        stage_merge_count(lid, w, round);
        settle();
        phase = phase_of(lid, w);
    }
    if (phase == PHASE_CANDIDATES) {
        stage_gather(lid, w);
        settle();
        stage_candidates(lid, w);
        settle();
        phase = phase_of(lid, w);
    }
    for (var round = 0u; round < MASS_ROUNDS && phase == PHASE_TOP_P; round++) {
        stage_mass(lid, w, round);
        settle();
        stage_merge_mass(lid, w, round);
        settle();
        phase = phase_of(lid, w);
    }
    if (phase == PHASE_TOP_P_GROUP) {
        stage_group_gather(lid, w);
        settle();
        stage_group(lid, w);
        settle();
        phase = phase_of(lid, w);
    }
    if (phase == PHASE_SUMS) {
        stage_sums(lid, w);
        settle();
        stage_merge_sums(lid, w);
        settle();
        phase = phase_of(lid, w);
    }
    if (phase != PHASE_DONE) {
        stage_finish(lid, w);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    if (wid.y >= params.rows) {
        return;
    }
    let w = row_of(wid);
    switch params.stage {
        case STAGE_STATS: {
            stage_stats(lid, w);
        }
        case STAGE_MERGE_STATS: {
            stage_merge_stats(lid, w);
        }
        case STAGE_COUNT: {
            stage_count(lid, w, params.round);
        }
        case STAGE_MERGE_COUNT: {
            stage_merge_count(lid, w, params.round);
        }
        case STAGE_GATHER: {
            stage_gather(lid, w);
        }
        case STAGE_CANDIDATES: {
            stage_candidates(lid, w);
        }
        case STAGE_MASS: {
            stage_mass(lid, w, params.round);
        }
        case STAGE_MERGE_MASS: {
            stage_merge_mass(lid, w, params.round);
        }
        case STAGE_SUMS: {
            stage_sums(lid, w);
        }
        case STAGE_MERGE_SUMS: {
            stage_merge_sums(lid, w);
        }
        case STAGE_FINISH: {
            stage_finish(lid, w);
        }
        case STAGE_ALL: {
            all_stages(lid, w);
        }
        case STAGE_GROUP_GATHER: {
            stage_group_gather(lid, w);
        }
        case STAGE_GROUP: {
            stage_group(lid, w);
        }
        default: {}
    }
}
