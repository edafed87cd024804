//! Every catalogued module the web can run, compiled by a third WGSL compiler: Chromium's
//! Tint, through WebGPU in headless Chromium (on SwiftShader where there is no GPU). naga
//! (tests/shaders_naga.rs) accepts things the WGSL specification, which Tint implements,
//! rejects (see docs/testing.md); this test catches them for every module at once.
//!
//! Left out: modules with `enable f16;` (SwiftShader offers no `shader-f16`; the portable
//! packed path is compiled instead) and with 64-bit words (SHADER_INT64 is native-only).
//! The page (tests/browser/compile.html) compiles each module (and for one in
//! `PIPELINE_EVERY`, builds a compute pipeline of each of its entry points on a device with
//! the default limits), then posts what failed back to this test's server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The browser and the flags that give it WebGPU without a GPU or a display.
const CHROMIUM: &str = "chromium";
const FLAGS: [&str; 3] = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu"];

/// One module in this many also gets its compute pipelines built (every entry point): the
/// limits of the default device are checked there, and SwiftShader generates code, which
/// takes most of the time (every module's pipelines: about 10 minutes on 2 cores).
const PIPELINE_EVERY: usize = 8;

/// How long the page may take to compile every module (SwiftShader on 2 cores: about a
/// minute).
const LIMIT: Duration = Duration::from_secs(900);

#[test]
fn every_web_module_compiles_in_chromium() {
    let modules: Vec<serde_json::Value> = softmax_wgpu::shader::all_modules(
        softmax_wgpu::shader::Dialect::WebGpu,
    )
    .into_iter()
    .filter(|(_, wgsl, _)| !wgsl.contains("enable f16;") && !wgsl.contains("u64"))
    .enumerate()
    .map(|(i, (name, wgsl, entries))| {
        // Every module is compiled; one in PIPELINE_EVERY also gets a pipeline of each
        // entry point (SwiftShader's code generation is the slow part).
        let pipelines = i % PIPELINE_EVERY == 0;
        serde_json::json!({"name": name, "wgsl": wgsl, "entries": entries, "pipelines": pipelines})
    })
    .collect();
    assert!(modules.len() > 300, "{} web modules", modules.len());
    let modules = serde_json::to_vec(&modules).unwrap();
    let page = include_str!("browser/compile.html");

    let server = tiny_http::Server::http("127.0.0.1:0").expect("a local port");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Command::new(CHROMIUM)
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{CHROMIUM}` ({e}): install Debian's `chromium` package \
                 (bash .ci/install-drivers does)"
            )
        });
    let start = Instant::now();
    let result = loop {
        assert!(
            start.elapsed() < LIMIT,
            "no result from the page within {LIMIT:?}"
        );
        if let Ok(Some(status)) = browser.try_wait() {
            panic!("{CHROMIUM} exited early: {status}");
        }
        let Ok(Some(mut request)) = server.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let (body, kind) = match request.url() {
            "/" => (page.as_bytes().to_vec(), "text/html"),
            "/modules.json" => (modules.clone(), "application/json"),
            "/result" => {
                let mut text = String::new();
                request.as_reader().read_to_string(&mut text).unwrap();
                let _ = request.respond(tiny_http::Response::empty(204));
                break text;
            }
            _ => {
                let _ = request.respond(tiny_http::Response::empty(404));
                continue;
            }
        };
        let header = tiny_http::Header::from_bytes("Content-Type", kind).unwrap();
        let _ = request.respond(tiny_http::Response::from_data(body).with_header(header));
    };
    let _ = browser.kill();
    let _ = browser.wait();
    // `TINT_RESULT=path` keeps the page's whole report (every message in full).
    if let Some(path) = std::env::var_os("TINT_RESULT") {
        std::fs::write(path, &result).unwrap();
    }
    let result: serde_json::Value = serde_json::from_str(&result).expect("the page's JSON");
    if let Some(fatal) = result["fatal"].as_str() {
        panic!(
            "{fatal}: headless Chromium gives WebGPU on SwiftShader with {FLAGS:?} (Debian's \
             `chromium` package)"
        );
    }
    let failures = result["failures"].as_array().unwrap();
    // Each failure's first message, without its place: one line per class of failure.
    let mut classes = std::collections::BTreeMap::<String, (usize, String)>::new();
    for f in failures {
        let first = f["messages"][0]
            .as_str()
            .or(f["pipeline"].as_str())
            .or(f["scope"].as_str())
            .unwrap_or("?");
        let class = first.split_once(": ").map_or(first, |(_, m)| m).to_string();
        let e = classes.entry(class).or_insert((0, f["name"].to_string()));
        e.0 += 1;
    }
    let shown: Vec<String> = classes
        .iter()
        .map(|(class, (n, name))| format!("{n} x {class}\n    first in {name}"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} modules fail on {} ({}); the first:\n{}",
        failures.len(),
        failures.len() as u64 + result["compiled"].as_u64().unwrap_or(0),
        result["adapter"],
        result["features"],
        shown.join("\n")
    );
    println!(
        "{} modules compiled on {} ({})",
        result["compiled"], result["adapter"], result["features"]
    );
}
