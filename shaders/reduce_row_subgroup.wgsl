// Row reductions of the forward kernels with subgroup operations (SUBGROUP), the same
// functions as reduce_row_tree.wgsl. Either each subgroup takes a row of its own
// (SUBGROUP_ROWS: no workgroup memory, no barrier), or the whole workgroup shares one row:
// subgroups reduce, then every invocation merges the subgroups' results.
//
// Needs from the header: WG, SUBGROUP_ROWS and `struct Ids` with the subgroup builtins.

var<workgroup> row_m: array<f32, WG>;
var<workgroup> row_s: array<f32, WG>;
var<workgroup> row_flags: array<u32, WG>;

fn lane_of(ids: Ids) -> Lane {
    if (SUBGROUP_ROWS) {
        return Lane(ids.sg_id, ids.n_sg, ids.sg_lane, ids.sg_size);
    }
    return Lane(0u, 1u, ids.lid, WG);
}

// Merge of the states of one subgroup: one exp per invocation.
fn reduce_subgroup(st: Online, inv_t: f32) -> Online {
    let m = subgroupMax(st.m);
    let s = subgroupAdd(rescale(st.s, st.m, m, inv_t));
    return Online(m, s, subgroupOr(st.flags));
}

// Merges the states of the lanes of each row; every lane gets its row's merged state.
fn reduce_row(st: Online, at: Lane, ids: Ids, inv_t: f32) -> Online {
    let part = reduce_subgroup(st, inv_t);
    if (SUBGROUP_ROWS) {
        return part;
    }
    if (ids.sg_lane == 0u) {
        row_m[ids.sg_id] = part.m;
        row_s[ids.sg_id] = part.s;
        row_flags[ids.sg_id] = part.flags;
    }
    workgroupBarrier();
    var m = row_m[0];
    var flags = 0u;
    for (var i = 0u; i < ids.n_sg; i++) {
        m = max(m, row_m[i]);
        flags |= row_flags[i];
    }
    var s = 0.0;
    for (var i = 0u; i < ids.n_sg; i++) {
        s += rescale(row_s[i], row_m[i], m, inv_t);
    }
    // Nobody may overwrite the slots (next row) before everyone has read them.
    workgroupBarrier();
    return Online(m, s, flags);
}
