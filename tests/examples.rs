//! Every example runs on every adapter, checks its own result (exit status 0) and prints no
//! `error` line, also where no desktop session exists (no `XDG_RUNTIME_DIR`, no
//! `WAYLAND_DISPLAY`), as on a fresh headless machine.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{backend_name, engines};

const EXAMPLES: [&str; 4] = ["quickstart", "embed", "train_step", "large_vocab"];

/// `target/<profile>/examples/NAME`, built by `cargo test --all-targets` beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build the examples with the tests (cargo test --release --all-targets)",
        path.display()
    );
    path
}

#[test]
fn every_example_passes_without_error_lines_on_every_adapter() {
    for e in engines() {
        let info = &e.info().adapter;
        let backend = backend_name(e);
        for name in EXAMPLES {
            let out = Command::new(example(name))
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
