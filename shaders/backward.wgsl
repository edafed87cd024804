// Backward of softmax and log_softmax along the last axis. CPU mirror:
// `softmax_backward` and `log_softmax_backward` in src/oracle.rs.
//   softmax:     dx = y * (dy - sum_j dy_j y_j)
//   log_softmax: dx = dy - exp(y) * sum_j dy_j
// Joined behind (see src/shader/mod.rs): a header (WG, CONTIGUOUS, LOG, BLOCKS, COLUMNS,
// ROW_PER_LANE, PACKED), the bindings (y as `x` with `load_x`, dx as `y` with `store_pair`,
// dy with `load_dy`; with BLOCKS their vector views with `load_block`, `load_dy_block` and
// `store_block`), common.wgsl, reduce_workgroup.wgsl and row_runs.wgsl; followed by the
// generated `packed_run` (src/shader/training_tiles.rs).
//
// Three layouts: short rows (ROW_PER_LANE) take a lane each, with no reduction (with BLOCKS,
// a lane takes a run of rows that fill whole blocks, `backward_run`, or with PACKED the
// generated `packed_run`); otherwise a
// workgroup takes a row (or, split-row, a piece of one), and every lane takes columns one at
// a time (strided on GPUs, where neighbours read neighbours), or, with BLOCKS (y, dy and dx
// at the same offset modulo 8), blocks of 8 aligned in dx, loaded and stored as vectors as
// in softmax.wgsl (on CPU adapters each lane a contiguous run, on GPUs every WG-th block),
// and lane 0 the columns of the row's unaligned head and tail, by pairs: lavapipe moves
// every component of every lane on its own, so that one element per load cost three times
// as much as the forward kernels (256 x 32000 f32 softmax backward: 62 ms against 16 for
// softmax).

// Rust side: `BackwardParams` in src/params.rs. Keep both in the same order.
struct Params {
    rows: u32,
    cols: u32,
    // Element index of the chunk's first y, dx and dy in their bindings.
    x_base: u32,
    y_base: u32,
    dy_base: u32,
    // Split-row: pieces per row (1 otherwise).
    chunks: u32,
    _pad1: u32,
    _pad2: u32,
}

fn grad_value(y: f32, dy: f32, s: f32) -> f32 {
    if (LOG) {
        return dy - exp(y) * s;
    }
    return y * (dy - s);
}

fn grad4(y: vec4<f32>, dy: vec4<f32>, s: f32) -> vec4<f32> {
    if (LOG) {
        return dy - exp(y) * s;
    }
    return y * (dy - s);
}

// The outputs of a block, `y` and `dy` its inputs, `s` the row's sum.
fn grad_block(y: Block, dy: Block, s: f32) -> Block {
    return Block(grad4(y.lo, dy.lo, s), grad4(y.hi, dy.hi, s));
}

// A block's terms of the row's sum (dy * y, or dy with LOG), its halves added.
fn block_terms(y: Block, dy: Block) -> vec4<f32> {
    return select(dy.lo * y.lo, dy.lo, LOG) + select(dy.hi * y.hi, dy.hi, LOG);
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
                    backward_run(k * run_rows());
                } else {
                    backward_lane(k);
                }
            }
        }
        return;
    }
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

