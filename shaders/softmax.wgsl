// Forward kernels of the softmax family: softmax, log_softmax and logsumexp along the last
// axis of row-major logits [rows, cols]. CPU mirror: `src/oracle.rs` (`softmax`,
// `log_softmax`, `logsumexp`), which every result of this file is tested against.
//
// Joined behind (see src/shader.rs): a header of constants (WG, OP, CONTIGUOUS, HAS_LSE), the
// bindings with raw accessors, the dtype's `load_x` and `store_pair`, common.wgsl and
// reduce_workgroup.wgsl.
//
// One workgroup per row, rows looped so that any row count fits the dispatch limit:
//   1. every invocation folds its share of the row into an online (max, sum) state;
//   2. the states merge across the workgroup;
//   3. every invocation writes its share of the output, exp((z - m) / T) / s or
//      (z - m) / T - log(s), and invocation 0 writes logsumexp = m / T + log(s).

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
    // Element index of the chunk's first output in the y binding.
    y_base: u32,
    // Index of the chunk's first logsumexp in the lse binding.
    lse_base: u32,
    // 1 to write zeros instead of NaN for rows that are entirely -inf.
    masked_zeros: u32,
    // 1 / temperature.
    inv_t: f32,
    _pad: u32,
}

fn output_value(z: f32, st: RowStats, inv_t: f32) -> f32 {
    if (st.nan_row) {
        return select(f32_nan(), 0.0, st.empty && params.masked_zeros != 0u);
    }
    if (OP == OP_SOFTMAX) {
        return select(exp((z - st.m) * inv_t) * st.inv_s, 0.0, is_neg_inf(z));
    }
    return select((z - st.m) * inv_t - st.log_s, f32_neg_inf(), is_neg_inf(z));
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let cols = params.cols;
    let inv_t = params.inv_t;
    for (var row = wid.x; row < params.rows; row += nwg.x) {
        let x_row = params.x_base + row * cols;

        var st = online_empty();
        let sh = share_of(cols, lid);
        for (var c = sh.first; c < sh.end; c += sh.step) {
            fold(&st, load_x(x_row + c), inv_t);
        }
        let stats = row_stats(reduce_online(st, lid, inv_t), inv_t);

        if (HAS_LSE && lid == 0u) {
            store_lse(params.lse_base + row, stats.lse);
        }
        if (OP == OP_LOGSUMEXP) {
            continue;
        }

        // Whole output pairs (see `output_pairs` in common.wgsl).
        let y_row = params.y_base + row * cols;
        let out = output_pairs(y_row, cols, lid);
        for (var q = out.first; q < out.end; q += out.step) {
            let c0 = 2u * q - y_row;
            let c1 = c0 + 1u;
            let lo = c0 < cols;
            let hi = c1 < cols;
            var v = vec2<f32>(0.0);
            if (lo) {
                v.x = output_value(load_x(x_row + c0), stats, inv_t);
            }
            if (hi) {
                v.y = output_value(load_x(x_row + c1), stats, inv_t);
            }
            store_pair(q, v, lo, hi);
        }
    }
}
