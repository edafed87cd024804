// f32 logits: one element per slot of their binding (`x_raw`, see src/shader/views.rs,
// which builds each tensor's `load_*` from these two).
fn elem_slot(i: u32) -> u32 {
    return i;
}
fn elem_f32(raw: f32, i: u32) -> f32 {
    return raw;
}
