// Stores native f16 outputs (`array<f16>`, needs SHADER_F16). The value is first rounded to
// the f16 grid by `f16_bits` (shaders/io/half_bits.wgsl, round to nearest even), so the
// final `f16(x)` converts an exactly representable value and its rounding mode, which WGSL
// leaves to the implementation, cannot matter.
fn f16_exact(v: f32) -> f16 {
    return f16(f16_to_f32(f16_bits(v)));
}

fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {
    if (lo) {
        y_raw_store(2u * q, f16_exact(v.x));
    }
    if (hi) {
        y_raw_store(2u * q + 1u, f16_exact(v.y));
    }
}
