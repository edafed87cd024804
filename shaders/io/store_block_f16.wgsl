// Stores block b (elements 8b .. 8b + 8) of f16 outputs, native or packed, as one vec4<u32>
// into the vector view of the y binding, rounded to nearest even (half_bits.wgsl).
fn store_block(b: u32, v: Block) {
    y_vec_store(b, vec4<u32>(
        f16x2_bits(v.lo.xy),
        f16x2_bits(v.lo.zw),
        f16x2_bits(v.hi.xy),
        f16x2_bits(v.hi.zw),
    ));
}
