//! Every WGSL module the crate can build parses, validates, and translates to MSL, HLSL,
//! GLSL and SPIR-V with naga: no adapter needed, so the Metal and DX12 paths are checked on
//! machines that have neither.

use naga::back::{glsl, hlsl, msl, spv};
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
