// Block of 8 bf16 logits from one vec4<u32> of their vector view (`x_vec`): a bf16 is the
// upper half of an f32.
fn block_of_words(w: vec4<u32>) -> Block {
    let lo = bitcast<vec4<f32>>(w << vec4<u32>(16u));
    let hi = bitcast<vec4<f32>>(w & vec4<u32>(0xffff0000u));
    return Block(vec4<f32>(lo.x, hi.x, lo.y, hi.y), vec4<f32>(lo.z, hi.z, lo.w, hi.w));
}
