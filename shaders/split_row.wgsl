// Split-row entry points, shared by every kernel family: each row's pieces go one workgroup
// each, in two dispatches of `chunks` x rows workgroups (pieces along x, rows along y, rows
// in turns past one dimension's limit as in `main`). Each family defines
// `partial_of_piece(row, c, ids)`, which stores piece c's partial state of `row`, and
// `finish_piece(row, c, ids)`, which merges the row's states and writes piece c.
//
// Needs from the header: WG, ROW_LOOP, `struct Ids` and `params.rows`.

@compute @workgroup_size(WG)
fn partials(ids: Ids) {
    if (ROW_LOOP) {
        for (var row = ids.wid.y; row < params.rows; row += ids.nwg.y) {
            partial_of_piece(row, ids.wid.x, ids);
        }
    } else if (ids.wid.y < params.rows) {
        partial_of_piece(ids.wid.y, ids.wid.x, ids);
    }
}

@compute @workgroup_size(WG)
fn finish(ids: Ids) {
    if (ROW_LOOP) {
        for (var row = ids.wid.y; row < params.rows; row += ids.nwg.y) {
            finish_piece(row, ids.wid.x, ids);
        }
    } else if (ids.wid.y < params.rows) {
        finish_piece(ids.wid.y, ids.wid.x, ids);
    }
}
