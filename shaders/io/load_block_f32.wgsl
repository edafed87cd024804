// Loads block b (elements 8b .. 8b + 8) of f32 logits from the block view of the x binding
// (`x_vec_block`, see `vector_view` in src/shader/views.rs).
fn load_block(b: u32) -> Block {
    return x_vec_block(b);
}
