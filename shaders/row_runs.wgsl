// Short rows a lane each (ROW_PER_LANE) in the training kernels, cross_entropy.wgsl and
// backward.wgsl; needs their `params.rows`, `params.cols`, WG and BLOCKS. With BLOCKS (CPU
// adapters, the dispatch's output starting on a block) a lane takes a run of `run_rows()`
// rows, which fill whole blocks, a row at a time through the blocks that cover it (with
// PACKED, in code generated for the row length, `packed_run` in
// src/shader/training_tiles.rs: short runs unrolled whole, odd lengths through windows);
// without, a row by pairs. The host gives a dispatch with BLOCKS whole runs only. The column
// helpers at the end serve cross_entropy.wgsl's other layouts too.

// Rows of a lane's run: the fewest that fill whole blocks, 8 / gcd(cols, 8).
fn run_rows() -> u32 {
    return BLOCK >> min(countTrailingZeros(params.cols), countTrailingZeros(BLOCK));
}

// Rows each lane takes: a run with BLOCKS, one row otherwise.
fn rows_per_lane() -> u32 {
    return select(1u, run_rows(), BLOCKS);
}

// Lanes the dispatch's rows need; workgroups take WG of them at a time, in turns past one
// dimension of a dispatch.
fn row_lanes() -> u32 {
    return (params.rows + rows_per_lane() - 1u) / rows_per_lane();
}

fn row_lane_groups() -> u32 {
    return (row_lanes() + WG - 1u) / WG;
}

// The columns of the four elements from `e` of a binding in the row that starts at element
// `start` (wrapping below zero before the row, `cols` or more past it).
fn cols_at(e: u32, start: u32) -> vec4<u32> {
    return vec4<u32>(e - start) + vec4<u32>(0u, 1u, 2u, 3u);
}

// Which of the four elements from `e` of a binding lie in the row [start, start + cols).
fn in_row4(e: u32, start: u32) -> vec4<bool> {
    return cols_at(e, start) < vec4<u32>(params.cols);
}
