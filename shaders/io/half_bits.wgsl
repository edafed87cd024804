// Exact conversions between f32 and the bits of f16 and bf16, joined in front of every
// 16-bit load and store. WGSL leaves the rounding mode, overflow and subnormal handling of
// `pack2x16float`, `unpack2x16float` and `f16(x)` to the implementation; these do not:
// round to nearest even, overflow to infinity, subnormals kept, NaN kept NaN.
//
// Where a probe at start-up found the builtins exact on the adapter (src/half_probe.rs),
// HALF_BUILTINS is true (set in front of this file by src/shader.rs) and the f16
// conversions are the builtins, one instruction each instead of a dozen.

// f32 -> f16 bits (low 16 bits of the result).
fn f16_bits(v: f32) -> u32 {
    if (HALF_BUILTINS) {
        return pack2x16float(vec2<f32>(v, 0.0));
    }
    let b = bitcast<u32>(v);
    let sign = (b >> 16u) & 0x8000u;
    let mag = b & 0x7fffffffu;
    if (mag > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    // 65520 and above round to infinity.
    if (mag >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    // Normal f16 (>= 2^-14): rebias the exponent, round the 13 dropped bits to nearest even.
    if (mag >= 0x38800000u) {
        let t = mag - 0x38000000u;
        return sign | ((t + 0xfffu + ((t >> 13u) & 1u)) >> 13u);
    }
    // Subnormal f16: a multiple of 2^-24; scaling by 2^24 is exact, round() ties to even.
    return sign | u32(round(bitcast<f32>(mag) * 16777216.0));
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

// Two f32 -> f16 bits in one word (low half first).
fn f16x2_bits(v: vec2<f32>) -> u32 {
    if (HALF_BUILTINS) {
        return pack2x16float(v);
    }
    return f16_bits(v.x) | (f16_bits(v.y) << 16u);
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
