// Shared by the packed 16-bit stores (store_f16_packed.wgsl, store_bf16.wgsl).

// Stores a pair of 16-bit values into output word q; a word that the row shares with its
// neighbour (only one half valid) is merged atomically so that the other half survives.
fn store_word(q: u32, bits: u32, lo: bool, hi: bool) {
    if (lo && hi) {
        y_raw_store(q, bits);
    } else if (lo) {
        y_raw_merge(q, bits, 0xffff0000u);
    } else if (hi) {
        y_raw_merge(q, bits, 0x0000ffffu);
    }
}
