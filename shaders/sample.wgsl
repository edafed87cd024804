// Sampling: from one row of logits to one token, a workgroup per row (src/sampling/,
// whose module documentation states the semantics; `oracle::sample` is the reference); with
// FILTERED, the row's filtered, renormalised probabilities instead (`oracle::sample_probs`).
//
// Passes over the row, none of which grows in number with its length: the maximum, its
// first index and the NaN / +inf flags; the sum of exp((z - m) / T); for top-k, eight rounds
// of a radix select of the k-th largest logit (4-bit digits of an order-preserving key); for
// top-p, the kept mass, then eight rounds of the same select weighted by probability; and
// the draw, an inverse CDF over the kept tokens in index order. Every sum is taken in a fixed
// order that depends on the row's length alone (lanes in a fixed tree or in lane order), so
// a row gives the same token in any batch.
//
// Needs from the header: WG (a power of two), `load_x(i)` for the input dtype, and
// common.wgsl (is_finite, non_finite_flags, exp_t, the NaN helpers).

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
    // Workgroups along x; rows past them go along y.
    groups_x: u32,
    // Element of the dispatch's first probability in y_buf (FILTERED).
    y_base: u32,
}

const NO_TOKEN: u32 = 0xffffffffu;
const STATUS_OK: u32 = 0u;
const STATUS_NAN: u32 = 1u;
const STATUS_POS_INF: u32 = 2u;
const STATUS_ALL_MASKED: u32 = 3u;
const STATUS_INVALID_PARAMS: u32 = 4u;
const DIGITS: u32 = 16u;
const ROUNDS: u32 = 8u;
// Lanes whose digit histograms the workgroup holds at once (WG is a multiple, or smaller).
const BIN_LANES: u32 = min(64u, WG);

var<workgroup> smp_f: array<f32, WG>;
var<workgroup> smp_u: array<u32, WG>;
var<workgroup> smp_v: array<u32, WG>;
var<workgroup> smp_bins: array<u32, 1024>; // DIGITS * BIN_LANES
var<workgroup> smp_digit: array<u32, DIGITS>;
// Values every invocation reads through workgroupUniformLoad, so that control flow that
// holds barriers depends only on what the uniformity analysis can prove uniform.
var<workgroup> smp_word: u32;
var<workgroup> smp_float: f32;
var<workgroup> smp_token: atomic<u32>;

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

// An order-preserving key: a < b as floats (not NaN) exactly when key(a) < key(b); -0 and +0
// share one key.
fn order_key(z: f32) -> u32 {
    var b = bitcast<u32>(z);
    if (b == 0x80000000u) {
        b = 0u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Sum over the workgroup in a fixed tree; the total goes to lane 0 (others: undefined).
fn tree_sum(lid: u32, v: f32) -> f32 {
    smp_f[lid] = v;
    workgroupBarrier();
    for (var off = WG / 2u; off > 0u; off /= 2u) {
        if (lid < off) {
            smp_f[lid] += smp_f[lid + off];
        }
        workgroupBarrier();
    }
    let total = smp_f[0];
    workgroupBarrier();
    return total;
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
    let total = smp_u[0];
    workgroupBarrier();
    return total;
}

// The digit totals of every lane's histogram `bins` (counts, or f32 masses as bits with
// `mass`), into smp_digit: 64 lanes at a time, each group's 16 digits summed in one tree,
// the groups in order. (Mesa's CPU drivers end a shader's loops after a total number of
// iterations: the trees keep the count low, see src/launch/sample.rs.)
fn digit_totals(lid: u32, bins: array<u32, 16>, mass: bool) {
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
                let a = smp_bins[i];
                let b = smp_bins[i + off * DIGITS];
                smp_bins[i] = select(a + b, bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b)), mass);
            }
            workgroupBarrier();
        }
        if (lid < DIGITS) {
            let a = smp_digit[lid];
            let b = smp_bins[lid];
            smp_digit[lid] = select(a + b, bitcast<u32>(bitcast<f32>(a) + bitcast<f32>(b)), mass);
        }
        workgroupBarrier();
    }
}

// Philox4x32-10 (src/sampling/philox.rs is the CPU twin), for each row's uniform where
// PHILOX; `row_uniform`, `write_result` and `store_prob` come from src/shader/mod.rs.
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

