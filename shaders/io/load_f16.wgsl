// Native f16 logits (`array<f16>`, needs SHADER_F16), one per slot. Widening to f32 is exact.
fn elem_slot(i: u32) -> u32 {
    return i;
}
fn elem_f32(raw: f16, i: u32) -> f32 {
    return f32(raw);
}
