//! Whether an adapter's f16 conversion builtins are exact, checked once per engine.
//!
//! WGSL leaves the rounding of `pack2x16float` and the handling of subnormals by
//! `unpack2x16float` to the implementation. Where both are exact (round to nearest even,
//! overflow to infinity, subnormals kept, NaN kept NaN) they are one instruction each, and
//! the kernels use them (`HALF_BUILTINS` in shaders/io/half_bits.wgsl); elsewhere the
//! kernels convert by bit manipulation, which is exact everywhere but costs a dozen integer
//! operations per element. The probe runs both builtins on every f16 value, on the f32
//! values around every rounding boundary, and on the special values, and compares them
//! with the `half` crate on the CPU.

use half::f16;

use crate::host::map_read;
use crate::scope::scoped;

/// The probe kernel: widens every pair of `halves`, narrows every pair of `floats`, with
/// `widen` and `narrow` (joined in front: the builtins, or the kernels' own bit conversions).
const PROBE: &str = "
@group(0) @binding(0) var<storage, read> halves: array<u32>;
@group(0) @binding(1) var<storage, read_write> widened: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> floats: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> narrowed: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x + 65535u * 64u * id.y;
    if (i < arrayLength(&halves)) {
        widened[i] = widen(halves[i]);
    }
    if (i < arrayLength(&narrowed)) {
        narrowed[i] = narrow(floats[i]);
    }
}
";

/// The builtins under test.
const BUILTINS: &str = "
fn widen(w: u32) -> vec2<f32> { return unpack2x16float(w); }
fn narrow(v: vec2<f32>) -> u32 { return pack2x16float(v); }
";

/// The kernels' bit conversions as CPU adapters run them (shaders/io/half_bits.wgsl
/// without builtins, CONTIGUOUS as on CPU adapters); with `unit_output` the softmax
/// outputs' narrowing, `f16x2_bits_unit` (UNIT_OUTPUT).
fn bit_conversions(unit_output: bool) -> String {
    format!(
        "const HALF_BUILTINS: bool = false;\nconst UNIT_OUTPUT: bool = {unit_output};\n\
         const CONTIGUOUS: bool = true;\n{}\n\
         fn widen(w: u32) -> vec2<f32> {{ return f16x2_to_f32(w); }}\n\
         fn narrow(v: vec2<f32>) -> u32 {{ return f16x2_bits(v); }}\n",
        include_str!("../shaders/io/half_bits.wgsl")
    )
}

/// Every f16 bit pattern, two per word, low half first.
fn all_halves() -> Vec<u32> {
    (0..=u16::MAX)
        .step_by(2)
        .map(|h| u32::from(h) | (u32::from(h + 1) << 16))
        .collect()
}

/// f32 values where rounding to f16 can go wrong: every finite f16 value, the midpoints to
/// its neighbour (ties) and one f32 step either side of them, the overflow threshold, f32
/// subnormals, zeros, infinities and NaN. An even count (they travel in pairs).
fn boundary_floats() -> Vec<f32> {
    let mut v = Vec::new();
    // Below 65504, the largest finite f16 (its upper neighbour is infinity, listed below).
    for h in 0..0x7bffu16 {
        let a = f16::from_bits(h).to_f32();
        let b = f16::from_bits(h + 1).to_f32();
        let mid = (f64::from(a) + f64::from(b)) / 2.0;
        let mid = mid as f32; // exact: f16 neighbours differ in few bits
        for x in [a, mid, f32::from_bits(mid.to_bits() - 1), next_up(mid)] {
            v.extend([x, -x]);
        }
    }
    v.extend([
        65504.0,
        65519.996,
        65520.0,
        1e10,
        f32::MAX,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        1e-30,
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
    ]);
    if v.len() % 2 == 1 {
        v.push(0.5);
    }
    v
}

/// The boundary values the softmax outputs' narrowing takes: non-negative and below 65520
/// (where f16 overflows), or NaN (either sign). An even count.
fn unit_boundary_floats() -> Vec<f32> {
    let mut v: Vec<f32> = boundary_floats()
        .into_iter()
        .filter(|x| x.is_nan() || (x.is_sign_positive() && *x < 65520.0))
        .collect();
    if v.len() % 2 == 1 {
        v.push(0.5);
    }
    v
}

fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