// Writes output pair q (elements 2q and 2q + 1 of dx's binding) of the row at `out_row`
// from its y and dy and the row's sum `s`; a column outside the row is not stored.
fn store_grad_pair(q: u32, y_in: u32, dy_row: u32, out_row: u32, s: f32) {
    let cols = params.cols;
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

// One short row on one lane (ROW_PER_LANE): its sum, then its outputs by pairs; a word
// shared with a neighbouring row (odd `cols`, 16-bit outputs) is merged.
fn backward_lane(row: u32) {
    let cols = params.cols;
    let y_in = params.x_base + row * cols;
    let dy_row = params.dy_base + row * cols;
    let out_row = params.y_base + row * cols;
    var acc = stream_empty();
    for (var c = 0u; c < cols; c++) {
        let dy = load_dy(dy_row + c);
        stream_push(&acc, select(dy * load_x(y_in + c), dy, LOG));
    }
    let s = stream_state(acc).s;
    for (var q = out_row / 2u; q < (out_row + cols + 1u) / 2u; q++) {
        store_grad_pair(q, y_in, dy_row, out_row, s);
    }
}

// A lane's run of `run_rows()` short rows from `row0` with BLOCKS (the host gives such a
// dispatch whole runs only, its output starting on a block, and the rows left over to a
// dispatch by pairs): a row at a time through the blocks that cover it, loaded as vectors
// with the neighbours' columns masked; the blocks the row completes are stored, and the one
// it shares with the next row is kept (`carry`) until that row fills in the rest.
fn backward_run(row0: u32) {
    let cols = params.cols;
    let last = row0 + run_rows();
    // Wrapping differences: the sums below wrap back into range.
    let y_shift = params.x_base / BLOCK - params.y_base / BLOCK;
    let dy_shift = params.dy_base / BLOCK - params.y_base / BLOCK;
    var carry = Block(vec4<f32>(0.0), vec4<f32>(0.0));
    var end = params.y_base + row0 * cols;
    for (var row = row0; row < last; row++) {
        let start = end;
        end = start + cols;
        let b_end = (end + BLOCK - 1u) / BLOCK;
        var acc = stream_empty();
        for (var b = start / BLOCK; b < b_end; b++) {
            let y = load_block(b + y_shift);
            let dy = load_dy_block(b + dy_shift);
            let zero = vec4<f32>(0.0);
            let lo = select(zero, select(dy.lo * y.lo, dy.lo, LOG), in_row4(BLOCK * b, start));
            let hi = select(zero, select(dy.hi * y.hi, dy.hi, LOG), in_row4(BLOCK * b + 4u, start));
            let t = lo + hi;
            stream_push(&acc, (t.x + t.y) + (t.z + t.w));
        }
        let s = stream_state(acc).s;
        for (var b = start / BLOCK; b < b_end; b++) {
            let y = load_block(b + y_shift);
            let dy = load_dy_block(b + dy_shift);
            var out = grad_block(y, dy, s);
            if (b == start / BLOCK) {
                out = Block(select(carry.lo, out.lo, in_row4(BLOCK * b, start)),
                            select(carry.hi, out.hi, in_row4(BLOCK * b + 4u, start)));
            }
            if (BLOCK * b + BLOCK <= end) {
                store_block(b, out);
            } else {
                carry = out;
            }
        }
    }
}

// dy i .. i + 8 of the dy binding, by scalar loads (`load_run` for dy).
fn load_dy_run(i: u32) -> Block {
    return Block(
        vec4<f32>(load_dy(i), load_dy(i + 1u), load_dy(i + 2u), load_dy(i + 3u)),
        vec4<f32>(load_dy(i + 4u), load_dy(i + 5u), load_dy(i + 6u), load_dy(i + 7u)),
    );
}

// One row: the sum of dy * y (or of dy, LOG), then the outputs.
fn backward_row(row: u32, lid: u32) {
    let s = reduce_sum(row_sum_part(row, 0u, 1u, lid), lid);
    write_part(row, 0u, 1u, lid, s);
}

// What lane `lid` adds to the sum of `row` (dy * y, or dy with LOG) from piece `c` of
// `chunks` of the row: columns one at a time, or with BLOCKS blocks of 8 aligned in dx, the
// row's unaligned head and tail going to piece 0's lane 0 by pairs.
fn row_sum_part(row: u32, c: u32, chunks: u32, lid: u32) -> f32 {
    let cols = params.cols;
    let y_in = params.x_base + row * cols;
    let dy_row = params.dy_base + row * cols;
    var acc = stream_empty();
    if (!BLOCKS || COLUMNS) {
        // The row's columns in their own order (batch-invariant mode, or no blocks): CPU
        // adapters' contiguous shares eight columns to a term, as the blocks below.
        let sh = lane_part(cols, c, chunks, lid);
        var k = sh.first;
        if (CONTIGUOUS) {
            for (; k + BLOCK <= sh.end; k += BLOCK) {
                let t = block_terms(load_run(y_in + k), load_dy_run(dy_row + k));
                stream_push(&acc, (t.x + t.y) + (t.z + t.w));
            }
        }
        for (; k < sh.end; k += sh.step) {
            let dy = load_dy(dy_row + k);
            stream_push(&acc, select(dy * load_x(y_in + k), dy, LOG));
        }
        return stream_state(acc).s;
    }
    let out_row = params.y_base + row * cols;
    let edges = block_row(out_row, cols);
    // Wrapping differences: the sums below wrap back into range.
    let y_shift = y_in / BLOCK - out_row / BLOCK;
    let dy_shift = dy_row / BLOCK - out_row / BLOCK;
    let sh = piece_blocks(edges, c, chunks, lid);
    // Contiguous shares two blocks at a time (as `write_part`).
    var b = sh.first;
    if (CONTIGUOUS) {
        for (; b + 1u < sh.end; b += 2u) {
            let t = block_terms(load_block(b + y_shift), load_dy_block(b + dy_shift))
                + block_terms(load_block(b + 1u + y_shift), load_dy_block(b + 1u + dy_shift));
            stream_push(&acc, (t.x + t.y) + (t.z + t.w));
        }
    }
    for (; b < sh.end; b += sh.step) {
        let t = block_terms(load_block(b + y_shift), load_dy_block(b + dy_shift));
        stream_push(&acc, (t.x + t.y) + (t.z + t.w));
    }
    if (c == 0u && lid == 0u) {
        for (var q = first_edge_pair(edges); q < edges.end; q = next_edge_pair(edges, q)) {
            // Column 2q - out_row wraps below zero for a row starting at an odd index.
            let c0 = 2u * q - out_row;
            if (c0 < cols) {
                let dy = load_dy(dy_row + c0);
                stream_push(&acc, select(dy * load_x(y_in + c0), dy, LOG));
            }
            if (c0 + 1u < cols) {
                let dy = load_dy(dy_row + c0 + 1u);
                stream_push(&acc, select(dy * load_x(y_in + c0 + 1u), dy, LOG));
            }
        }
    }
    return stream_state(acc).s;
}

// Writes lane `lid`'s outputs of piece `c` of `chunks` of `row`, `s` the row's sum: by
// pairs, or with BLOCKS blocks of 8 (y, dy and dx at the same offset modulo 8, so block b
// of dx is block b + shift of each) and piece 0's lane 0 the head and tail by pairs.
fn write_part(row: u32, c: u32, chunks: u32, lid: u32, s: f32) {
    let cols = params.cols;
    let y_in = params.x_base + row * cols;
    let dy_row = params.dy_base + row * cols;
    let out_row = params.y_base + row * cols;
    if (!BLOCKS) {
        let q0 = out_row / 2u;
        let sh = lane_part((out_row + cols + 1u) / 2u - q0, c, chunks, lid);
        for (var q = q0 + sh.first; q < q0 + sh.end; q += sh.step) {
            store_grad_pair(q, y_in, dy_row, out_row, s);
        }
        return;
    }
    let edges = block_row(out_row, cols);
    let y_shift = y_in / BLOCK - out_row / BLOCK;
    let dy_shift = dy_row / BLOCK - out_row / BLOCK;
    let sh = piece_blocks(edges, c, chunks, lid);
    // Contiguous shares two blocks at a time, all four loaded before either is stored
    // (as softmax.wgsl's `write_blocks`).
    var b = sh.first;
    if (CONTIGUOUS) {
        for (; b + 1u < sh.end; b += 2u) {
            let y0 = load_block(b + y_shift);
            let dy0 = load_dy_block(b + dy_shift);
            let y1 = load_block(b + 1u + y_shift);
            let dy1 = load_dy_block(b + 1u + dy_shift);
            store_block(b, grad_block(y0, dy0, s));
            store_block(b + 1u, grad_block(y1, dy1, s));
        }
    }
    for (; b < sh.end; b += sh.step) {
        store_block(b, grad_block(load_block(b + y_shift), load_dy_block(b + dy_shift), s));
    }
    if (c == 0u && lid == 0u) {
        for (var q = first_edge_pair(edges); q < edges.end; q = next_edge_pair(edges, q)) {
            store_grad_pair(q, y_in, dy_row, out_row, s);
        }
    }
}

// Split-row (the entry points are in shaders/split_row.wgsl): the sum of each piece of
// each row into `partials`, then the row's sum from its pieces' and the piece's outputs.

// The sum of piece `c` of `row`.
fn partial_of_piece(row: u32, c: u32, ids: Ids) {
    let lid = ids.lid;
    let s = reduce_sum(row_sum_part(row, c, params.chunks, lid), lid);
    if (lid == 0u) {
        store_partial_sum(row * params.chunks + c, s);
    }
}

// Merges the sums of `row`'s pieces and writes its piece `c`.
fn finish_piece(row: u32, c: u32, ids: Ids) {
    let lid = ids.lid;
    var acc = stream_empty();
    for (var i = lid; i < params.chunks; i += WG) {
        stream_push(&acc, load_partial_sum(row * params.chunks + i));
    }
    let s = reduce_sum(stream_state(acc).s, lid);
    write_part(row, c, params.chunks, lid, s);
}
