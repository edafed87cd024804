// Loads native f16 logits (`array<f16>`, needs SHADER_F16). Widening to f32 is exact.
fn load_x(i: u32) -> f32 {
    return f32(x_raw(i));
}
