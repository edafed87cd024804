// Workgroup-wide merge of `Online` states through workgroup memory: a tree of log2(WG)
// steps. Every invocation gets the merged state. `WG` is a power of two (see src/shader/mod.rs).

var<workgroup> wg_m: array<f32, WG>;
var<workgroup> wg_s: array<f32, WG>;
var<workgroup> wg_flags: array<u32, WG>;

fn reduce_online(st: Online, lid: u32, inv_t: f32) -> Online {
    wg_m[lid] = st.m;
    wg_s[lid] = st.s;
    wg_flags[lid] = st.flags;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            let a = Online(wg_m[lid], wg_s[lid], wg_flags[lid]);
            let b = Online(wg_m[lid + stride], wg_s[lid + stride], wg_flags[lid + stride]);
            let c = merge(a, b, inv_t);
            wg_m[lid] = c.m;
            wg_s[lid] = c.s;
            wg_flags[lid] = c.flags;
        }
        workgroupBarrier();
    }
    let out = Online(wg_m[0], wg_s[0], wg_flags[0]);
    // Nobody may overwrite slot 0 (next row) before everyone has read it.
    workgroupBarrier();
    return out;
}

// Workgroup-wide sum; every invocation gets the total.
fn reduce_sum(v: f32, lid: u32) -> f32 {
    wg_s[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            wg_s[lid] += wg_s[lid + stride];
        }
        workgroupBarrier();
    }
    let out = wg_s[0];
    workgroupBarrier();
    return out;
}

// Workgroup-wide minimum of a u32; every invocation gets it.
fn reduce_min_u32(v: u32, lid: u32) -> u32 {
    wg_flags[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            wg_flags[lid] = min(wg_flags[lid], wg_flags[lid + stride]);
        }
        workgroupBarrier();
    }
    let out = wg_flags[0];
    workgroupBarrier();
    return out;
}
