// Stores f32 outputs: one element per slot of the y binding (`y_raw_store`, see
// src/shader/views.rs).
fn store_pair(q: u32, v: vec2<f32>, lo: bool, hi: bool) {
    if (lo) {
        y_raw_store(2u * q, v.x);
    }
    if (hi) {
        y_raw_store(2u * q + 1u, v.y);
    }
}
