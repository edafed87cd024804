// A plain copy of words: the roofline every benchmark divides by. It moves the same bytes as
// one read and one write of the logits, as fast as this adapter allows: vector words
// (`Word`: vec4<u32>, or vec4<u64> where the adapter has SHADER_INT64, which lavapipe copies
// faster), COPY_PER_THREAD words (128 bytes) per invocation, laid out for the adapter (see
// `CONTIGUOUS`).
//
// Joined behind (see src/shader.rs, `copy_source`): a header of constants (WG, CONTIGUOUS),
// `alias Word`, COPY_PER_THREAD and the bindings `params`, `src` and `dst` (array<Word>).

// Rust side: `CopyParams` in src/params.rs. Keep both in the same order.
struct Params {
    // Words in this dispatch.
    words: u32,
    // Workgroups along x (the dispatch is 2-D past 65535 workgroups).
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let block = (wid.y * params.groups_x + wid.x) * WG * COPY_PER_THREAD;
    let n = params.words;
    for (var k = 0u; k < COPY_PER_THREAD; k++) {
        // Contiguous: one run of COPY_PER_THREAD words per invocation. Strided: neighbouring
        // invocations copy neighbouring words (coalesced).
        let i = select(block + k * WG + lid, block + lid * COPY_PER_THREAD + k, CONTIGUOUS);
        if (i < n) {
            dst[i] = src[i];
        }
    }
}
