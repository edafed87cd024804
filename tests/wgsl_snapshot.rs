//! The WGSL of every module the crate can build (`shader::all_sources`), as SHA-256 digests
//! in `tests/snapshots/wgsl.sha256`: a change that should not touch a kernel (a refactor of
//! how modules are assembled) proves it here, and one that should names each module it
//! changed. After an intended change: `UPDATE_SNAPSHOTS=1 cargo test --test wgsl_snapshot`,
//! and say in the commit why the modules changed. Needs no adapter.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/wgsl.sha256");

/// Module name (its key; a repeated key gets ` #2`, ` #3`...) to the digest of its WGSL.
fn digests() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, wgsl) in softmax_wgpu::shader::all_sources() {
        let digest: String = Sha256::digest(wgsl.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut unique = name.clone();
        for n in 2.. {
            if !out.contains_key(&unique) {
                break;
            }
            unique = format!("{name} #{n}");
        }
        out.insert(unique, digest);
    }
    out
}

#[test]
fn every_module_matches_its_snapshot() {
    let now = digests();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let text: String = now.iter().map(|(n, d)| format!("{d}  {n}\n")).collect();
        std::fs::write(SNAPSHOT, text).expect("write the snapshot");
        return;
    }
    let text = std::fs::read_to_string(SNAPSHOT).expect("tests/snapshots/wgsl.sha256");
    let then: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(d, n)| (n.to_string(), d.to_string()))
        .collect();
    let changed: Vec<&String> = now
        .iter()
        .filter(|(n, d)| then.get(*n).is_some_and(|t| t != *d))
        .map(|(n, _)| n)
        .collect();
    let added: Vec<&String> = now.keys().filter(|n| !then.contains_key(*n)).collect();
    let removed: Vec<&String> = then.keys().filter(|n| !now.contains_key(*n)).collect();
    assert!(
        changed.is_empty() && added.is_empty() && removed.is_empty(),
        "WGSL differs from tests/snapshots/wgsl.sha256 ({} modules): {} changed, {} added, \
         {} removed; first of each: {:?} / {:?} / {:?}. If intended: UPDATE_SNAPSHOTS=1 cargo \
         test --test wgsl_snapshot",
        now.len(),
        changed.len(),
        added.len(),
        removed.len(),
        changed.first(),
        added.first(),
        removed.first()
    );
}
