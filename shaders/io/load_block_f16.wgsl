// Loads block b (elements 8b .. 8b + 8) of f16 logits, native or packed, as one vec4<u32>
// from the vector view of the x binding (`x_vec`), widened exactly (half_bits.wgsl).
fn load_block(b: u32) -> Block {
    let w = x_vec(b);
    return Block(
        vec4<f32>(f16x2_to_f32(w.x), f16x2_to_f32(w.y)),
        vec4<f32>(f16x2_to_f32(w.z), f16x2_to_f32(w.w)),
    );
}
