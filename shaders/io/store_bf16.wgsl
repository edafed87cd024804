// Stores bf16 outputs packed two per u32, rounded to nearest even.
fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {
    store_word(q, bf16_bits(v.x) | (bf16_bits(v.y) << 16u), lo, hi);
}
