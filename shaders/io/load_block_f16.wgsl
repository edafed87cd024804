// Loads block b (elements 8b .. 8b + 8) of f16 logits, native or packed, as one vec4<u32>
// from the vector view of the x binding (`x_vec`), widened exactly (half_bits.wgsl).
fn load_block(b: u32) -> Block {
    let w = x_vec(b);
    let lo = w & vec4<u32>(0xffffu);
    let hi = w >> vec4<u32>(16u);
    return Block(
        vec4<f32>(f16_to_f32(lo.x), f16_to_f32(hi.x), f16_to_f32(lo.y), f16_to_f32(hi.y)),
        vec4<f32>(f16_to_f32(lo.z), f16_to_f32(hi.z), f16_to_f32(lo.w), f16_to_f32(hi.w)),
    );
}
