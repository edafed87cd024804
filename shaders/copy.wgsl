// A plain copy of words: the roofline every benchmark divides by. It moves the same bytes as
// one read and one write of the logits, as fast as this adapter allows: vector words
// (`Word`: vec4<u32>, or vec4<u64> where the adapter has SHADER_INT64, which lavapipe copies
// faster), COPY_PER_THREAD words (128 bytes) per invocation, laid out for the adapter (see
// `CONTIGUOUS`).
//
// The same loop also gives the benchmarks' exp ceiling (KIND, see `CopyKind` in
// src/bench/copy.rs): every element of a word (f32, or f16 / bf16 widened and narrowed as the
// kernels do) replaced by its exponential (one read, one exp, one write per element, the
// least work of a softmax), or only read and its exponentials summed per invocation (the
// least work of a logsumexp). No reduction, no second read: what the adapter's memory and
// arithmetic allow any kernel of the family at best.
//
// Joined behind (see src/shader/mod.rs, `copy_source`): a header of constants (WG, CONTIGUOUS),
// `alias Word`, COPY_PER_THREAD, KIND, the bindings `params`, `src` and `dst`
// (array<Word>), and `word_exp(w) -> Word` and `word_exp_sum(w) -> f32` for that word and
// element type (`word_exp_source`).

const KIND_COPY: u32 = 0u;
const KIND_EXP: u32 = 1u;
const KIND_EXP_SUM: u32 = 2u;

// Rust side: `CopyParams` in src/params.rs. Keep both in the same order.
struct Params {
    // Words in this dispatch.
    words: u32,
    // Workgroups along x (the dispatch is 2-D past 65535 workgroups).
    groups_x: u32,
    // KIND_EXP_SUM: the bits of a value no sum equals (NaN), below which a lane would store
    // its sum, so that the compiler cannot drop the loads.
    sentinel: u32,
    _pad: u32,
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let block = (wid.y * params.groups_x + wid.x) * WG * COPY_PER_THREAD;
    let n = params.words;
    var sum = 0.0;
    for (var k = 0u; k < COPY_PER_THREAD; k++) {
        // Contiguous: one run of COPY_PER_THREAD words per invocation. Strided: neighbouring
        // invocations copy neighbouring words (coalesced).
        let i = select(block + k * WG + lid, block + lid * COPY_PER_THREAD + k, CONTIGUOUS);
        if (i < n) {
            if (KIND == KIND_COPY) {
                dst[i] = src[i];
            } else if (KIND == KIND_EXP) {
                // Through a select never taken (i < 2^28), as the 16-bit kernels' stores
                // (`fenced_store` in src/shader/views.rs): the words' packing stays ahead of
                // Mesa's per-lane store loop, so that the ceiling is as high as it gets.
                dst[i] = select(word_exp(src[i]), Word(), i == 0xffffffffu);
            } else {
                sum += word_exp_sum(src[i]);
            }
        }
    }
    if (KIND == KIND_EXP_SUM && sum == bitcast<f32>(params.sentinel)) {
        dst[block] = src[block];
    }
}
