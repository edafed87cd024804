// Row reductions of the forward kernels through workgroup memory, for adapters without
// SUBGROUP: the workgroup holds WG / LANES rows of LANES invocations each, and each row's
// states merge in a tree of log2(LANES) steps inside its segment. The subgroup version with
// the same functions is reduce_row_subgroup.wgsl.
//
// Needs from the header: WG, LANES (a power of two dividing WG) and `struct Ids`.

var<workgroup> row_m: array<f32, WG>;
var<workgroup> row_s: array<f32, WG>;
var<workgroup> row_flags: array<u32, WG>;

// Rows each workgroup takes at a time (`lane_of(..).rows`, as a constant expression).
fn rows_per_workgroup() -> u32 {
    return WG / LANES;
}

fn lane_of(ids: Ids) -> Lane {
    return Lane(ids.lid / LANES, WG / LANES, ids.lid % LANES, LANES);
}

// Merges the states of the lanes of each row; every lane gets its row's merged state.
fn reduce_row(st: Online, at: Lane, ids: Ids, inv_t: f32) -> Online {
    if (LANES == 1u) {
        // A row per lane (multi-row on CPU adapters): nothing to merge.
        return st;
    }
    let lid = ids.lid;
    row_m[lid] = st.m;
    row_s[lid] = st.s;
    row_flags[lid] = st.flags;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (at.lane < stride) {
            let a = Online(row_m[lid], row_s[lid], row_flags[lid]);
            let b = Online(row_m[lid + stride], row_s[lid + stride], row_flags[lid + stride]);
            let c = merge(a, b, inv_t);
            row_m[lid] = c.m;
            row_s[lid] = c.s;
            row_flags[lid] = c.flags;
        }
        workgroupBarrier();
    }
    let head = lid - at.lane;
    let out = Online(row_m[head], row_s[head], row_flags[head]);
    // Nobody may overwrite the head (next row) before everyone has read it.
    workgroupBarrier();
    return out;
}
