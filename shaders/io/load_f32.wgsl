// Loads f32 logits: one element per slot of the x binding (`x_raw`, see src/shader/views.rs).
fn load_x(i: u32) -> f32 {
    return x_raw(i);
}
