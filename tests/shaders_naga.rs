//! Every WGSL module the crate can build parses, validates, and translates to MSL, HLSL,
//! GLSL and SPIR-V with naga: no adapter needed, so the Metal and DX12 paths are checked on
//! machines that have neither. The SPIR-V also passes the Khronos validator.

use std::io::Write;
use std::process::{Command, Stdio};

use naga::back::{glsl, hlsl, msl, spv};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ValidationFlags, Validator};

fn validate(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
    (module, info)
}

#[test]
fn every_module_validates_and_translates() {
    let sources = softmax_wgpu::shader::all_sources();
    assert!(
        sources.len() >= 50,
        "expected every variant, got {}",
        sources.len()
    );
    for (name, src) in &sources {
        let (module, info) = validate(name, src);

        msl::write_string(
            &module,
            &info,
            &msl::Options::default(),
            &msl::PipelineOptions::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: MSL: {e}"));

        let mut hlsl_out = String::new();
        hlsl::Writer::new(
            &mut hlsl_out,
            &hlsl::Options::default(),
            &hlsl::PipelineOptions::default(),
        )
        .write(&module, &info, None)
        .unwrap_or_else(|e| panic!("{name}: HLSL: {e}"));

        spv::write_vec(&module, &info, &spv::Options::default(), None)
            .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));

        // GLSL ES 3.1 has no f16, no subgroups and no 64-bit integers; the GL adapter has
        // none of them, so its kernels use packed pairs and workgroup-memory reductions, and
        // its copy 16-byte words.
        if src.contains("enable f16") || src.contains("subgroup_id") || src.contains("u64") {
            continue;
        }
        for entry in &module.entry_points {
            let mut glsl_out = String::new();
            let options = glsl::Options {
                version: glsl::Version::Embedded {
                    version: 310,
                    is_webgl: false,
                },
                ..Default::default()
            };
            let pipeline = glsl::PipelineOptions {
                shader_stage: naga::ShaderStage::Compute,
                entry_point: entry.name.clone(),
                multiview: None,
            };
            glsl::Writer::new(
                &mut glsl_out,
                &module,
                &info,
                &options,
                &pipeline,
                naga::proc::BoundsCheckPolicies::default(),
            )
            .and_then(|mut w| w.write())
            .unwrap_or_else(|e| panic!("{name} {}: GLSL: {e}", entry.name));
        }
    }
}

/// SPIR-V as wgpu's Vulkan backend writes it for a Vulkan 1.3 device (lavapipe, the H100's
/// driver): SPIR-V 1.6, loops bounded, indices and buffer accesses restricted to bounds.
fn vulkan_spv_options() -> spv::Options<'static> {
    let mut options = spv::Options {
        lang_version: (1, 6),
        force_loop_bounding: true,
        bounds_check_policies: BoundsCheckPolicies {
            index: BoundsCheckPolicy::Restrict,
            buffer: BoundsCheckPolicy::Restrict,
            image_load: BoundsCheckPolicy::Restrict,
            binding_array: BoundsCheckPolicy::Unchecked,
        },
        ..Default::default()
    };
    options.flags.remove(spv::WriterFlags::DEBUG);
    options
}

/// `spirv-val`'s complaint about `words`, if any.
fn spirv_val(words: &[u32]) -> Option<String> {
    let mut child = Command::new("spirv-val")
        .args(["--target-env", "vulkan1.3", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spirv-val runs");
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(&bytes)
        .expect("spirv-val reads the module");
    let out = child.wait_with_output().expect("spirv-val finishes");
    (!out.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// naga's SPIR-V of every module is valid for Vulkan by the Khronos validator (`spirv-val`
/// of SPIRV-Tools): invalid SPIR-V is undefined behaviour that one driver may run as meant
/// and another miscompile, so passing on lavapipe alone would not show it.
#[test]
fn every_module_passes_spirv_val() {
    if Command::new("spirv-val").arg("--version").output().is_err() {
        panic!(
            "spirv-val not found: install SPIRV-Tools (Debian: apt-get install spirv-tools; \
             bash .ci/install-drivers installs it)"
        );
    }
    let sources = softmax_wgpu::shader::all_sources();
    let options = vulkan_spv_options();
    // Two threads: one spirv-val process per module, about 10 ms each.
    let half = sources.len().div_ceil(2).max(1);
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = sources
            .chunks(half)
            .map(|chunk| {
                let options = &options;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|(name, src)| {
                            let (module, info) = validate(name, src);
                            let words = spv::write_vec(&module, &info, options, None)
                                .unwrap_or_else(|e| panic!("{name}: SPIR-V: {e}"));
                            spirv_val(&words).map(|why| format!("{name}: {why}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} modules fail spirv-val, the first: {}",
        failures.len(),
        sources.len(),
        failures[0]
    );
}