// The k-th largest key of the row (counting from 1; ties counted), by eight rounds of
// 4-bit digits from the top.
fn select_kth(lid: u32, base: u32, n: u32, k: u32) -> u32 {
    var prefix = 0u;
    var want = k;
    for (var round = 0u; round < ROUNDS; round++) {
        let shift = 28u - 4u * round;
        let high = select(0u, 0xffffffffu << (shift + 4u), round > 0u);
        var bins: array<u32, 16>;
        for (var i = lid; i < n; i += WG) {
            let key = order_key(load_x(base + i));
            if ((key & high) == prefix) {
                bins[(key >> shift) & 15u] += 1u;
            }
        }
        digit_totals(lid, bins, false);
        var digit = 0u;
        var left = want;
        if (lid == 0u) {
            var above = 0u;
            for (var d = 15; d >= 0; d--) {
                let c = smp_digit[u32(d)];
                if (above + c >= want) {
                    digit = u32(d);
                    left = want - above;
                    break;
                }
                above += c;
            }
        }
        digit = broadcast_u(lid, digit);
        want = broadcast_u(lid, left);
        prefix |= digit << shift;
    }
    return prefix;
}

// The largest key v such that the kept tokens with keys >= v hold at least `goal` of the
// mass: the top-p threshold (ties at it kept), by the same rounds weighted by exp((z - m)/T).
fn select_mass(lid: u32, base: u32, n: u32, m: f32, inv_t: f32, floor_key: u32, goal: f32) -> u32 {
    var prefix = 0u;
    var want = goal;
    for (var round = 0u; round < ROUNDS; round++) {
        let shift = 28u - 4u * round;
        let high = select(0u, 0xffffffffu << (shift + 4u), round > 0u);
        var bins: array<u32, 16>;
        for (var i = lid; i < n; i += WG) {
            let z = load_x(base + i);
            let key = order_key(z);
            if ((key & high) == prefix && key >= floor_key && !is_neg_inf(z)) {
                let d = (key >> shift) & 15u;
                bins[d] = bitcast<u32>(bitcast<f32>(bins[d]) + exp_t(z - m, inv_t));
            }
        }
        digit_totals(lid, bins, true);
        var digit = 0u;
        var left = want;
        if (lid == 0u) {
            var above = 0.0;
            var lowest = 16u;
            var found = false;
            for (var d = 15; d >= 0; d--) {
                let c = bitcast<f32>(smp_digit[u32(d)]);
                if (c > 0.0) {
                    lowest = u32(d);
                }
                if (c > 0.0 && above + c >= want) {
                    digit = u32(d);
                    left = want - above;
                    found = true;
                    break;
                }
                above += c;
            }
            // Rounding left the goal beyond the sums: keep down to the smallest digit held.
            if (!found) {
                digit = select(0u, lowest, lowest < 16u);
                left = 0.0;
            }
        }
        digit = broadcast_u(lid, digit);
        want = broadcast_f(lid, left);
        prefix |= digit << shift;
    }
    return prefix;
}

