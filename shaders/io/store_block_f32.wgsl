// Stores block b (elements 8b .. 8b + 8) of f32 outputs as two vec4 stores into the vector
// view of the y binding (`y_vec_store`, see src/shader.rs).
fn store_block(b: u32, v: Block) {
    y_vec_store(2u * b, v.lo);
    y_vec_store(2u * b + 1u, v.hi);
}
