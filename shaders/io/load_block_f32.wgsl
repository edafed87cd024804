// Loads block b (elements 8b .. 8b + 8) of f32 logits as two vec4 loads from the vector view
// of the x binding (`x_vec`, see src/shader.rs).
fn load_block(b: u32) -> Block {
    return Block(x_vec(2u * b), x_vec(2u * b + 1u));
}
