//! The C ABI from real consumers: the C example (`examples/c/replay.c`) built with the system
//! compiler against `include/l7tap.h` and the pkg-config file, run under valgrind (no plugin:
//! wasmer's JIT under valgrind takes minutes) and under AddressSanitizer with a plugin; and
//! a Python consumer through ctypes (`crates/ffi/tests/consumer.py`). Expected values come from
//! nginx's access log of the bundled captures.
#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)] // tests fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// target/<profile>, where the cdylib and l7tap.pc are.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf() // .../target/debug/deps/x -> target/debug
}

fn required() -> bool {
    std::env::var("L7TAP_REQUIRE_LIVE").is_ok_and(|v| v == "1")
}

fn have(tool: &str) -> bool {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!required(), "{tool} is required (L7TAP_REQUIRE_LIVE=1)");
        eprintln!("SKIP: {tool} is not installed");
    }
    ok
}

fn build_example(out: &Path, extra: &[&str]) {
    let lib = profile_dir();
    assert!(
        lib.join("libl7tap_ffi.so").is_file(),
        "{} has no libl7tap_ffi.so: `cargo test` does not link the shared library; run \
         `cargo build -p l7tap-ffi` first (scripts/test.sh does)",
        lib.display()
    );
    let st = Command::new("gcc")
        .args(["-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .arg(root().join("examples/c/replay.c"))
        .arg(format!("-I{}", root().join("include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-ll7tap_ffi")
        .status()
        .unwrap();
    assert!(st.success(), "the C example builds against include/l7tap.h");
}

/// nginx's access log of a bundled capture: (method, uri, status).
fn nginx_log(name: &str) -> Vec<(String, String, i64)> {
    std::fs::read_to_string(root().join(format!("tests/captures/{name}.nginx.jsonl")))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["method"].as_str().unwrap().to_string(),
                v["uri"].as_str().unwrap().to_string(),
                v["status"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn check_lines(stdout: &str, expected: &[(String, String, i64)]) {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stdout}");
    for (line, (method, uri, status)) in lines.iter().zip(expected) {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        assert_eq!(f[0], "http1", "{line}");
        assert_eq!((f[1], f[2]), (method.as_str(), uri.as_str()), "{line}");
        assert_eq!(f[3], status.to_string(), "{line}");
        assert!(line.contains(" json={"), "{line}");
    }
}

#[test]
fn c_consumer_under_valgrind() {
    if !have("gcc") || !have("valgrind") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("l7tap-ffi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("replay");
    build_example(&exe, &[]);
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=9",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--quiet",
        ])
        .arg(&exe)
        .arg(root().join("tests/captures/keepalive.pcap"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind found errors or the example failed:\n{stderr}"
    );
    check_lines(
        &String::from_utf8_lossy(&out.stdout),
        &nginx_log("keepalive"),
    );
    assert!(
        stderr.contains("bad handle: the engine handle is not live"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn c_consumer_with_a_plugin_under_address_sanitizer() {
    let plugin = root().join("target/plugins/http_status_rewrite.wasm");
    if !have("gcc") {
        return;
    }
    if !plugin.is_file() {
        assert!(
            !required(),
            "build the plugins first: bash scripts/build-plugins.sh"
        );
        eprintln!("SKIP: {} not built", plugin.display());
        return;
    }
    let dir = std::env::temp_dir().join(format!("l7tap-ffi-asan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("replay-asan");
    build_example(&exe, &["-fsanitize=address"]);
    let out = Command::new(&exe)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .arg(root().join("tests/captures/opt_status.pcap"))
        .arg(&plugin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // nginx answered 200 with {"OPT_STATUS":"FAILED",...} (tests/captures/nginx.conf): the
    // plugin makes it a 500 with the attribute op_stat.
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("http1 GET /api/order 500 plugins=http_status_rewrite op_stat=FAILED"),
        "{first}"
    );
    assert!(stdout
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("http1 GET /api/ok 200 json="));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn python_consumer_through_ctypes() {
    if !have("python3") {
        return;
    }
    let out = Command::new("python3")
        .arg(root().join("crates/ffi/tests/consumer.py"))
        .arg(profile_dir().join("libl7tap_ffi.so"))
        .arg(root().join("tests/captures/keepalive.pcap"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = nginx_log("keepalive");
    let records: Vec<&&str> = lines.iter().filter(|l| l.starts_with("http1 ")).collect();
    let otlp: Vec<&&str> = lines.iter().filter(|l| l.starts_with("otlp ")).collect();
    assert_eq!(records.len(), expected.len(), "{stdout}");
    for (line, (method, uri, status)) in records.iter().zip(&expected) {
        assert_eq!(**line, format!("http1 {method} {uri} {status}"));
    }
    // l7tap_record_to_otlp, decoded with PyPI's opentelemetry-proto when Python has it.
    if otlp.is_empty() {
        assert!(!required(), "python3 needs opentelemetry-proto: {stdout}");
        eprintln!("SKIP: python3 has no opentelemetry-proto; OTLP bytes not decoded");
    } else {
        for (line, (method, uri, status)) in otlp.iter().zip(&expected) {
            assert_eq!(**line, format!("otlp {method} {uri} {status}"));
        }
        assert_eq!(otlp.len(), expected.len());
    }
    // The errors the script provoked on purpose, as the ABI reports them.
    assert_eq!(
        *lines.last().unwrap(),
        "errors: bad_handle=2 null=1 config=4 unknown_key"
    );
}

/// A Go consumer through cgo (`examples/go/consumer.go`): records converted into the log
/// records an OpenTelemetry Collector receiver would emit, attributes named by the semantic
/// conventions, checked against nginx's log.
#[test]
fn go_consumer_through_cgo() {
    if !have("go") {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("l7tap-go-{}", std::process::id()));
    let out = Command::new("go")
        .args([
            "run",
            "examples/go/consumer.go",
            "tests/captures/keepalive.pcap",
        ])
        .current_dir(root())
        .env("GOCACHE", tmp.join("cache"))
        .env("GOPATH", tmp.join("path"))
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = nginx_log("keepalive");
    let logs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logs.len(), expected.len(), "{stdout}");
    for (l, (method, uri, status)) in logs.iter().zip(&expected) {
        let a = &l["attributes"];
        assert_eq!(a["http.request.method"], method.as_str());
        assert_eq!(a["url.path"], uri.as_str());
        assert_eq!(a["http.response.status_code"], *status);
        assert_eq!(l["body"], format!("http1 {method} {uri} {status}"));
        let sev = if *status >= 500 {
            "ERROR"
        } else if *status >= 400 {
            "WARN"
        } else {
            "INFO"
        };
        assert_eq!(l["severity_text"], sev);
    }
}
