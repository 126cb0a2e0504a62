//! The dashboard in a real browser: Debian's Chromium, headless, driven through ChromeDriver
//! (the W3C WebDriver protocol over HTTP), loads the page of a running pipeline; the test reads
//! the rendered DOM (counts rising, the graph's nodes, a latency curve, the tail of a tapped
//! component) and saves a screenshot. `.ci/run` installs the chromium and chromium-driver
//! packages; `scripts/test` installs them when missing.

mod common;

use base64::Engine as _;
use common::*;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// ChromeDriver, killed when dropped.
struct Driver {
    child: std::process::Child,
    address: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn driver() -> Driver {
    for bin in [CHROMEDRIVER, CHROMIUM] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: install Debian's chromium and chromium-driver packages (apt-get install chromium chromium-driver), as .ci/run does"
        );
    }
    let port = free_port();
    let child = std::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let d = Driver {
        child,
        address: format!("127.0.0.1:{port}"),
    };
    eventually("chromedriver answers", || {
        let (_, body) = http("GET", &d.address, "/status", None)?;
        body.contains("\"ready\":true").then_some(())
    });
    d
}

/// A WebDriver command; returns its `value`.
fn command(d: &Driver, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let body = (!body.is_null()).then(|| body.to_string());
    let (status, text) = http(method, &d.address, path, body.as_deref())
        .unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(status, 200, "{method} {path}: {text}");
    v["value"].clone()
}

#[test]
fn the_dashboard_renders_a_live_run_in_chromium() {
    let dir = workspace();
    let mut run = Running::start(
        dir.path(),
        &[
            "run",
            "pipelines/iot-device-report.toml",
            "--unbounded",
            "--rate",
            "2000",
            "--serve",
            "127.0.0.1:0",
            "--status-every",
            "0s",
        ],
    );
    let at = run.served_at();
    let d = driver();
    let profile = tempfile::tempdir().unwrap();
    let session = command(
        &d,
        "POST",
        "/session",
        serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1400,1300",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}}),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    let s = format!("/session/{id}");
    command(
        &d,
        "POST",
        &format!("{s}/url"),
        serde_json::json!({"url": format!("http://{at}/?tap=readings")}),
    );
    let look = || {
        command(
            &d,
            "POST",
            &format!("{s}/execute/sync"),
            serde_json::json!({"args": [], "script": r##"
                const n = (id) => document.getElementById(id);
                const out = n("node-sensors");
                const curve = n("curve-report-processing");
                return {
                    updates: +n("updates").textContent,
                    state: n("state").textContent,
                    nodes: [...document.querySelectorAll("#graph g.node")].map((g) => g.id),
                    edges: document.querySelectorAll("#graph path.edge").length,
                    sensors_out: out ? +out.getAttribute("data-records-out") : -1,
                    curve_points: curve ? +curve.getAttribute("data-points") : 0,
                    rows: n("components").tBodies[0].rows.length,
                    tail: n("tail").textContent,
                    source_row: [...n("sources").tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent))[0] || [],
                };
            "##}),
        )
    };
    // Live updates arrive and the counts rise between them.
    let first = eventually("the page shows counts", || {
        let v = look();
        (v["updates"].as_u64()? >= 2 && v["sensors_out"].as_i64()? > 0).then_some(v)
    });
    assert_eq!(first["state"], "running");
    let before = first["sensors_out"].as_i64().unwrap();
    let later = eventually("the counts rise", || {
        let v = look();
        (v["sensors_out"].as_i64()? > before
            && v["updates"].as_u64()? > first["updates"].as_u64()?)
        .then_some(v)
    });
    // The graph is the plan's.
    assert_eq!(
        later["nodes"],
        serde_json::json!([
            "node-sensors",
            "node-readings",
            "node-per_device",
            "node-report",
            "node-dead_letter"
        ])
    );
    assert_eq!(later["edges"], 4);
    assert_eq!(later["rows"], 5);
    // The source's row: its id, a watermark, and its lag behind the wall clock (a generator's
    // event time is its schedule).
    let row = later["source_row"].as_array().unwrap();
    assert_eq!(row[0], "sensors");
    assert!(row[5].as_str().unwrap().starts_with("20"), "{row:?}");
    let lag = row[6].as_str().unwrap();
    assert!(
        lag.ends_with("µs") || lag.ends_with("ms") || lag.ends_with(" s"),
        "{row:?}"
    );
    // The sink's latency curve, once windows have closed; the tail of the tapped filter.
    let v = eventually("a latency curve and a tail", || {
        let v = look();
        (v["curve_points"].as_u64()? > 10 && v["tail"].as_str()?.lines().count() >= 3).then_some(v)
    });
    for line in v["tail"].as_str().unwrap().lines() {
        let r: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        // The fields the window reads are there; the others are not computed (NULL).
        assert!(
            r["device_id"].as_str().unwrap().starts_with("dev-"),
            "{line}"
        );
        // (A number: the page shows JSON as JavaScript writes it, 12.0 as 12.)
        assert!(r["temperature"].is_number(), "{line}");
        assert!(r["humidity"].is_null(), "{line}");
    }
    // A screenshot of the page, kept beside the test binaries.
    let png = command(
        &d,
        "GET",
        &format!("{s}/screenshot"),
        serde_json::Value::Null,
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let info = decoder.read_info().unwrap();
    assert_eq!(info.info().width, 1400);
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&path, &bytes).unwrap();
    command(&d, "DELETE", &s, serde_json::Value::Null);
    drop(run);
}
