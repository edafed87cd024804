// Stores block b (elements 8b .. 8b + 8) of f32 outputs into the block view of the y binding
// (`y_vec_store_block`, see `vector_view` in src/shader/views.rs).
fn store_block(b: u32, v: Block) {
    y_vec_store_block(b, v);
}
