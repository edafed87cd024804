//! Every example runs on every adapter, checks its own result (exit status 0) and prints no
//! `error` line, also where no desktop session exists (no `XDG_RUNTIME_DIR`, no
//! `WAYLAND_DISPLAY`), as on a fresh headless machine.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{backend_name, engines};

const EXAMPLES: [&str; 5] = [
    "quickstart",
    "embed",
    "train_step",
    "large_vocab",
    "vocab_parallel",
];

/// Builds the examples in this test's profile (`cargo test --all-targets` builds them as test
/// harnesses, which run nothing) and returns where `cargo build` leaves them.
fn build_examples() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--examples"]);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "cargo build --examples failed: {status}");
    profile_dir.join("examples")
}

#[test]
fn every_example_passes_without_error_lines_on_every_adapter() {
    let dir = build_examples();
    for e in engines() {
        let info = &e.info().adapter;
        let backend = backend_name(e);
        for name in EXAMPLES {
            let out = Command::new(dir.join(name))
                .env("WGPU_BACKEND", backend)
                .env("WGPU_ADAPTER_NAME", &info.name)
                .env_remove("XDG_RUNTIME_DIR")
                .env_remove("WAYLAND_DISPLAY")
                .env_remove("NODEVICE_SELECT")
                .output()
                .expect("the example starts");
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            let context = format!("{name} on {} ({backend})", info.name);
            assert!(
                out.status.success(),
                "{context}: exit {:?}\n{stdout}\n{stderr}",
                out.status
            );
            assert!(
                stdout.contains(&info.name) && stdout.contains(&format!("{:?}", info.backend)),
                "{context} ran on another adapter:\n{stdout}"
            );
            for line in stdout.lines().chain(stderr.lines()) {
                assert!(
                    !line.to_lowercase().starts_with("error"),
                    "{context} printed {line:?}"
                );
            }
        }
    }
}
