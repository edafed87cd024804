// Stores block b (elements 8b .. 8b + 8) of f16 outputs, native or packed, as one vec4<u32>
// into the vector view of the y binding, rounded to nearest even (half_bits.wgsl).
fn store_block(b: u32, v: Block) {
    y_vec_store(b, vec4<u32>(
        f16_bits(v.lo.x) | (f16_bits(v.lo.y) << 16u),
        f16_bits(v.lo.z) | (f16_bits(v.lo.w) << 16u),
        f16_bits(v.hi.x) | (f16_bits(v.hi.y) << 16u),
        f16_bits(v.hi.z) | (f16_bits(v.hi.w) << 16u),
    ));
}
