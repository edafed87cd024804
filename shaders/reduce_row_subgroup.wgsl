// Row reductions of the forward kernels with subgroup operations (SUBGROUP), the same
// functions as reduce_row_tree.wgsl. Either each row takes LANES invocations of one
// subgroup (SUBGROUP_ROWS: no workgroup memory, no barrier; LANES divides the subgroup
// size, src/plan.rs), or the whole workgroup shares one row: subgroups reduce, then every
// invocation merges the subgroups' results.
//
// Needs from the header: WG, LANES, SUBGROUP_ROWS and `struct Ids` with the subgroup
// builtins.

var<workgroup> row_m: array<f32, WG>;
var<workgroup> row_s: array<f32, WG>;
var<workgroup> row_flags: array<u32, WG>;
var<workgroup> row_total_m: f32;
var<workgroup> row_total_s: f32;
var<workgroup> row_total_flags: u32;

// Rows each workgroup takes at a time (`lane_of(..).rows`, from constants: the planner makes
// the workgroup a whole number of subgroups where rows share one).
fn rows_per_workgroup() -> u32 {
    return select(1u, WG / LANES, SUBGROUP_ROWS);
}

fn lane_of(ids: Ids) -> Lane {
    if (SUBGROUP_ROWS) {
        let per_subgroup = ids.sg_size / LANES;
        return Lane(ids.sg_id * per_subgroup + ids.sg_lane / LANES, rows_per_workgroup(),
                    ids.sg_lane % LANES, LANES);
    }
    return Lane(0u, 1u, ids.lid, WG);
}

// Merge of a row's states within its LANES invocations of a subgroup (SUBGROUP_ROWS).
fn reduce_in_subgroup(st: Online, sg_size: u32, inv_t: f32) -> Online {
    if (LANES < sg_size) {
        return reduce_cluster(st, inv_t);
    }
    return reduce_subgroup(st, inv_t);
}

// Merge of the states of one subgroup: one exp per invocation.
fn reduce_subgroup(st: Online, inv_t: f32) -> Online {
    let m = subgroupMax(st.m);
    let s = subgroupAdd(rescale(st.s, st.m, m, inv_t));
    return Online(m, s, subgroupOr(st.flags));
}

// Merge within each aligned cluster of LANES invocations of a subgroup: a butterfly of
// log2(LANES) exchanges. `merge` is symmetric, so every lane of a cluster ends with the
// same state.
fn reduce_cluster(st: Online, inv_t: f32) -> Online {
    var acc = st;
    for (var off = LANES / 2u; off > 0u; off /= 2u) {
        let other = Online(subgroupShuffleXor(acc.m, off), subgroupShuffleXor(acc.s, off),
                           subgroupShuffleXor(acc.flags, off));
        acc = merge(acc, other, inv_t);
    }
    return acc;
}

// Merges the states of the lanes of each row; every lane gets its row's merged state.
// Subgroups reduce; the first subgroup merges their results (one pass over them, not one
// per invocation: lavapipe's workgroups of 512 lanes spent 10 ms instead of 1 on 256 rows
// when every invocation read all 64 slots); everyone reads the total.
//
// (The subgroup size's test is in a function of its own: WGSL's uniformity analysis takes
// `ids` as one value that depends on the lane, and a `return` behind a test of it would make
// the barriers below non-uniform for Tint.)
fn reduce_row(st: Online, at: Lane, ids: Ids, inv_t: f32) -> Online {
    if (SUBGROUP_ROWS) {
        return reduce_in_subgroup(st, ids.sg_size, inv_t);
    }
    let part = reduce_subgroup(st, inv_t);
    if (ids.sg_lane == 0u) {
        row_m[ids.sg_id] = part.m;
        row_s[ids.sg_id] = part.s;
        row_flags[ids.sg_id] = part.flags;
    }
    workgroupBarrier();
    if (ids.sg_id == 0u) {
        var acc = online_empty();
        for (var i = ids.sg_lane; i < ids.n_sg; i += ids.sg_size) {
            acc = merge(acc, Online(row_m[i], row_s[i], row_flags[i]), inv_t);
        }
        let total = reduce_subgroup(acc, inv_t);
        if (ids.sg_lane == 0u) {
            row_total_m = total.m;
            row_total_s = total.s;
            row_total_flags = total.flags;
        }
    }
    workgroupBarrier();
    // The next row writes the slots only after its first barrier, and the total only after
    // its second, both of which every invocation reaches after reading these.
    return Online(row_total_m, row_total_s, row_total_flags);
}
