// f16 logits packed two per u32 (element i is half i % 2 of word i / 2, low half first), for
// adapters without SHADER_F16.
fn elem_slot(i: u32) -> u32 {
    return i / 2u;
}
fn elem_f32(raw: u32, i: u32) -> f32 {
    return f16_to_f32(raw >> (16u * (i & 1u)));
}
