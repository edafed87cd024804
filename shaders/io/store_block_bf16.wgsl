// Stores block b (elements 8b .. 8b + 8) of bf16 outputs as one vec4<u32> into the vector
// view of the y binding, rounded to nearest even (half_bits.wgsl).
fn store_block(b: u32, v: Block) {
    y_vec_store(b, vec4<u32>(
        bf16_bits(v.lo.x) | (bf16_bits(v.lo.y) << 16u),
        bf16_bits(v.lo.z) | (bf16_bits(v.lo.w) << 16u),
        bf16_bits(v.hi.x) | (bf16_bits(v.hi.y) << 16u),
        bf16_bits(v.hi.z) | (bf16_bits(v.hi.w) << 16u),
    ));
}
