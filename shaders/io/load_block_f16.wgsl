// Block of 8 f16 logits, native or packed, from one vec4<u32> of their vector view (`x_vec`),
// widened exactly (half_bits.wgsl).
fn block_of_words(w: vec4<u32>) -> Block {
    return Block(
        vec4<f32>(f16x2_to_f32(w.x), f16x2_to_f32(w.y)),
        vec4<f32>(f16x2_to_f32(w.z), f16x2_to_f32(w.w)),
    );
}
