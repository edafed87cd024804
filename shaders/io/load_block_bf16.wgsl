// Loads block b (elements 8b .. 8b + 8) of bf16 logits as one vec4<u32> from the vector view
// of the x binding (`x_vec`): a bf16 is the upper half of an f32.
fn load_block(b: u32) -> Block {
    let w = x_vec(b);
    let lo = bitcast<vec4<f32>>(w << vec4<u32>(16u));
    let hi = bitcast<vec4<f32>>(w & vec4<u32>(0xffff0000u));
    return Block(vec4<f32>(lo.x, hi.x, lo.y, hi.y), vec4<f32>(lo.z, hi.z, lo.w, hi.w));
}
