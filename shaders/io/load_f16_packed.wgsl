// Loads f16 logits packed two per u32 (element i is half i % 2 of word i / 2, low half
// first), for adapters without SHADER_F16.
fn load_x(i: u32) -> f32 {
    return f16_to_f32(x_raw(i / 2u) >> (16u * (i & 1u)));
}
