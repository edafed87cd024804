// Split-row entry points, shared by every kernel family: each row's pieces go one workgroup
// each, in two dispatches of `chunks` x rows workgroups (pieces along x, rows along y, rows
// in turns past one dimension's limit as in `main`). Each family defines
// `partial_of_piece(row, c, ids)`, which stores piece c's partial state of `row`, and
// `finish_piece(row, c, ids)`, which merges the row's states and writes piece c.
//
// Needs from the header: WG, ROW_LOOP, `struct Ids` and `params.rows`. The workgroup's
// place comes as parameters of its own, not in `Ids`: WGSL's uniformity analysis takes a
// struct parameter as one value, and `Ids` holds the lane's index, so a branch on a member of
// it would not be uniform, and the barriers behind it would be refused (by Tint).

@compute @workgroup_size(WG)
fn partials(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    ids: Ids,
) {
    if (ROW_LOOP) {
        for (var row = wid.y; row < params.rows; row += nwg.y) {
            partial_of_piece(row, wid.x, ids);
        }
    } else if (wid.y < params.rows) {
        partial_of_piece(wid.y, wid.x, ids);
    }
}

@compute @workgroup_size(WG)
fn finish(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    ids: Ids,
) {
    if (ROW_LOOP) {
        for (var row = wid.y; row < params.rows; row += nwg.y) {
            finish_piece(row, wid.x, ids);
        }
    } else if (wid.y < params.rows) {
        finish_piece(wid.y, wid.x, ids);
    }
}