fn is_kept(z: f32, floor_key: u32, e: f32, min_p: f32) -> bool {
    return !is_neg_inf(z) && order_key(z) >= floor_key && e >= min_p;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let r = wid.x + wid.y * params.groups_x;
    if (r >= params.rows) {
        return;
    }
    let row = params.row0 + r;
    let n = params.cols;
    let base = params.x_base + r * n;
    let sp = sample_buf[row];
    let t = broadcast_f(lid, bitcast<f32>(sp.x));
    let top_k = broadcast_u(lid, sp.y);
    let top_p = broadcast_f(lid, bitcast<f32>(sp.z));
    let min_p = broadcast_f(lid, bitcast<f32>(sp.w));
    let u = broadcast_f(lid, row_uniform(row));
    // Parameters out of their domain (the device-level API cannot check a buffer's
    // contents) flag the row; tested on bits where NaN could hide.
    let valid = (t == 0.0 || (is_finite(t) && t >= 1.17549435e-38))
        && is_finite(top_p) && top_p > 0.0 && top_p <= 1.0
        && is_finite(min_p) && min_p >= 0.0 && min_p <= 1.0
        && is_finite(u) && u >= 0.0 && u < 1.0;
    let out_base = params.y_base + r * n;
    if (!valid) {
        if (lid == 0u) {
            write_result(row, NO_TOKEN, STATUS_INVALID_PARAMS, f32_nan(), 0u);
        }
        for (var i = lid; i < n; i += WG) {
            store_prob(out_base + i, f32_nan());
        }
        return;
    }

    // Pass 1: the largest finite logit, its first index, the flags.
    var m = f32_neg_inf();
    var at = NO_TOKEN;
    var flags = 0u;
    for (var i = lid; i < n; i += WG) {
        let z = load_x(base + i);
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
    m = workgroupUniformLoad(&smp_f[0]);
    let argmax = workgroupUniformLoad(&smp_u[0]);
    flags = workgroupUniformLoad(&smp_v[0]);
    var status = STATUS_OK;
    if ((flags & FLAG_NAN) != 0u) {
        status = STATUS_NAN;
    } else if ((flags & FLAG_POS_INF) != 0u) {
        status = STATUS_POS_INF;
    } else if (argmax == NO_TOKEN) {
        status = STATUS_ALL_MASKED;
    }
    if (status != STATUS_OK) {
        if (lid == 0u) {
            write_result(row, NO_TOKEN, status, f32_nan(), 0u);
        }
        for (var i = lid; i < n; i += WG) {
            store_prob(out_base + i, f32_nan());
        }
        return;
    }

    if (t == 0.0) {
        // Greedy: the first maximum; its log-probability in the limit T -> 0.
        var ties = 0u;
        for (var i = lid; i < n; i += WG) {
            ties += u32(load_x(base + i) == m);
        }
        let kept = tree_count(lid, ties);
        if (lid == 0u) {
            write_result(row, argmax, STATUS_OK, -log(f32(kept)), kept);
        }
        if (FILTERED) {
            let kept_u = broadcast_u(lid, kept);
            for (var i = lid; i < n; i += WG) {
                store_prob(out_base + i, select(0.0, 1.0 / f32(kept_u), load_x(base + i) == m));
            }
        }
        return;
    }
    let inv_t = 1.0 / t;

    // Pass 2: the whole row's sum, for the log-probability.
    var part = 0.0;
    for (var i = lid; i < n; i += WG) {
        part += exp_t(load_x(base + i) - m, inv_t);
    }
    let total = broadcast_f(lid, tree_sum(lid, part));

    // top-k, then top-p over what top-k kept: the lowest key kept.
    var floor_key = 0u;
    if (top_k > 0u && top_k < n) {
        floor_key = select_kth(lid, base, n, top_k);
    }
    if (top_p < 1.0) {
        var held = 0.0;
        for (var i = lid; i < n; i += WG) {
            let z = load_x(base + i);
            if (!is_neg_inf(z) && order_key(z) >= floor_key) {
                held += exp_t(z - m, inv_t);
            }
        }
        let mass = broadcast_f(lid, tree_sum(lid, held));
        floor_key = max(floor_key, select_mass(lid, base, n, m, inv_t, floor_key, top_p * mass));
    }

    if (FILTERED) {
        // The kept probabilities, renormalised; zeros elsewhere.
        var kept_part = 0.0;
        for (var i = lid; i < n; i += WG) {
            let z = load_x(base + i);
            let e = exp_t(z - m, inv_t);
            if (is_kept(z, floor_key, e, min_p)) {
                kept_part += e;
            }
        }
        let kept_mass = broadcast_f(lid, tree_sum(lid, kept_part));
        for (var i = lid; i < n; i += WG) {
            let z = load_x(base + i);
            let e = exp_t(z - m, inv_t);
            store_prob(out_base + i, select(0.0, e / kept_mass, is_kept(z, floor_key, e, min_p)));
        }
        return;
    }

    // The draw: each lane sums the kept tokens of its contiguous share in index order; lane
    // 0 lays the shares end to end; the lane whose share holds u times the kept mass walks it.
    let share = (n + WG - 1u) / WG;
    let start = min(lid * share, n);
    let end = min(start + share, n);
    var mine = 0.0;
    var count = 0u;
    var last = 0u;
    for (var i = start; i < end; i++) {
        let z = load_x(base + i);
        let e = exp_t(z - m, inv_t);
        if (is_kept(z, floor_key, e, min_p)) {
            mine += e;
            count += 1u;
            last = i;
        }
    }
    smp_f[lid] = mine;
    smp_u[lid] = count;
    smp_v[lid] = select(0u, last + 1u, count > 0u);
    if (lid == 0u) {
        atomicStore(&smp_token, NO_TOKEN);
    }
    workgroupBarrier();
    if (lid == 0u) {
        var before = 0.0;
        var kept = 0u;
        var final_token = 0u;
        for (var l = 0u; l < WG; l++) {
            let s = smp_f[l];
            smp_f[l] = before;
            before += s;
            kept += smp_u[l];
            final_token = max(final_token, smp_v[l]);
        }
        smp_float = before;
        smp_word = kept;
        smp_v[0] = final_token;
    }
    let kept_mass = workgroupUniformLoad(&smp_float);
    let goal = u * kept_mass;
    let lane_from = smp_f[lid];
    if (count > 0u && lane_from <= goal && goal < lane_from + mine) {
        var cum = lane_from;
        for (var i = start; i < end; i++) {
            let z = load_x(base + i);
            let e = exp_t(z - m, inv_t);
            if (is_kept(z, floor_key, e, min_p)) {
                cum += e;
                if (cum > goal) {
                    atomicMin(&smp_token, i);
                    break;
                }
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var token = atomicLoad(&smp_token);
        if (token == NO_TOKEN) {
            // Rounding put the goal at the very end: the last kept token.
            token = smp_v[0] - 1u;
        }
        let logprob = (load_x(base + token) - m) * inv_t - log(total);
        write_result(row, token, STATUS_OK, logprob, smp_word);
    }
}