/// Whether the probe's results match exact conversions.
pub(crate) fn verify(
    halves: &[u32],
    widened: &[[f32; 2]],
    floats: &[f32],
    narrowed: &[u32],
) -> bool {
    let wide_ok = halves.iter().zip(widened).all(|(&w, got)| {
        let want = [w & 0xffff, w >> 16].map(|h| f16::from_bits(h as u16).to_f32());
        want.iter()
            .zip(got)
            .all(|(a, b)| (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits())
    });
    let narrow_ok = floats.chunks(2).zip(narrowed).all(|(pair, &got)| {
        pair.iter().enumerate().all(|(k, &x)| {
            let want = f16::from_f32(x);
            let got = f16::from_bits((got >> (16 * k)) as u16);
            (want.is_nan() && got.is_nan()) || want.to_bits() == got.to_bits()
        })
    });
    wide_ok && narrow_ok
}

/// Runs the probe on `device`; any failure (validation, device loss) counts as inexact.
pub(crate) async fn builtins_are_exact(device: &wgpu::Device, queue: &wgpu::Queue) -> bool {
    let source = format!("{BUILTINS}{PROBE}");
    run(device, queue, &source, boundary_floats())
        .await
        .unwrap_or(false)
}

/// Whether the kernels' own f16 bit conversions (used where the builtins are not exact, and
/// for narrowing on CPU adapters) are exact on `device`, by the same probe: they must be
/// everywhere. For tests.
#[doc(hidden)]
pub async fn bit_conversions_are_exact(device: &wgpu::Device, queue: &wgpu::Queue) -> bool {
    let source = format!("{}{PROBE}", bit_conversions(false));
    run(device, queue, &source, boundary_floats())
        .await
        .unwrap_or(false)
}

/// Whether the softmax outputs' f16 narrowing (`f16x2_bits_unit`, for values that are
/// non-negative and below 65520, or NaN) is exact on `device` over those of the probe's
/// values. For tests.
#[doc(hidden)]
pub async fn unit_conversions_are_exact(device: &wgpu::Device, queue: &wgpu::Queue) -> bool {
    let source = format!("{}{PROBE}", bit_conversions(true));
    run(device, queue, &source, unit_boundary_floats())
        .await
        .unwrap_or(false)
}

async fn run(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    source: &str,
    floats: Vec<f32>,
) -> Option<bool> {
    let halves = all_halves();
    let n_narrow = floats.len() / 2;
    let storage = wgpu::BufferUsages::STORAGE;
    let out = storage | wgpu::BufferUsages::COPY_SRC;
    // Everything up to the mapping in one pair of scopes, awaited after (src/scope.rs).
    let (submitted, caught) = scoped(device, || {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("softmax-wgpu half probe"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("softmax-wgpu half probe"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let init = |contents: &[u8], usage| {
            crate::pool::buffer_init(device, "softmax-wgpu half probe", contents, usage)
        };
        let empty = |size: u64, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let bufs = [
            init(bytemuck::cast_slice(&halves), storage),
            empty(8 * halves.len() as u64, out),
            init(bytemuck::cast_slice(&floats), storage),
            empty(4 * n_narrow as u64, out),
            empty(
                8 * halves.len() as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            empty(
                4 * n_narrow as u64,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
        ];
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &(0..4)
                .map(|i| wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource: bufs[i].as_entire_binding(),
                })
                .collect::<Vec<_>>(),
        });
        let mut enc = device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            let groups = (halves.len().max(n_narrow) as u32).div_ceil(64);
            pass.dispatch_workgroups(groups.min(65535), groups.div_ceil(65535), 1);
        }
        enc.copy_buffer_to_buffer(&bufs[1], 0, &bufs[4], 0, bufs[4].size());
        enc.copy_buffer_to_buffer(&bufs[3], 0, &bufs[5], 0, bufs[5].size());
        queue.submit([enc.finish()]);
        let mapped = bufs[4..]
            .iter()
            .map(|b| map_read(b, b.size()))
            .collect::<Vec<_>>();
        (bufs, mapped)
    });
    caught.await.ok()?;
    let (bufs, mapped) = submitted;
    crate::host::wait_for_device(device).ok()?;
    for m in mapped {
        m.await.ok()?;
    }
    let widened: Vec<[f32; 2]> =
        bytemuck::cast_slice(&bufs[4].slice(..).get_mapped_range().ok()?).to_vec();
    let narrowed: Vec<u32> =
        bytemuck::cast_slice(&bufs[5].slice(..).get_mapped_range().ok()?).to_vec();
    Some(verify(&halves, &widened, &floats, &narrowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_results() -> (Vec<u32>, Vec<[f32; 2]>, Vec<f32>, Vec<u32>) {
        let halves = all_halves();
        let widened = halves
            .iter()
            .map(|&w| [w & 0xffff, w >> 16].map(|h| f16::from_bits(h as u16).to_f32()))
            .collect();
        let floats = boundary_floats();
        let narrowed = floats
            .chunks(2)
            .map(|p| {
                u32::from(f16::from_f32(p[0]).to_bits())
                    | (u32::from(f16::from_f32(p[1]).to_bits()) << 16)
            })
            .collect();
        (halves, widened, floats, narrowed)
    }

    #[test]
    fn unit_values_are_the_non_negative_ones_below_overflow_and_nan() {
        let v = unit_boundary_floats();
        assert_eq!(v.len() % 2, 0);
        assert!(v
            .iter()
            .all(|x| x.is_nan() || (x.is_sign_positive() && *x < 65520.0)));
        // Both NaNs, the largest f16, the ties below it, and the subnormal range.
        assert_eq!(v.iter().filter(|x| x.is_nan()).count(), 2);
        assert!(v.contains(&65504.0) && v.contains(&65519.996));
        assert!(v.contains(&f32::from_bits(1)) && v.contains(&2f32.powi(-24)));
        assert!(v.len() > 4 * 0x7bff);
    }

    #[test]
    fn exact_conversions_pass() {
        let (h, w, f, n) = exact_results();
        assert!(verify(&h, &w, &f, &n));
    }

    #[test]
    fn a_flushed_subnormal_fails() {
        let (h, mut w, f, n) = exact_results();
        w[0][1] = 0.0; // f16 bits 0x0001, the smallest subnormal, read as zero
        assert!(!verify(&h, &w, &f, &n));
    }

    #[test]
    fn rounding_toward_zero_fails() {
        let (h, w, f, mut n) = exact_results();
        // 65520 rounds to infinity to nearest even, to 65504 toward zero.
        let i = f.iter().position(|&x| x == 65520.0).unwrap();
        let shift = 16 * (i % 2);
        n[i / 2] = (n[i / 2] & !(0xffff << shift)) | (0x7bff << shift);
        assert!(!verify(&h, &w, &f, &n));
    }

    #[test]
    fn boundaries_include_ties() {
        // 1 + 2^-11 lies halfway between the f16 values 1 and 1 + 2^-10.
        assert!(boundary_floats().contains(&(1.0 + 2f32.powi(-11))));
    }
}
