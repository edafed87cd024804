// Exact conversions between f32 and the bits of f16 and bf16, joined in front of every
// 16-bit load and store. WGSL leaves the rounding mode, overflow and subnormal handling of
// `pack2x16float`, `unpack2x16float` and `f16(x)` to the implementation; these do not:
// round to nearest even, overflow to infinity, subnormals kept, NaN kept NaN.
//
// Where a probe at start-up found the builtins exact on the adapter (src/half_probe.rs),
// HALF_BUILTINS is true (set in front of this file by src/shader/views.rs) and the f16
// conversions are the builtins, one instruction each instead of a dozen.

// f32 -> f16 bits (low 16 bits of the result).
fn f16_bits(v: f32) -> u32 {
    if (HALF_BUILTINS) {
        return pack2x16float(vec2<f32>(v, 0.0));
    }
    return f16x2_bits_exact(vec2<f32>(v, 0.0)) & 0xffffu;
}

// Two f32 -> f16 bits in one word (low half first), by bit manipulation without branches:
// every case is computed and the right one selected, since CPU adapters run both sides of
// a branch their SIMD lanes take differently.
fn f16x2_bits_exact(v: vec2<f32>) -> u32 {
    let b = bitcast<vec2<u32>>(v);
    let sign = (b >> vec2<u32>(16u)) & vec2<u32>(0x8000u);
    let mag = b & vec2<u32>(0x7fffffffu);
    // Normal f16 (>= 2^-14): rebias the exponent, round the 13 dropped bits to nearest even.
    let t = mag - vec2<u32>(0x38000000u);
    let normal = (t + vec2<u32>(0xfffu) + ((t >> vec2<u32>(13u)) & vec2<u32>(1u))) >> vec2<u32>(13u);
    // Subnormal f16: a multiple of 2^-24; scaling by 2^24 is exact, round() ties to even.
    let sub = vec2<u32>(round(bitcast<vec2<f32>>(mag) * 16777216.0));
    // NaN stays NaN (quiet); 65520 and above round to infinity.
    let special = select(vec2<u32>(0x7c00u), vec2<u32>(0x7e00u), mag > vec2<u32>(0x7f800000u));
    var h = select(normal, sub, mag < vec2<u32>(0x38800000u));
    h = select(h, special, mag >= vec2<u32>(0x477ff000u)) | sign;
    return h.x | (h.y << 16u);
}

// f16 bits (low 16 bits of h) -> f32, exact.
fn f16_to_f32(h: u32) -> f32 {
    if (HALF_BUILTINS) {
        return unpack2x16float(h).x;
    }
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        let sub = f32(m) * 5.9604644775390625e-8;
        return bitcast<f32>(sign | bitcast<u32>(sub));
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// Two f16 in one word (low half first) -> f32.
fn f16x2_to_f32(w: u32) -> vec2<f32> {
    if (HALF_BUILTINS) {
        return unpack2x16float(w);
    }
    return vec2<f32>(f16_to_f32(w & 0xffffu), f16_to_f32(w >> 16u));
}

// Two f32 -> f16 bits in one word (low half first). CPU adapters (CONTIGUOUS) pack by bits
// even where the builtin is exact: lavapipe's `pack2x16float` took about as long as the rest
// of the output pass (256 x 32000 f16 softmax: 17 to 23 ms with it, 10 to 16 ms with a plain
// bit copy in its place).
//
// UNIT_OUTPUT (set in front of this file with HALF_BUILTINS): the kernel's outputs are
// non-negative and below 65520, or NaN (softmax probabilities), and narrow through
// `f16x2_bits_unit`: lavapipe, 256 x 32000 f16 softmax, 0.22 -> 0.27 of copy
// (docs/lavapipe-history.md, "f16 softmax narrows without sign or overflow").
fn f16x2_bits(v: vec2<f32>) -> u32 {
    if (HALF_BUILTINS && !CONTIGUOUS) {
        return pack2x16float(v);
    }
    if (UNIT_OUTPUT) {
        return f16x2_bits_unit(v);
    }
    return f16x2_bits_exact(v);
}

// `f16x2_bits_exact` for values that are non-negative and below 65520 (no sign, no
// overflow), or NaN: exact there, wrong for negative values. (Its subnormal path by
// adding 0.5, so that the addition rounds, measured no faster than `round`.)
fn f16x2_bits_unit(v: vec2<f32>) -> u32 {
    let b = bitcast<vec2<u32>>(v);
    let t = b - vec2<u32>(0x38000000u);
    let normal = (t + vec2<u32>(0xfffu) + ((t >> vec2<u32>(13u)) & vec2<u32>(1u))) >> vec2<u32>(13u);
    let sub = vec2<u32>(round(v * 16777216.0));
    var h = select(normal, sub, b < vec2<u32>(0x38800000u));
    // NaN of either sign (a negative NaN's bits are above every positive value's).
    h = select(h, vec2<u32>(0x7e00u), b > vec2<u32>(0x7f800000u));
    return h.x | (h.y << 16u);
}

// f32 -> bf16 bits (low 16 bits of the result): the upper half, rounded to nearest even.
fn bf16_bits(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return (b >> 16u) | 0x0040u;
    }
    return (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
}

// bf16 bits (low 16 bits of h) -> f32, exact.
fn bf16_to_f32(h: u32) -> f32 {
    return bitcast<f32>(h << 16u);
}
