//! The demo page people open (examples/web), in headless Chromium driven through WebDriver
//! (chromedriver): it reaches its finished state, shows the stable seed row and no error, and
//! its screenshot is kept (target/web-demo.png). It needs the page's wasm built first,
//! `bash examples/web/build.sh` (the README's test command does it).
//!
//! The page runs its quick benchmark here. `WEB_DEMO_BENCH=full` runs the full one (the
//! README's browser table; minutes on SwiftShader) and writes its results to
//! target/web-bench.json.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::ClientBuilder;

/// The flags that give headless Chromium WebGPU without a GPU or a display.
const FLAGS: [&str; 4] = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--window-size=1000,2200",
];

/// How long the page may take (its quick benchmark on SwiftShader: a few seconds on 2 cores;
/// the full one about a minute).
const LIMIT: Duration = Duration::from_secs(600);

/// Serves `dir` on a free local port, from a thread of its own; returns the port.
fn serve(dir: PathBuf) -> u16 {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("a local port");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("/").to_string();
            let path = if path == "/" {
                "/index.html".into()
            } else {
                path
            };
            let file = dir.join(path.trim_start_matches('/'));
            let kind = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html",
                Some("js") => "text/javascript",
                Some("wasm") => "application/wasm",
                _ => "application/octet-stream",
            };
            let response = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => tiny_http::Response::from_data(body)
                    .with_header(
                        tiny_http::Header::from_bytes("Content-Type", kind).expect("a header"),
                    )
                    .boxed(),
                _ => tiny_http::Response::empty(404).boxed(),
            };
            let _ = request.respond(response);
        }
    });
    port
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    listener.local_addr().expect("an address").port()
}

#[test]
fn the_demo_page_finishes_with_the_stable_row() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/web");
    assert!(
        dir.join("pkg/softmax_wgpu_web_bg.wasm").exists(),
        "the demo page's wasm is missing: run `bash examples/web/build.sh` (it installs the \
         wasm32 target and wasm-bindgen-cli where missing)"
    );
    let port = serve(dir);
    let driver_port = free_port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `chromedriver` ({e}): install Debian's `chromium` and \
                 `chromium-driver` packages (bash .ci/install-drivers does)"
            )
        });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let result = runtime.block_on(run_page(driver_port, port));
    let _ = driver.kill();
    let _ = driver.wait();
    let (state, error, stable, png, bench) = result.unwrap_or_else(|e| panic!("{e}"));
    if full_bench() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-bench.json");
        std::fs::write(&out, bench).expect("the bench results written");
    }
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-demo.png");
    std::fs::write(&shot, &png).expect("the screenshot written");
    assert_eq!(
        state,
        "done",
        "the page did not finish: {error} (screenshot: {})",
        shot.display()
    );
    assert!(error.is_empty(), "the page shows an error: {error}");
    assert!(
        stable.contains("0.2447285")
            && stable.contains("0.6652409")
            && stable.contains("0.0900306"),
        "the stable seed row reads {stable:?}"
    );
    // A PNG of the whole window, not a blank one.
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert!(png.len() > 20_000, "a {}-byte screenshot", png.len());
}

fn full_bench() -> bool {
    std::env::var("WEB_DEMO_BENCH").is_ok_and(|v| v == "full")
}

/// Opens the page, waits for its state to leave "running", and returns the state, the
/// error text, the stable seed row, a screenshot and the benchmark's results (JSON).
async fn run_page(
    driver_port: u16,
    port: u16,
) -> Result<(String, String, String, Vec<u8>, String), String> {
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": FLAGS }),
    );
    // chromedriver takes a moment to listen.
    let start = Instant::now();
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{driver_port}"))
            .await
        {
            Ok(c) => break c,
            Err(e) if start.elapsed() > Duration::from_secs(20) => {
                return Err(format!("no WebDriver session: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let outcome = async {
        client
            .goto(&format!(
                "http://127.0.0.1:{port}/{}",
                if full_bench() { "" } else { "?bench=quick" }
            ))
            .await
            .map_err(|e| e.to_string())?;
        let text = |script: &'static str| {
            let client = &client;
            async move {
                let v = client
                    .execute(script, vec![])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(v.as_str().unwrap_or_default().to_string())
            }
        };
        let start = Instant::now();
        let state = loop {
            let state = text("return document.getElementById('state').dataset.state").await?;
            if state != "running" || start.elapsed() > LIMIT {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let error = text("return document.getElementById('error').textContent").await?;
        let stable = text("return document.getElementById('seed').dataset.stable || ''").await?;
        let png = client.screenshot().await.map_err(|e| e.to_string())?;
        let bench = text("return JSON.stringify(window.benchResults || [])").await?;
        Ok((state, error, stable, png, bench))
    }
    .await;
    let _ = client.close().await;
    outcome
}
