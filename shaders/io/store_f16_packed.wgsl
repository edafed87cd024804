// Stores f16 outputs packed two per u32 (see load_f16_packed.wgsl).
fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {
    store_word(q, f16x2_bits(v), lo, hi);
}
