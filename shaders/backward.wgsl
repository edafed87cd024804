// Backward of softmax and log_softmax along the last axis. CPU mirror:
// `softmax_backward` and `log_softmax_backward` in src/oracle.rs.
//   softmax:     dx = y * (dy - sum_j dy_j y_j)
//   log_softmax: dx = dy - exp(y) * sum_j dy_j
// Joined behind (see src/shader.rs): a header (WG, CONTIGUOUS, LOG), the bindings (y as `x`
// with `load_x`, dx as `y` with `store_pair`, dy with `load_dy`), common.wgsl and
// reduce_workgroup.wgsl.

// Rust side: `BackwardParams` in src/params.rs. Keep both in the same order.
struct Params {
    rows: u32,
    cols: u32,
    // Element index of the chunk's first y, dx and dy in their bindings.
    x_base: u32,
    y_base: u32,
    dy_base: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

fn grad_value(y: f32, dy: f32, s: f32) -> f32 {
    if (LOG) {
        return dy - exp(y) * s;
    }
    return y * (dy - s);
}

@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (ROW_LOOP) {
        // More rows than one dimension of a dispatch holds: workgroups take turns.
        for (var row = wid.x; row < params.rows; row += nwg.x) {
            backward_row(row, lid);
        }
    } else if (wid.x < params.rows) {
        // One row per workgroup, no loop (see `main` in softmax.wgsl).
        backward_row(wid.x, lid);
    }
}

// One row: the sum of dy * y (or of dy, LOG), then the outputs.
fn backward_row(row: u32, lid: u32) {
    let cols = params.cols;
    let y_in = params.x_base + row * cols;
    let dy_row = params.dy_base + row * cols;
    let sh = share_of(cols, lid);
    var acc = stream_empty();
    for (var c = sh.first; c < sh.end; c += sh.step) {
        let dy = load_dy(dy_row + c);
        stream_push(&acc, select(dy * load_x(y_in + c), dy, LOG));
    }
    let s = reduce_sum(stream_state(acc).s, lid);

    let out_row = params.y_base + row * cols;
    let out = output_pairs(out_row, cols, lid);
    for (var q = out.first; q < out.end; q += out.step) {
        let c0 = 2u * q - out_row;
        let c1 = c0 + 1u;
        let lo = c0 < cols;
        let hi = c1 < cols;
        var v = vec2<f32>(0.0);
        if (lo) {
            v.x = grad_value(load_x(y_in + c0), load_dy(dy_row + c0), s);
        }
        if (hi) {
            v.y = grad_value(load_x(y_in + c1), load_dy(dy_row + c1), s);
        }
        store_pair(q, v, lo, hi);
    }
}
