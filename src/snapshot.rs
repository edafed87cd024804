//! Snapshots of digests for the tests without an adapter: the WGSL of every catalogued module
//! (src/shader/catalog.rs) and the launches of a grid of calls (src/launch/mod.rs), each case
//! as the SHA-256 of its text in a file under `tests/snapshots/`. A refactor that should
//! change nothing proves it there; a change that should names each case it changed. After an
//! intended change: `UPDATE_SNAPSHOTS=1 cargo test --lib snapshot`, and say in the commit why.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// The SHA-256 of `text`, in hex.
pub(crate) fn digest(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares `now` (case to digest) with `tests/snapshots/<file>`, or rewrites the file where
/// `UPDATE_SNAPSHOTS` is set.
pub(crate) fn check(file: &str, now: &BTreeMap<String, String>) {
    let path = format!("{}/tests/snapshots/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        let text: String = now.iter().map(|(c, d)| format!("{d}  {c}\n")).collect();
        std::fs::write(&path, text).expect("write the snapshot");
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let then: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(d, c)| (c.to_string(), d.to_string()))
        .collect();
    let differ: Vec<&String> = now
        .keys()
        .chain(then.keys().filter(|c| !now.contains_key(*c)))
        .filter(|c| now.get(*c) != then.get(*c))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} cases differ from tests/snapshots/{file} (changed, added or removed), first \
         {:?}; if intended: UPDATE_SNAPSHOTS=1 cargo test --lib snapshot",
        differ.len(),
        now.len(),
        differ.first()
    );
}
