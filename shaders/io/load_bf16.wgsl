// Loads bf16 logits packed two per u32 (element i is half i % 2 of word i / 2).
fn load_x(i: u32) -> f32 {
    return bf16_to_f32((x_raw(i / 2u) >> (16u * (i & 1u))) & 0xffffu);
}
