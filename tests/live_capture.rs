//! Live eBPF capture against real servers and clients on loopback, started by the tests:
//! nginx + curl (keep-alive, a large response; also over IPv6, and with sendfile); Python's
//! http.server + curl; a server that moves bodies with splice(2) + curl; a server doing all
//! its socket I/O through io_uring + curl; nginx + nghttp (cleartext HTTP/2, multiplexed
//! streams) and nginx + curl over HTTPS with HTTP/2; a keep-alive connection opened before the capture started; HTTPS
//! through OpenSSL (plaintext via uprobes) from curl and from Python (the `_ex` calls);
//! HTTPS between Go programs (crypto/tls, probed in the Go binary);
//! redis-server + redis-cli, also pub/sub; psql + PostgreSQL; the mariadb client + MariaDB;
//! mosquitto + its clients (MQTT); a grpcio client and server with the gRPC business-id
//! plugin; dnsmasq + dig and a client on an unconnected UDP socket (IPv4 and IPv6); glibc's
//! resolver (`getent`, `sendmmsg`) against dnsmasq in a network namespace; a recvmmsg/sendmmsg
//! DNS server and parallel dig clients; the port
//! and pid filters; and a deliberately overflowed ring. Expected values come from what the
//! clients printed and from the servers' own logs.
//!
//! Needs root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF and syscall tracepoints. Where
//! those or the programs are missing the tests print why and skip, unless
//! `L7TAP_REQUIRE_LIVE=1` (set by scripts/test.sh when it runs as root, so CI never skips).
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{s, DigAnswer};
use l7tap::{
    Engine, L7Record, PluginHost, PluginLimits, Protocol, ResponseStatus, StatsSnapshot, L4,
};
use l7tap_capture_bpf::{BpfConfig, BpfControl, BpfError, BpfSource};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

fn required() -> bool {
    std::env::var("L7TAP_REQUIRE_LIVE").is_ok_and(|v| v == "1")
}

/// Skips (printing why), or fails when live tests are required.
fn skip(reason: &str) {
    if required() {
        panic!("live capture required (L7TAP_REQUIRE_LIVE=1) but: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn programs(names: &[&str]) -> bool {
    for n in names {
        if !have(n) {
            skip(&format!("{n} is not installed"));
            return false;
        }
    }
    true
}

/// A capture running in the background through a full engine.
struct Live {
    control: BpfControl,
    handle: JoinHandle<(Vec<L7Record>, StatsSnapshot)>,
}

impl Live {
    fn start(config: BpfConfig) -> Option<Live> {
        Live::start_with(config, None)
    }

    /// A capture whose records go through `plugins` too.
    fn start_with(config: BpfConfig, plugins: Option<PluginHost>) -> Option<Live> {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut source = match BpfSource::open(config) {
                Ok(s) => s,
                Err(e) => {
                    tx.send(Err(e)).unwrap();
                    return (Vec::new(), StatsSnapshot::default());
                }
            };
            tx.send(Ok(source.control())).unwrap();
            let mut builder = Engine::builder().workers(1);
            if let Some(host) = plugins {
                builder = builder.plugins(host);
            }
            let mut engine = builder.build().unwrap();
            let records = engine.records().unwrap();
            let collector = std::thread::spawn(move || records.iter().collect::<Vec<_>>());
            engine.run(&mut source).expect("capture runs");
            let stats = engine.finish();
            (collector.join().unwrap(), stats)
        });
        match rx.recv().unwrap() {
            Ok(control) => Some(Live { control, handle }),
            Err(e @ (BpfError::Privilege(_) | BpfError::KernelFeature(_))) => {
                skip(&e.to_string());
                None
            }
            Err(e) => panic!("capture failed to start: {e}"),
        }
    }

    /// Lets the last events drain, stops, and returns every record and the counters.
    fn stop(self) -> (Vec<L7Record>, StatsSnapshot) {
        sleep(Duration::from_millis(300));
        self.control.stop();
        self.handle.join().unwrap()
    }
}

fn config(ports: &[u16]) -> BpfConfig {
    BpfConfig {
        ports: ports.to_vec(),
        ..Default::default()
    }
}

/// A process killed when the test ends.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    wait_addr(&format!("127.0.0.1:{port}"));
}

/// Waits until something accepts TCP connections at `addr` (bounded).
fn wait_addr(addr: &str) {
    let t0 = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{addr} never opened"
        );
        sleep(Duration::from_millis(50));
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("l7tap-live-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("www")).unwrap();
    Command::new("chmod")
        .args(["-R", "755"])
        .arg(&d)
        .status()
        .unwrap();
    d
}

/// How nginx listens.
#[derive(Clone, Copy, PartialEq)]
enum Listen {
    Http,
    /// HTTPS with a fresh self-signed certificate.
    Https,
    /// Cleartext HTTP/2 (prior knowledge).
    H2c,
    /// HTTP on the IPv6 loopback, [::1].
    Http6,
    /// HTTP with `sendfile on` (static files leave through sendfile(2): never copied).
    HttpSendfile,
    /// HTTP/2 over TLS (ALPN h2), with a fresh self-signed certificate.
    H2Tls,
}

/// A fresh self-signed certificate for localhost: `dir`/cert.pem and `dir`/key.pem.
fn self_signed_cert(dir: &std::path::Path) {
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl req");
}

/// nginx from tests/captures/nginx.conf on `port` (and port+1 for its backend).
fn nginx(name: &str, port: u16, listen: Listen) -> (Proc, PathBuf) {
    let dir = scratch_dir(name);
    let conf = std::fs::read_to_string(common::root().join("tests/captures/nginx.conf")).unwrap();
    let mut conf = conf
        .replace("NGINX_DIR", dir.to_str().unwrap())
        .replace("BACKEND_PORT", &(port + 1).to_string())
        .replace("NGINX_PORT", &port.to_string());
    if listen == Listen::HttpSendfile {
        conf = conf.replacen("http {", "http {\n    sendfile on;", 1);
    }
    if listen == Listen::Http6 {
        conf = conf.replacen(
            &format!("listen 127.0.0.1:{port};"),
            &format!("listen [::1]:{port};"),
            1,
        );
    }
    if listen == Listen::H2c {
        conf = conf.replacen(
            &format!("listen 127.0.0.1:{port};"),
            &format!("listen 127.0.0.1:{port} http2;"),
            1,
        );
    }
    if listen == Listen::Https || listen == Listen::H2Tls {
        self_signed_cert(&dir);
        conf = conf.replacen(
            &format!("listen 127.0.0.1:{port};"),
            &format!(
                "listen 127.0.0.1:{port} ssl{1}; ssl_certificate {0}/cert.pem; ssl_certificate_key {0}/key.pem;",
                dir.display(),
                if listen == Listen::H2Tls { " http2" } else { "" }
            ),
            1,
        );
    }
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    std::fs::write(
        dir.join("www/index.html"),
        "<html><body>hello l7tap</body></html>\n",
    )
    .unwrap();
    let large: String = (0..6000)
        .map(|i| format!("line {i:06} of the large file.....\n"))
        .collect();
    std::fs::write(dir.join("www/large.txt"), large).unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    if listen == Listen::Http6 {
        wait_addr(&format!("[::1]:{port}"));
    } else {
        wait_port(port);
    }
    (Proc(child), dir)
}

/// curl's `-w` report, one line per request: (code, size_download, num_connects).
fn curl_lines(out: &[u8]) -> Vec<(u16, u64, u32)> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

/// Runs a client to its end (it must succeed): its pid and what it printed.
fn run_client(cmd: &mut Command) -> (u32, String) {
    let child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?}");
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// curl for `paths` under `base` on one keep-alive connection (`--next`; certificates not
/// verified, IPv6 literals allowed): its pid and its report per request.
fn curl_paths(base: &str, paths: &[&str]) -> (u32, Vec<(u16, u64, u32)>) {
    let mut cmd = Command::new("curl");
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-skg", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{size_download} %{num_connects}\\n")
            .arg(format!("{base}{p}"));
    }
    let (pid, out) = run_client(&mut cmd);
    (pid, curl_lines(out.as_bytes()))
}

/// "status body_length" per line, as the Python clients of tests/live print them.
fn status_lines(out: &str) -> Vec<(i32, u64)> {
    out.lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// The records of these processes, in order.
fn of_pids<'a>(records: &'a [L7Record], pids: &[u32]) -> Vec<&'a L7Record> {
    records.iter().filter(|r| pids.contains(&pid(r))).collect()
}

/// nginx's access log: a JSON object per request (tests/captures/nginx.conf).
fn nginx_log(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("access.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The child processes of `pid` (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A helper program of these tests (tests/live).
fn script(name: &str) -> PathBuf {
    common::root().join("tests/live").join(name)
}

fn comm(r: &L7Record) -> String {
    r.process.as_ref().map(|p| s(&p.comm)).unwrap_or_default()
}

fn pid(r: &L7Record) -> u32 {
    r.process.as_ref().map(|p| p.pid).unwrap_or(0)
}

/// Runs curl for `paths` on one keep-alive connection and checks both sides' records.
fn http_both_sides(name: &str, port: u16, tls: bool) {
    if !programs(&["nginx", "curl", "openssl"]) {
        return;
    }
    let (ngx, dir) = nginx(name, port, if tls { Listen::Https } else { Listen::Http });
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let scheme = if tls { "https" } else { "http" };
    let paths = ["/index.html", "/large.txt", "/missing", "/api/order"];
    let (curl_pid, printed) = curl_paths(&format!("{scheme}://127.0.0.1:{port}"), &paths);
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    assert_eq!(printed.len(), paths.len());
    assert_eq!(
        printed.iter().map(|p| p.2).sum::<u32>(),
        1,
        "one connection"
    );
    // nginx's own log of the same requests (an independent view of method, uri, status).
    let logged = nginx_log(&dir);
    assert_eq!(logged.len(), paths.len());
    let _ = std::fs::remove_dir_all(&dir);

    for (side, pids) in [("client", vec![curl_pid]), ("server", workers)] {
        let mine = of_pids(&records, &pids);
        assert_eq!(
            mine.len(),
            paths.len(),
            "{side} side records: {records:#?}\n{stats:?}"
        );
        for (i, r) in mine.iter().enumerate() {
            let (code, size, _) = printed[i];
            assert_eq!(r.protocol, Protocol::Http1, "{side} {i}");
            assert_eq!(s(&r.request_type), logged[i]["method"], "{side} {i}");
            assert_eq!(s(&r.request_resource), logged[i]["uri"], "{side} {i}");
            assert_eq!(s(&r.request_resource), paths[i], "{side} {i}");
            assert_eq!(r.response_code, Some(i32::from(code)), "{side} {i}");
            assert_eq!(
                u64::from(code),
                logged[i]["status"].as_u64().unwrap(),
                "{side} {i}"
            );
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}");
            assert_eq!(r.flow.server.port(), port, "{side} {i}");
            // The 210 KB body is cut at the snaplen; everything else is whole.
            assert_eq!(r.truncated, size > 16384, "{side} {i}");
            if !r.truncated && code == 200 {
                assert_eq!(r.resp_len.map(|l| l >= size), Some(true), "{side} {i}");
            }
            assert_eq!(comm(r), if side == "client" { "curl" } else { "nginx" });
        }
    }
    assert_eq!(records.len(), 2 * paths.len(), "nothing else: {records:#?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0);
    if tls {
        assert!(
            stats.get("bpf_tls_events") >= 4 * paths.len() as u64,
            "{stats:?}"
        );
        assert!(stats.get("bpf_tls_ciphertext_suppressed") > 0, "{stats:?}");
        // The handshake, before OpenSSL's first read or write, is counted as ciphertext on
        // both sides and never parsed (nginx's peek at the first byte is not reported).
        assert!(stats.get("bpf_tls_ciphertext_bytes") > 0, "{stats:?}");
        assert!(stats.get("bpf_peeked_receives") > 0, "{stats:?}");
    }
    assert_eq!(stats.get("drop_unparsed_bytes"), 0, "{stats:?}");
    assert_eq!(stats.get("drop_parse_error_bytes"), 0, "{stats:?}");
}

#[test]
fn nginx_and_curl_keepalive_both_sides() {
    http_both_sides("http", 18280, false);
}

/// Python's http.server (socket send/recv: the sendto/recvfrom syscalls, HTTP/1.0, a
/// connection per request) and curl: both sides, checked against curl's output and the
/// server's own request log.
#[test]
fn python_http_server_and_curl_both_sides() {
    if !programs(&["python3", "curl"]) {
        return;
    }
    let port = 18980u16;
    let dir = scratch_dir("pyhttp");
    std::fs::write(dir.join("www/index.html"), "<html>hello l7tap</html>\n").unwrap();
    std::fs::write(dir.join("www/data.bin"), vec![b'x'; 50_000]).unwrap();
    let log_path = dir.join("server.log");
    let server = Proc(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--directory")
            .arg(dir.join("www"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_port(port); // a connect the server logs nothing for (no request)
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/data.bin", "/missing"];
    let (curl_pid, printed) = curl_paths(&format!("http://127.0.0.1:{port}"), &paths);
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    assert_eq!(printed.len(), paths.len());
    // The server's log: `127.0.0.1 - - [date] "GET /index.html HTTP/1.1" 200 -`.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let logged: Vec<(String, String, i32)> = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once('"')?;
            let (line, rest) = rest.split_once('"')?;
            let mut f = line.split(' ');
            let code = rest.split_whitespace().next()?.parse().ok()?;
            Some((f.next()?.to_string(), f.next()?.to_string(), code))
        })
        .collect();
    assert_eq!(logged.len(), paths.len(), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
    for (side, want_pid) in [("curl", curl_pid), ("python3", server_pid)] {
        let mine = of_pids(&records, &[want_pid]);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let (code, size, connects) = printed[i];
            assert_eq!(connects, 1, "a connection per request (HTTP/1.0 server)");
            assert_eq!(comm(r), side);
            assert_eq!(r.protocol, Protocol::Http1, "{side} {i}");
            assert_eq!(s(&r.request_type), logged[i].0, "{side} {i}");
            assert_eq!(s(&r.request_resource), logged[i].1, "{side} {i}");
            assert_eq!(s(&r.request_resource), paths[i], "{side} {i}");
            assert_eq!(r.response_code, Some(i32::from(code)), "{side} {i}");
            assert_eq!(r.response_code, Some(logged[i].2), "{side} {i}");
            let class = if code == 200 {
                ResponseStatus::Ok
            } else {
                ResponseStatus::ClientError
            };
            assert_eq!(r.response_status, class, "{side} {i}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}");
            assert_eq!(r.flow.server.port(), port, "{side} {i}");
            assert_eq!(r.truncated, size > 16384, "{side} {i}");
            if !r.truncated && code == 200 {
                assert_eq!(r.resp_len.map(|l| l >= size), Some(true), "{side} {i}");
            }
        }
    }
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A server that moves bodies with splice(2) (socket -> pipe for the request body, pipe ->
/// socket for the response body; heads by readv/writev, two buffers each), and curl on one
/// keep-alive connection. The spliced bytes are never in user memory: the server's records
/// must still see each exchange whole and in order (before the splice hook, the bytes did
/// not count in the stream, so the next head was read as the missing body). Expectations:
/// what curl printed and what the server printed.
#[test]
fn http_bodies_moved_by_splice_both_sides() {
    if !programs(&["python3", "curl"]) {
        return;
    }
    let port = 19580u16;
    let server = Proc(
        Command::new("python3")
            .arg(script("splice_server.py"))
            .args([&port.to_string(), "40000"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let base = format!("http://127.0.0.1:{port}");
    let post_body = scratch_dir("splice").join("body");
    std::fs::write(&post_body, vec![b'y'; 30_000]).unwrap();
    let mut cmd = Command::new("curl");
    for (i, p) in ["/a", "/b", "/post"].iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        if *p == "/post" {
            cmd.arg("--data-binary")
                .arg(format!("@{}", post_body.display()));
        }
        cmd.args(["-s", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{size_download} %{num_connects}\\n")
            .arg(format!("{base}{p}"));
    }
    let (curl_pid, out) = run_client(&mut cmd);
    let printed = curl_lines(out.as_bytes());
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    let mut server = server;
    server.0.kill().unwrap();
    let mut served = String::new();
    std::io::Read::read_to_string(server.0.stdout.as_mut().unwrap(), &mut served).unwrap();
    // "method path request_body_length response_body_length" per request.
    let served: Vec<Vec<String>> = served
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(served.len(), 3, "{served:?}");
    assert_eq!(printed.len(), 3);
    for (side, want_pid) in [("curl", curl_pid), ("python3", server_pid)] {
        let mine = of_pids(&records, &[want_pid]);
        assert_eq!(mine.len(), 3, "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let (code, size, connects) = printed[i];
            assert_eq!(connects, u32::from(i == 0), "one keep-alive connection");
            assert_eq!(comm(r), side);
            assert_eq!(s(&r.request_type), served[i][0], "{side} {i}");
            assert_eq!(s(&r.request_resource), served[i][1], "{side} {i}");
            assert_eq!(r.response_code, Some(i32::from(code)), "{side} {i}");
            assert_eq!(r.resp_len, Some(size), "{side} {i}");
            assert_eq!(
                r.resp_len.map(|l| l.to_string()),
                Some(served[i][3].clone())
            );
            let req_len: u64 = served[i][2].parse().unwrap();
            assert_eq!(r.req_len.unwrap_or(0), req_len, "{side} {i}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}");
            // The server never had the spliced bodies: its records say so.
            if side == "python3" {
                assert!(r.truncated, "{side} {i}");
            }
        }
    }
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A server that does all its socket I/O through io_uring (tests/live/uring_http.c, built
/// with gcc and liburing): accept, receive, send and close are io_uring requests, never
/// syscalls on the socket. On its first two connections the k-th request is received and
/// answered with RECV + SEND, READ + WRITEV (a 40,000-byte body), RECVMSG + SENDMSG, RECV
/// into a provided buffer the kernel picks + SEND_ZC, RECVMSG into a provided buffer + SEND;
/// the second connection names a fixed file instead of an fd; the third is read by one
/// multishot RECV over a registered buffer ring (its completions before the last come
/// without their request). curl asks six, six and three paths, one keep-alive connection
/// each. Expectations: what curl printed and what the server printed. A single-shot receive
/// into a provided buffer names its buffer nowhere by the time it completes: the server's
/// side has no record of those two requests, their answers are seen alone, and the request
/// after them parses whole (the stream's offsets stayed true).
#[test]
fn io_uring_server_all_operations_both_sides() {
    io_uring_server(19680, false);
}

/// The same server with its ring set up for SQPOLL: a kernel thread of the process
/// (iou-sqp-PID) submits the requests, and the records must still name the process.
#[test]
fn io_uring_server_with_an_sq_thread_both_sides() {
    io_uring_server(19690, true);
}

fn io_uring_server(port: u16, sqpoll: bool) {
    if !programs(&["gcc", "curl"]) {
        return;
    }
    if !std::path::Path::new("/usr/include/liburing.h").exists() {
        skip("liburing-dev is not installed");
        return;
    }
    let bin = scratch_dir(&format!("uring{port}")).join("uring_http");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(script("uring_http.c"))
        .arg("-luring")
        .status()
        .unwrap();
    assert!(built.success(), "uring_http.c builds");
    let mut server = Proc(
        Command::new(&bin)
            .args([&port.to_string(), "3"])
            .args(sqpoll.then_some("sqpoll"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = [0u8; 6];
    std::io::Read::read_exact(server.0.stdout.as_mut().unwrap(), &mut ready).unwrap();
    assert_eq!(&ready, b"ready\n");
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let base = format!("http://127.0.0.1:{port}");
    let paths: Vec<Vec<String>> = [6, 6, 3]
        .iter()
        .enumerate()
        .map(|(c, n)| (0..*n).map(|k| format!("/c{c}/r{k}")).collect())
        .collect();
    let clients: Vec<_> = paths
        .iter()
        .map(|p| curl_paths(&base, &p.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let server_pid = server.0.id();
    let mut served = String::new();
    std::io::Read::read_to_string(server.0.stdout.as_mut().unwrap(), &mut served).unwrap();
    let _ = server.0.wait();
    let (records, stats) = live.stop();
    // "connection k method path body_bytes" per answer, as the server printed them.
    let served: Vec<Vec<String>> = served
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(served.len(), 15, "{served:?}");
    let server_side = of_pids(&records, &[server_pid]);
    let mut answered = served.iter();
    for (c, (curl_pid, printed)) in clients.iter().enumerate() {
        assert_eq!(printed.len(), paths[c].len());
        let mine = of_pids(&records, &[*curl_pid]);
        assert_eq!(
            mine.len(),
            paths[c].len(),
            "curl {c}: {records:#?}\n{stats:?}"
        );
        for (k, r) in mine.iter().enumerate() {
            let (code, size, connects) = printed[k];
            let answer = answered.next().unwrap();
            assert_eq!(connects, u32::from(k == 0), "one keep-alive connection");
            let want = [
                c.to_string(),
                k.to_string(),
                "GET".into(),
                paths[c][k].clone(),
            ];
            assert_eq!(answer[..4], want);
            assert_eq!(size.to_string(), answer[4]);
            assert_eq!(s(&r.request_resource), paths[c][k]);
            assert_eq!(r.response_code, Some(i32::from(code)));
            assert_eq!(r.resp_len, Some(size));
            assert!(!r.unpaired && r.rrt_ns > 0, "curl {c} {k}: {r:?}");
        }
        let client_port = mine[0].flow.client.port();
        for (k, path) in paths[c].iter().enumerate() {
            let seen: Vec<&&L7Record> = server_side
                .iter()
                .filter(|r| s(&r.request_resource) == *path)
                .collect();
            let (code, size, _) = printed[k];
            if c < 2 && (k == 3 || k == 4) {
                // Into a provided buffer, single-shot: skipped by length, answers seen alone.
                assert!(seen.is_empty(), "{path} was in no named buffer: {seen:?}");
                let alone: Vec<&&L7Record> = server_side
                    .iter()
                    .filter(|r| {
                        r.request_resource.is_empty() && r.flow.client.port() == client_port
                    })
                    .collect();
                assert_eq!(alone.len(), 2, "{server_side:#?}");
                let r = alone[k - 3];
                assert!(r.unpaired);
                assert_eq!(r.response_code, Some(i32::from(code)));
                assert_eq!(r.resp_len, Some(size));
                continue;
            }
            assert_eq!(seen.len(), 1, "server {path}: {server_side:#?}\n{stats:?}");
            let r = seen[0];
            assert_eq!(comm(r), "uring_http");
            assert_eq!(s(&r.request_type), "GET");
            assert_eq!(r.response_code, Some(i32::from(code)), "{path}");
            assert_eq!(r.resp_len, Some(size), "{path}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{path}: {r:?}");
            assert_eq!(r.flow.server.port(), port);
            assert_eq!(r.flow.client.port(), client_port, "{path}");
        }
    }
    // The four single-shot receives into provided buffers; every other receive and send was
    // copied (15 of each at least), the multishot receive's included.
    assert_eq!(stats.get("bpf_io_uring_not_copied"), 4, "{stats:?}");
    assert!(stats.get("bpf_io_uring_events") >= 30, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_read_faults"), 0, "{stats:?}");
}

/// Cleartext HTTP/2: nghttp multiplexes four streams on one connection (with a traceparent
/// header), against nginx; both sides checked against what nghttp printed and nginx logged.
#[test]
fn h2c_multiplexed_streams_from_nghttp_both_sides() {
    if !programs(&["nginx", "nghttp"]) {
        return;
    }
    let port = 19080u16;
    let (ngx, dir) = nginx("h2c", port, Listen::H2c);
    // The readiness probe (a TCP connect) is in the log of no request; start it empty anyway.
    std::fs::write(dir.join("access.log"), "").unwrap();
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let trace = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let base = format!("http://127.0.0.1:{port}");
    let (client_pid, out) = run_client(
        Command::new("nghttp")
            .args(["-ns", "-H"])
            .arg(format!("traceparent: 00-{}-{}-01", trace.0, trace.1))
            .args(["/index.html", "/missing", "/large.txt", "/fail"].map(|p| format!("{base}{p}"))),
    );
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    // nghttp's stream table: "id responseEnd requestStart process code size request path".
    let text = out;
    let streams: Vec<(u32, i32, String)> = text
        .lines()
        .skip_while(|l| !l.starts_with("id  responseEnd"))
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 7).then(|| {
                (
                    f[0].parse().unwrap(),
                    f[4].parse().unwrap(),
                    f[6].to_string(),
                )
            })
        })
        .collect();
    assert_eq!(streams.len(), 4, "{text}");
    let log = nginx_log(&dir);
    assert_eq!(log.len(), 4);
    let _ = std::fs::remove_dir_all(&dir);
    for (side, pids) in [("nghttp", vec![client_pid]), ("nginx", workers.clone())] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), 4, "{side}: {records:#?}\n{stats:?}");
        for (id, code, path) in &streams {
            let r = mine
                .iter()
                .find(|r| r.request_id == Some(u64::from(*id)))
                .unwrap_or_else(|| panic!("{side}: stream {id}: {mine:#?}"));
            let at = format!("{side} stream {id}");
            let entry = log.iter().find(|e| e["uri"] == path.as_str()).unwrap();
            assert_eq!(r.protocol, Protocol::Http2, "{at}");
            assert_eq!(s(&r.request_type), "GET", "{at}");
            assert_eq!(s(&r.request_type), entry["method"], "{at}");
            assert_eq!(s(&r.request_resource), *path, "{at}");
            assert_eq!(s(&r.request_domain), entry["host"], "{at}");
            assert_eq!(r.response_code, Some(*code), "{at}");
            assert_eq!(
                r.response_code.map(i64::from),
                entry["status"].as_i64(),
                "{at}"
            );
            assert_eq!(s(&r.trace_id), trace.0, "{at}");
            assert_eq!(s(&r.span_id), trace.1, "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
            // The large file's DATA is cut at the snaplen; the rest is whole, and the DATA
            // bytes are what nginx logged as the body it sent.
            let sent = entry["body_bytes_sent"].as_u64().unwrap();
            assert_eq!(r.truncated, sent > 16384, "{at}: {r:?}");
            if sent <= 16384 {
                assert_eq!(r.resp_len, Some(sent), "{at}");
            }
        }
        assert!(
            mine.iter().all(|r| r.flow == mine[0].flow),
            "{side}: one connection"
        );
    }
    assert_eq!(stats.get("parse_errors_http2"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

#[test]
fn https_plaintext_through_openssl_uprobes() {
    http_both_sides("https", 18380, true);
}

/// One side's records of `paths` (in order) checked against nginx's access log and the client's
/// own report ("status body_length" per request, `printed`): method, path, status, body
/// length, paired. `log` and `printed` start at this side's first request.
fn check_https_side(
    side: &str,
    mine: &[&L7Record],
    paths: &[&str],
    log: &[serde_json::Value],
    printed: &[(i32, u64)],
    context: &str,
) {
    assert_eq!(mine.len(), paths.len(), "{side}: {context}");
    for (i, r) in mine.iter().enumerate() {
        let at = format!("{side} {}", paths[i]);
        assert_eq!(r.protocol, Protocol::Http1, "{at}");
        assert_eq!(s(&r.request_type), log[i]["method"], "{at}");
        assert_eq!(s(&r.request_resource), paths[i], "{at}");
        assert_eq!(s(&r.request_resource), log[i]["uri"], "{at}");
        assert_eq!(r.response_code, Some(printed[i].0), "{at}");
        assert_eq!(
            r.response_code.map(i64::from),
            log[i]["status"].as_i64(),
            "{at}"
        );
        assert_eq!(r.resp_len, Some(printed[i].1), "{at}");
        assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
    }
}

/// A Python HTTPS client (`script`: https_get.py, nss_https_get.py) for `paths` on `port`,
/// waiting for a line on its stdin (WAIT_FOR_GO=1) before its requests; `env`: more of its
/// environment.
fn waiting_https_client(
    script_name: &str,
    port: u16,
    paths: &[&str],
    env: &[(&str, &str)],
) -> Child {
    Command::new("/usr/bin/python3")
        .arg(script(script_name))
        .arg(port.to_string())
        .args(paths)
        .env("WAIT_FOR_GO", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The end of an HTTPS exchange between a client that prints "status body_length" per request
/// (its stdin already told to go) and nginx: waits for the client, stops the capture and checks
/// both sides (the client's as `client_side`) against what the client printed and nginx logged.
/// Returns the counters.
fn check_https_client_and_nginx(
    client: Child,
    client_side: &str,
    live: Live,
    ngx: Proc,
    dir: &std::path::Path,
    paths: &[&str],
) -> StatsSnapshot {
    let client_pid = client.id();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success());
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let printed = status_lines(&String::from_utf8_lossy(&out.stdout));
    let log = nginx_log(dir);
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(printed.len(), paths.len());
    assert_eq!(log.len(), paths.len());
    let context = format!("{records:#?}\n{stats:?}");
    for (side, pids) in [(client_side, vec![client_pid]), ("nginx", workers)] {
        let mine = of_pids(&records, &pids);
        check_https_side(side, &mine, paths, &log, &printed, &context);
    }
    stats
}

/// HTTPS from wget, which uses GnuTLS, not OpenSSL (Debian's wget, like apt and many other
/// programs): its side is seen in plaintext through the GnuTLS probes
/// (`gnutls_record_send`/`recv`), nginx's through the OpenSSL ones. Three GETs on one
/// keep-alive connection; both sides are checked against nginx's access log.
#[test]
fn https_from_wget_through_the_gnutls_probes_both_sides() {
    if !programs(&["nginx", "wget", "openssl"]) {
        return;
    }
    let port = 18680u16;
    let (ngx, dir) = nginx("wget", port, Listen::Https);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/large.txt", "/api/order"];
    let mut cmd = Command::new("wget");
    cmd.args(["-q", "--no-check-certificate", "-O", "/dev/null"]);
    for p in paths {
        cmd.arg(format!("https://127.0.0.1:{port}{p}"));
    }
    let (wget_pid, _) = run_client(&mut cmd);
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let logged = nginx_log(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(logged.len(), paths.len());
    for (side, pids, name) in [
        ("client", vec![wget_pid], "wget"),
        ("server", workers, "nginx"),
    ] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(comm(r), name);
            assert_eq!(r.protocol, Protocol::Http1, "{side} {i}");
            assert_eq!(s(&r.request_type), logged[i]["method"], "{side} {i}");
            assert_eq!(s(&r.request_resource), logged[i]["uri"], "{side} {i}");
            assert_eq!(s(&r.request_resource), paths[i], "{side} {i}");
            assert_eq!(
                r.response_code.map(|c| c as u64),
                logged[i]["status"].as_u64(),
                "{side} {i}"
            );
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}");
            assert_eq!(r.flow.server.port(), port, "{side} {i}");
        }
        // One connection (keep-alive): wget reused it for every request.
        assert!(mine.iter().all(|r| r.flow == mine[0].flow), "{side}");
    }
    assert_eq!(records.len(), 2 * paths.len(), "nothing else: {records:#?}");
    assert!(
        stats.get("bpf_tls_events") >= 4 * paths.len() as u64,
        "{stats:?}"
    );
    assert!(stats.get("bpf_tls_ciphertext_suppressed") > 0, "{stats:?}");
    assert_eq!(stats.get("drop_parse_error_bytes"), 0, "{stats:?}");
}

/// HTTPS between an asyncio server and an asyncio client (tests/live/asyncio_tls.py): Python's
/// asyncio runs TLS through memory BIOs, so SSL_read/SSL_write never touch the socket and the
/// kernel cannot tell which connection their plaintext belongs to (before, it was dropped and
/// counted in `bpf_tls_no_socket`). It is now tied in user space to the connection its thread
/// moves the ciphertext on: a read to the one it just received on, a write to its next send.
/// Three connections at once from one thread, three requests each (GET, a 3,000-byte POST
/// echoed back, a 404): every request on both sides, on its own connection, checked against
/// what the client and the server printed.
#[test]
fn https_over_asyncio_memory_bios_both_sides() {
    if !programs(&["python3", "openssl"]) {
        return;
    }
    let port = 18990u16;
    let dir = scratch_dir("asyncio-tls");
    self_signed_cert(&dir);
    let mut child = Command::new("python3")
        .arg(script("asyncio_tls.py"))
        .args(["server", &port.to_string()])
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut served, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let server = Proc(child);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/hello", "POST/echo", "/missing"];
    let (client_pid, out) = run_client(
        Command::new("python3")
            .arg(script("asyncio_tls.py"))
            .args(["client", &port.to_string(), "3"])
            .args(paths),
    );
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    let mut log = String::new();
    std::io::Read::read_to_string(&mut served, &mut log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    // Client: "connection status length"; server: "METHOD PATH CODE LENGTH".
    let printed: Vec<Vec<u64>> = out
        .lines()
        .map(|l| l.split(' ').map(|f| f.parse().unwrap()).collect())
        .collect();
    assert_eq!(printed.len(), 9, "{out}");
    assert_eq!(log.lines().count(), 9, "{log}");
    let want: Vec<(&str, &str, u64)> = paths
        .iter()
        .map(|p| match p.strip_prefix("POST") {
            Some(path) => ("POST", path, 200),
            None => ("GET", *p, if *p == "/hello" { 200 } else { 404 }),
        })
        .collect();
    for (method, path, code) in &want {
        let line = format!("{method} {path} {code}");
        assert_eq!(
            log.lines().filter(|l| l.starts_with(&line)).count(),
            3,
            "{log}"
        );
    }
    for (side, want_pid) in [("client", client_pid), ("server", server_pid)] {
        let mine = of_pids(&records, &[want_pid]);
        assert_eq!(mine.len(), 9, "{side}: {records:#?}\n{stats:?}");
        let mut flows: Vec<l7tap::core::FlowKey> = mine.iter().map(|r| r.flow).collect();
        flows.sort();
        flows.dedup();
        assert_eq!(flows.len(), 3, "{side}: three connections");
        for flow in flows {
            let on: Vec<&&L7Record> = mine.iter().filter(|r| r.flow == flow).collect();
            assert_eq!(on.len(), 3, "{side}: {on:#?}");
            for (r, (method, path, code)) in on.iter().zip(&want) {
                let at = format!("{side} {method} {path}");
                assert_eq!(comm(r), "python3", "{at}");
                assert_eq!(r.protocol, Protocol::Http1, "{at}");
                assert_eq!(s(&r.request_type), *method, "{at}");
                assert_eq!(s(&r.request_resource), *path, "{at}");
                assert_eq!(r.response_code.map(|c| c as u64), Some(*code), "{at}");
                let body = printed
                    .iter()
                    .find(|p| p[1] == *code && (*method == "POST") == (p[2] == 3000))
                    .map(|p| p[2]);
                assert_eq!(r.resp_len, body, "{at}");
                if *method == "POST" {
                    assert_eq!(r.req_len, Some(3000), "{at}");
                }
                assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
                assert_eq!(r.flow.server.port(), port, "{at}");
            }
        }
    }
    assert!(stats.get("tls_unbound_bound") >= 36, "{stats:?}");
    assert_eq!(stats.get("drop_parse_error_bytes"), 0, "{stats:?}");
}

/// HTTPS from a program with OpenSSL linked in statically (tests/live/static_tls_get.c, built
/// here against libssl.a): its SSL_write/SSL_read are its own, not the system libssl's, so
/// before only nginx's side was seen. Started after the capture, the program is looked at at
/// its exec, found to define SSL_write and SSL_read, and probed itself. Three GETs on one
/// keep-alive connection, checked against what the client printed and nginx logged.
#[test]
fn https_from_a_program_with_openssl_linked_in_both_sides() {
    if !programs(&["nginx", "openssl", "gcc"]) {
        return;
    }
    let port = 19690u16;
    let (ngx, dir) = nginx("static-ssl", port, Listen::Https);
    let bin = dir.join("static_tls_get");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(common::root().join("tests/live/static_tls_get.c"))
        .args([
            "-Wl,-Bstatic",
            "-lssl",
            "-lcrypto",
            "-Wl,-Bdynamic",
            "-lpthread",
            "-ldl",
        ])
        .status()
        .unwrap();
    assert!(
        built.success(),
        "static_tls_get.c builds against libssl.a (libssl-dev)"
    );
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/api/order", "/missing"];
    let mut client = Command::new(&bin)
        .arg(port.to_string())
        .args(paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Its exec is handled within a poll (20 ms) on an idle machine; CI runs these tests side by
    // side on two cores, so the capture thread gets a slice of that much later.
    sleep(Duration::from_secs(2));
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let stats = check_https_client_and_nginx(client, "client", live, ngx, &dir, &paths);
    assert!(stats.get("bpf_tls_libraries_extra") >= 1, "{stats:?}");
}

/// HTTPS from Node.js (tests/live/node_https_get.js) to nginx: Node runs OpenSSL through its
/// own BIO, so its plaintext is placed by the thread's ciphertext (as for asyncio), and a
/// Node.js build with OpenSSL linked in (nodejs.org's, NodeSource's) is probed itself at its
/// exec (Debian's links the system libssl). Three GETs on one keep-alive connection, checked
/// against what Node printed and nginx logged.
#[test]
fn https_from_node_both_sides() {
    if !programs(&["nginx", "openssl", "node"]) {
        return;
    }
    let port = 19790u16;
    let (ngx, dir) = nginx("node", port, Listen::Https);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/api/order", "/missing"];
    let mut client = Command::new("node")
        .arg(script("node_https_get.js"))
        .arg(port.to_string())
        .args(paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_secs(2)); // its exec is handled within a poll (see above)
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    check_https_client_and_nginx(client, "node", live, ngx, &dir, &paths);
}

/// HTTP/2 over TLS (ALPN h2: nginx and curl, the usual browser-to-server setup): plaintext
/// records from the OpenSSL probes on both sides; the handshake is counted as ciphertext and
/// nothing else is parsed or dropped.
#[test]
fn https_with_http2_both_sides() {
    if !programs(&["nginx", "curl", "openssl"]) {
        return;
    }
    let port = 19480u16;
    let (ngx, dir) = nginx("h2tls", port, Listen::H2Tls);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/missing", "/api/order"];
    let mut cmd = Command::new("curl");
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-sk", "--http2", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{http_version} %{num_connects}\\n")
            .arg(format!("https://127.0.0.1:{port}{p}"));
    }
    let (curl_pid, out) = run_client(&mut cmd);
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let log = nginx_log(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    // curl: "<status> <http version> <connects>".
    let printed: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(printed.len(), paths.len());
    assert!(printed.iter().all(|p| p[1] == "2"), "{printed:?}");
    assert_eq!(
        printed.iter().filter(|p| p[2] == "1").count(),
        1,
        "one connection"
    );
    for (side, pids) in [("curl", vec![curl_pid]), ("nginx", workers)] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let at = format!("{side} {}", paths[i]);
            assert_eq!(r.protocol, Protocol::Http2, "{at}");
            assert_eq!(s(&r.request_resource), paths[i], "{at}");
            assert_eq!(s(&r.request_resource), log[i]["uri"], "{at}");
            assert_eq!(s(&r.request_domain), log[i]["host"], "{at}");
            assert_eq!(
                r.response_code.map(|c| c.to_string()),
                Some(printed[i][0].clone()),
                "{at}"
            );
            assert_eq!(r.resp_len, log[i]["body_bytes_sent"].as_u64(), "{at}");
            assert!(!r.unpaired && !r.truncated && r.rrt_ns > 0, "{at}: {r:?}");
        }
    }
    assert!(stats.get("bpf_tls_ciphertext_bytes") > 0, "{stats:?}");
    assert_eq!(stats.get("drop_unparsed_bytes"), 0, "{stats:?}");
    assert_eq!(stats.get("parse_errors_http2"), 0, "{stats:?}");
    assert_eq!(
        stats.get("flows_created"),
        2,
        "the two plaintext streams: {stats:?}"
    );
}

/// HTTPS from Debian's Python (its ssl module calls OpenSSL's SSL_write_ex/SSL_read_ex, the
/// `_ex` uprobes; nginx uses SSL_write/SSL_read) on one keep-alive connection: plaintext
/// records on both sides, checked against what the client printed and nginx logged.
#[test]
fn https_from_python_through_the_openssl_ex_calls_both_sides() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3"]) {
        return;
    }
    let port = 18780u16;
    let (ngx, dir) = nginx("https-py", port, Listen::Https);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/api/order", "/missing"];
    let (client_pid, out) = run_client(
        Command::new("/usr/bin/python3")
            .arg(script("https_get.py"))
            .arg(port.to_string())
            .args(paths),
    );
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let printed = status_lines(&out);
    assert_eq!(printed.len(), paths.len());
    let log = nginx_log(&dir);
    assert_eq!(log.len(), paths.len());
    let _ = std::fs::remove_dir_all(&dir);
    for (side, pids) in [("python3", vec![client_pid]), ("nginx", workers.clone())] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let at = format!("{side} {}", paths[i]);
            assert_eq!(r.protocol, Protocol::Http1, "{at}");
            assert_eq!(s(&r.request_type), log[i]["method"], "{at}");
            assert_eq!(s(&r.request_resource), paths[i], "{at}");
            assert_eq!(s(&r.request_resource), log[i]["uri"], "{at}");
            assert_eq!(r.response_code, Some(printed[i].0), "{at}");
            assert_eq!(
                r.response_code.map(i64::from),
                log[i]["status"].as_i64(),
                "{at}"
            );
            assert!(!r.unpaired && !r.truncated && r.rrt_ns > 0, "{at}: {r:?}");
            assert_eq!(r.resp_len.map(|l| l >= printed[i].1), Some(true), "{at}");
        }
        assert!(
            mine.iter().all(|r| r.flow == mine[0].flow),
            "{side}: one connection"
        );
    }
    assert!(
        stats.get("bpf_tls_events") >= 4 * paths.len() as u64,
        "{stats:?}"
    );
    assert!(stats.get("bpf_tls_ciphertext_suppressed") > 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// HTTPS from an NSS client (libcurl's NSS build, Debian's libcurl3-nss, driven from Python
/// through ctypes: tests/live/nss_https_get.py) to nginx: NSS's plaintext through the NSPR
/// probes (`PR_Send`/`PR_Recv`), nginx's through OpenSSL's. Three GETs on one keep-alive
/// connection (the client checks libcurl's own connection count), one of a 210,000-byte file
/// read through a 1 KiB buffer: NSS hands most of each 16 KiB record over from its own
/// buffer, with no socket read inside the call, tied to the connection by the descriptor's
/// last socket. Both sides checked against what libcurl reported and nginx logged.
#[test]
fn https_from_an_nss_client_through_the_nspr_probes_both_sides() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3"]) {
        return;
    }
    if !l7tap_capture_bpf::LIBNSPR_CANDIDATES
        .iter()
        .any(|c| std::path::Path::new(c).exists())
        || !std::path::Path::new("/usr/lib/x86_64-linux-gnu/libcurl-nss.so.4").exists()
    {
        skip("libcurl3-nss (NSS, NSPR) is not installed");
        return;
    }
    let port = 18892u16;
    let (ngx, dir) = nginx("https-nss", port, Listen::Https);
    let paths = ["/index.html", "/large.txt", "/api/order"];
    // Started before the capture (NSS loaded and initialised), waiting for a line.
    let mut client =
        waiting_https_client("nss_https_get.py", port, &paths, &[("NSS_BUFFER", "1024")]);
    let pid = client.id();
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("libnss3"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the client loads NSS"
        );
        sleep(Duration::from_millis(20));
    }
    let Some(live) = Live::start(config(&[port])) else {
        let _ = client.kill();
        let _ = client.wait();
        return;
    };
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let stats = check_https_client_and_nginx(client, "python3", live, ngx, &dir, &paths);
    assert!(
        stats.get("bpf_tls_events") >= 4 * paths.len() as u64,
        "{stats:?}"
    );
}

/// HTTPS on a port the filter leaves out: the TLS library's plaintext is dropped in the kernel
/// with its socket (counted as filtered by port), not reported unbound for user space to tie to
/// whatever connection the thread last used. The capture's pid filter is on the client (a
/// Python client, OpenSSL's `_ex` calls), so other processes' TLS does not count here.
#[test]
fn https_on_an_unlisted_port_is_filtered_in_the_kernel() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3"]) {
        return;
    }
    let port = 18896u16;
    let (ngx, dir) = nginx("https-unlisted", port, Listen::Https);
    let paths = ["/index.html", "/api/order"];
    let mut client = waiting_https_client("https_get.py", port, &paths, &[]);
    let pid = client.id();
    let Some(live) = Live::start(BpfConfig {
        pids: vec![pid],
        ..config(&[1])
    }) else {
        let _ = client.kill();
        let _ = client.wait();
        return;
    };
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success());
    let (records, stats) = live.stop();
    drop(ngx);
    let printed = status_lines(&String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(printed.len(), paths.len(), "the client was served");
    assert!(records.is_empty(), "{records:#?}");
    assert_eq!(stats.get("bpf_tls_events"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_tls_no_socket"), 0, "{stats:?}");
    assert_eq!(stats.get("tls_unbound_dropped"), 0, "{stats:?}");
    // Each SSL call on the filtered socket (its syscalls, and its plaintext once more).
    assert!(stats.get("bpf_filtered_port") >= 4, "{stats:?}");
}

/// A Python HTTPS client in a mount namespace of its own where another libssl file is bind-
/// mounted over the system's path, as in a container with its own OpenSSL: the probes on the
/// system's libssl never fire for it (the probe is on the file, and this is another file).
/// Client A runs (libssl loaded, waiting) before the capture starts, which finds the copy in
/// its `/proc/PID/maps`; client B, with a second copy, is started after, and found when it
/// maps it (the kernel sees the name of the mount point, `libssl.so.3`, not the copy's). Each then makes three GETs on one keep-alive connection: both clients' records are
/// checked against what they printed and nginx logged.
#[test]
fn https_from_a_mount_namespace_with_its_own_libssl_both_sides() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3", "unshare", "mount"]) {
        return;
    }
    let Some(system) = l7tap_capture_bpf::LIBSSL_CANDIDATES
        .iter()
        .find(|c| std::path::Path::new(c).exists())
    else {
        skip("no system libssl.so.3");
        return;
    };
    let port = 18880u16;
    let (ngx, dir) = nginx("https-ns", port, Listen::Https);
    let paths = ["/index.html", "/api/order", "/missing"];
    // A client in its own mount namespace, with `copy` over the system's libssl, waiting for
    // a line on stdin once libssl is loaded.
    let client = |copy: &str| {
        let copy = dir.join(copy);
        std::fs::copy(system, &copy).unwrap();
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} {system} && exec /usr/bin/python3 {} {port} {}",
                copy.display(),
                script("https_get.py").display(),
                paths.join(" ")
            ))
            .env("WAIT_FOR_GO", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let t0 = Instant::now();
        let loaded = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .is_ok_and(|m| m.contains("libssl.so.3"))
        };
        while !loaded(pid) {
            assert!(t0.elapsed() < Duration::from_secs(20), "python loads ssl");
            sleep(Duration::from_millis(20));
        }
        let go = child.stdin.take().unwrap();
        (child, go, pid)
    };
    let (a, mut a_go, a_pid) = client("libssl-a.so.3");
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let (b, mut b_go, b_pid) = client("libssl-b.so.3");
    sleep(Duration::from_secs(2)); // B's copy is probed once the kernel reports its mapping
    let mut printed = Vec::new();
    for (child, go) in [(a, &mut a_go), (b, &mut b_go)] {
        go.write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        printed.extend(status_lines(&String::from_utf8_lossy(&out.stdout)));
    }
    let (records, stats) = live.stop();
    drop(ngx);
    let log = nginx_log(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(printed.len(), 2 * paths.len());
    assert_eq!(log.len(), 2 * paths.len());
    let context = format!("{records:#?}\n{stats:?}");
    for (k, pid) in [a_pid, b_pid].into_iter().enumerate() {
        let mine = of_pids(&records, &[pid]);
        assert!(mine.iter().all(|r| comm(r) == "python3"), "{mine:?}");
        let from = k * paths.len();
        let side = format!("client {k}");
        check_https_side(
            &side,
            &mine,
            &paths,
            &log[from..],
            &printed[from..],
            &context,
        );
    }
    assert!(stats.get("bpf_tls_libraries_extra") >= 2, "{stats:?}");
}

/// A private copy of libssl, found through `LD_LIBRARY_PATH` and loaded long after its program
/// started (Python imports `ssl`, which dlopens it, only on a line from the test): the kernel
/// program reports the mapping of a TLS library file l7tap has not looked at, whenever it
/// happens, and that file is probed. (Looking at each new program's maps once, shortly after
/// its exec, missed such a late load.) Three GETs, checked on the client's side against what
/// it printed and what nginx logged; nginx's side too.
#[test]
fn https_through_a_libssl_copy_loaded_late_both_sides() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3"]) {
        return;
    }
    let Some(system) = l7tap_capture_bpf::LIBSSL_CANDIDATES
        .iter()
        .find(|c| std::path::Path::new(c).exists())
    else {
        skip("no system libssl.so.3");
        return;
    };
    let port = 18890u16;
    let (ngx, dir) = nginx("https-late", port, Listen::Https);
    let libs = dir.join("private-libs");
    std::fs::create_dir_all(&libs).unwrap();
    let copy = libs.join("libssl.so.3");
    std::fs::copy(system, &copy).unwrap();
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/api/order", "/missing"];
    let mut client = Command::new("/usr/bin/python3")
        .arg(script("https_get.py"))
        .arg(port.to_string())
        .args(paths)
        .env("LATE_SSL", "1")
        .env("LD_LIBRARY_PATH", &libs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = client.id();
    let mut go = client.stdin.take().unwrap();
    let copy_loaded = || {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .is_ok_and(|m| m.contains(&*copy.to_string_lossy()))
    };
    // Well after its start (its maps were looked at 50 ms after its exec before).
    sleep(Duration::from_millis(500));
    assert!(!copy_loaded(), "libssl is loaded only on the first line");
    go.write_all(b"go\n").unwrap();
    let t0 = Instant::now();
    while !copy_loaded() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "python loads the copy"
        );
        sleep(Duration::from_millis(20));
    }
    // Probed within a poll on an idle machine; CI runs tests side by side on two cores.
    sleep(Duration::from_secs(2));
    go.write_all(b"go\n").unwrap();
    drop(go);
    let stats = check_https_client_and_nginx(client, "client", live, ngx, &dir, &paths);
    assert!(stats.get("bpf_mapped_events") >= 1, "{stats:?}");
    assert!(stats.get("bpf_tls_libraries_extra") >= 1, "{stats:?}");
}

/// A Python extension module with its own, renamed copy of libssl, as a wheel repaired by
/// auditwheel ships it (psycopg2-binary's `psycopg2_binary.libs/libssl-<hash>.so.3`): here
/// Debian's `_ssl` module made to load `libssl-1a2b3c4d.so.3` (patchelf: its NEEDED entry and
/// RUNPATH, the copy's SONAME) ahead of the standard one through PYTHONPATH. The client starts
/// after the capture, so the copy is found when it is mapped. Three GETs on one keep-alive
/// connection, both sides checked against what the client printed and nginx logged.
#[test]
fn https_from_python_with_a_renamed_bundled_libssl_both_sides() {
    if !programs(&["nginx", "openssl", "/usr/bin/python3", "patchelf"]) {
        return;
    }
    let Some(system) = l7tap_capture_bpf::LIBSSL_CANDIDATES
        .iter()
        .find(|c| std::path::Path::new(c).exists())
    else {
        skip("no system libssl.so.3");
        return;
    };
    let Ok(module) = Command::new("/usr/bin/python3")
        .args(["-c", "import _ssl; print(_ssl.__file__)"])
        .output()
    else {
        skip("python3 has no _ssl module");
        return;
    };
    let module = String::from_utf8_lossy(&module.stdout).trim().to_string();
    let port = 18900u16;
    let (ngx, dir) = nginx("https-wheel", port, Listen::Https);
    let (libs, mods) = (dir.join("wheel.libs"), dir.join("wheel"));
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::create_dir_all(&mods).unwrap();
    let copy = libs.join("libssl-1a2b3c4d.so.3");
    std::fs::copy(system, &copy).unwrap();
    let ssl_mod = mods.join(std::path::Path::new(&module).file_name().unwrap());
    std::fs::copy(&module, &ssl_mod).unwrap();
    // One change per patchelf run (0.14 mixes up its string table when given several).
    let patch = |args: &[&std::ffi::OsStr]| {
        let ok = Command::new("patchelf").args(args).status().unwrap();
        assert!(ok.success(), "patchelf {args:?}");
    };
    patch(&[
        "--set-soname".as_ref(),
        "libssl-1a2b3c4d.so.3".as_ref(),
        copy.as_os_str(),
    ]);
    patch(&[
        "--replace-needed".as_ref(),
        "libssl.so.3".as_ref(),
        "libssl-1a2b3c4d.so.3".as_ref(),
        ssl_mod.as_os_str(),
    ]);
    patch(&[
        "--set-rpath".as_ref(),
        libs.as_os_str(),
        ssl_mod.as_os_str(),
    ]);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/api/order", "/missing"];
    let mut client = Command::new("/usr/bin/python3")
        .arg(script("https_get.py"))
        .arg(port.to_string())
        .args(paths)
        .env("WAIT_FOR_GO", "1")
        .env("PYTHONPATH", &mods)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = client.id();
    let t0 = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.contains("libssl-1a2b3c4d.so.3"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "python loads the copy"
        );
        sleep(Duration::from_millis(20));
    }
    // Probed within a poll on an idle machine; CI runs tests side by side on two cores.
    sleep(Duration::from_secs(2));
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let stats = check_https_client_and_nginx(client, "client", live, ngx, &dir, &paths);
    assert!(stats.get("bpf_tls_libraries_extra") >= 1, "{stats:?}");
}

/// A program started again and again is looked at once: its first exec is reported, then the
/// kernel program knows the file and only counts its execs. A process execs a script 41 times
/// in a row (same pid, the capture's pid filter on it), each time through a copy of sh at a
/// path of its own (a file l7tap has not seen). Every exec is accounted for: reported, or
/// counted as a known program's.
#[test]
fn a_program_started_again_is_looked_at_once() {
    if !programs(&["sh", "sleep"]) {
        return;
    }
    let dir = scratch_dir("exec-chain");
    let sh = dir.join("sh-copy");
    std::fs::copy("/bin/sh", &sh).unwrap();
    let chain = dir.join("exec_chain.sh");
    let text = std::fs::read_to_string(script("exec_chain.sh")).unwrap();
    std::fs::write(
        &chain,
        text.replacen("#!/bin/sh", &format!("#!{}", sh.display()), 1),
    )
    .unwrap();
    std::fs::set_permissions(&chain, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Waits for a line, then execs the chain: 41 execs (arguments 40 down to 0) in this pid.
    let mut chain_proc = Command::new("sh")
        .arg("-c")
        .arg(format!("read x && exec {} 40", chain.display()))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = chain_proc.id();
    let Some(live) = Live::start(BpfConfig {
        pids: vec![pid],
        ..config(&[1])
    }) else {
        let _ = chain_proc.kill();
        let _ = chain_proc.wait();
        return;
    };
    chain_proc.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(chain_proc.wait().unwrap().success());
    let (_, stats) = live.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let reported = stats.get("bpf_exec_events");
    let known = stats.get("bpf_execs_of_known_programs");
    assert_eq!(reported + known, 41, "{stats:?}");
    // The first is reported; one more may be when l7tap is slow to look (CI's loaded cores).
    assert!((1..=2).contains(&reported), "{stats:?}");
}

/// HTTPS between a Go server and a Go client (tests/live/go_tls.go, built with Debian's Go):
/// crypto/tls is linked into the binary, so neither OpenSSL probe sees it. The server runs
/// before the capture starts, which finds its binary among the running processes and probes
/// crypto/tls.(*Conn).Write and Read (entries and every RET); the client is the same binary,
/// so it is probed too. One keep-alive connection: GETs, a 40,000-byte answer and a 3,000-byte
/// POST. Expectations: what the client printed, per request, on both sides.
#[test]
fn https_between_go_programs_through_crypto_tls_probes_both_sides() {
    go_tls_exchange(18990, true, false);
}

/// The same with the server started after the capture: its binary is found through the exec
/// event and probed before the client connects.
#[test]
fn a_go_program_started_after_the_capture_is_probed_at_exec() {
    go_tls_exchange(18995, false, false);
}

/// The same over HTTP/2 (Go's default over TLS): the 40,000-byte answer goes out in
/// full-size DATA frames, each written alone and cut by the 16 KiB snaplen by its 9-byte
/// header; they are skipped by length, so every answer's length is right on both sides.
#[test]
fn http2_between_go_programs_through_crypto_tls_probes_both_sides() {
    go_tls_exchange(18985, true, true);
}

fn go_tls_exchange(port: u16, server_first: bool, h2: bool) {
    if !programs(&["go", "openssl"]) {
        return;
    }
    let dir = scratch_dir(&format!("go-tls{port}"));
    let bin = dir.join("go_tls");
    let built = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(script("go_tls.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .status()
        .unwrap();
    assert!(built.success(), "go_tls.go builds");
    self_signed_cert(&dir);
    let start_server = || {
        let mut server = Proc(
            Command::new(&bin)
                .env("GO_TLS_H2", if h2 { "1" } else { "" })
                .arg("server")
                .arg(port.to_string())
                .arg(dir.join("cert.pem"))
                .arg(dir.join("key.pem"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut ready = [0u8; 6];
        std::io::Read::read_exact(server.0.stdout.as_mut().unwrap(), &mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        server
    };
    let (server, live) = if server_first {
        let server = start_server();
        let Some(live) = Live::start(config(&[port])) else {
            return;
        };
        (server, live)
    } else {
        let Some(live) = Live::start(config(&[port])) else {
            return;
        };
        let server = start_server();
        // The exec event reaches the reader at once (non-data events wake it); give the
        // probes a moment to be attached.
        sleep(Duration::from_millis(300));
        (server, live)
    };
    let paths = ["/a", "/large", "post:/p", "/b"];
    let (client_pid, out) = run_client(
        Command::new(&bin)
            .env("GO_TLS_H2", if h2 { "1" } else { "" })
            .arg("client")
            .arg(format!("https://127.0.0.1:{port}"))
            .args(paths),
    );
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let printed = status_lines(&out);
    assert_eq!(printed.len(), paths.len());
    for (side, pid) in [("client", client_pid), ("server", server_pid)] {
        let mine = of_pids(&records, &[pid]);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let (method, path) = match paths[i].strip_prefix("post:") {
                Some(p) => ("POST", p),
                None => ("GET", paths[i]),
            };
            let at = format!("{side} {path}");
            assert_eq!(comm(r), "go_tls", "{at}");
            let want = if h2 { Protocol::Http2 } else { Protocol::Http1 };
            assert_eq!(r.protocol, want, "{at}");
            assert_eq!(s(&r.request_type), method, "{at}");
            assert_eq!(s(&r.request_resource), path, "{at}");
            assert_eq!(r.response_code, Some(printed[i].0), "{at}");
            assert_eq!(r.resp_len, Some(printed[i].1), "{at}");
            assert_eq!(
                r.req_len.unwrap_or(0),
                if method == "POST" { 3000 } else { 0 }
            );
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
            assert_eq!(r.flow.server.port(), port, "{at}");
        }
        assert!(
            mine.iter().all(|r| r.flow == mine[0].flow),
            "{side}: one connection"
        );
    }
    // Plaintext from the probes; the connection's own bytes after the first plaintext are
    // not reported, and the handshake before it is counted as ciphertext, never parsed.
    assert!(
        stats.get("bpf_tls_events") >= 4 * paths.len() as u64,
        "{stats:?}"
    );
    assert!(stats.get("bpf_tls_ciphertext_suppressed") > 0, "{stats:?}");
    assert!(stats.get("bpf_tls_ciphertext_bytes") > 0, "{stats:?}");
    // (bpf_tls_no_socket is not asserted: it counts, before the port filter, the TLS calls
    // of every process this capture probes, the other tests' too: an OpenSSL session of
    // nginx or curl that began before this capture started has no socket known to it.)
    // This test's binary at least is probed (Go binaries of other tests running at once,
    // `go` itself among them, may be too).
    assert!(stats.get("bpf_go_tls_binaries") >= 1, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A keep-alive connection opened before the capture started (no connect or accept seen):
/// it is picked up at its first data syscall and its roles are inferred from the traffic, on
/// both sides; only the requests made after the start have records.
#[test]
fn a_connection_opened_before_the_capture_is_picked_up_both_sides() {
    if !programs(&["nginx", "python3"]) {
        return;
    }
    let port = 19180u16;
    let (ngx, dir) = nginx("preopened", port, Listen::Http);
    let paths = ["/api/order", "/missing"];
    // (In a `Proc`: killed if the test stops early.)
    let mut client = Proc(
        Command::new("python3")
            .arg(script("keepalive_client.py"))
            .arg(port.to_string())
            .args(paths)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let client_pid = client.0.id();
    let stdout = client.0.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let ready = lines.next().unwrap().unwrap();
    let local_port: u16 = ready.strip_prefix("ready ").unwrap().parse().unwrap();
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    client.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let printed: Vec<(i32, u64)> = lines
        .map(|l| {
            let l = l.unwrap();
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    assert!(client.0.wait().unwrap().success());
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(printed.len(), paths.len());
    for (side, pids) in [("python3", vec![client_pid]), ("nginx", workers.clone())] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let at = format!("{side} {}", paths[i]);
            assert_eq!(s(&r.request_type), "GET", "{at}");
            assert_eq!(s(&r.request_resource), paths[i], "{at}");
            assert_eq!(r.response_code, Some(printed[i].0), "{at}");
            assert!(!r.unpaired && !r.truncated && r.rrt_ns > 0, "{at}: {r:?}");
            assert_eq!(r.resp_len.map(|l| l >= printed[i].1), Some(true), "{at}");
            // Oriented from the traffic: the client is the side that sent the requests.
            assert_eq!(r.flow.server.port(), port, "{at}");
            assert_eq!(r.flow.client.port(), local_port, "{at}");
        }
    }
}

/// HTTP over TCP on the IPv6 loopback: curl to nginx on [::1], keep-alive; both sides'
/// records carry the IPv6 addresses (read from the kernel socket) and match curl's output.
#[test]
fn http_over_ipv6_both_sides() {
    if !programs(&["nginx", "curl"]) {
        return;
    }
    let port = 19280u16;
    let (ngx, dir) = nginx("ipv6", port, Listen::Http6);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/missing"];
    let mut cmd = Command::new("curl");
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-sg", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{size_download} %{num_connects}\\n")
            .arg(format!("http://[::1]:{port}{p}"));
    }
    let curl = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let curl_pid = curl.id();
    let out = curl.wait_with_output().unwrap();
    assert!(out.status.success());
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let _ = std::fs::remove_dir_all(&dir);
    let printed = curl_lines(&out.stdout);
    assert_eq!(
        printed.iter().map(|p| p.2).sum::<u32>(),
        1,
        "one connection"
    );
    let server: std::net::SocketAddr = format!("[::1]:{port}").parse().unwrap();
    for (side, pids) in [("curl", vec![curl_pid]), ("nginx", workers.clone())] {
        let mine = of_pids(&records, &pids);
        assert_eq!(mine.len(), paths.len(), "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let at = format!("{side} {}", paths[i]);
            assert_eq!(s(&r.request_resource), paths[i], "{at}");
            assert_eq!(r.response_code, Some(i32::from(printed[i].0)), "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
            assert_eq!(r.flow.server, server, "{at}");
            assert_eq!(r.flow.client.ip().to_string(), "::1", "{at}");
        }
    }
}

/// nginx with `sendfile on` (the usual production setting): response bodies leave through
/// sendfile(2) and are never copied, only counted. The records are still exact (status, path,
/// pairing on the keep-alive connection), and each response ends when it was sent: the client
/// pauses 300 ms after each response, and the server side's response must end with the
/// client's (not when the next request or the close arrives, 300 ms later; the 50 ms allowed
/// cover scheduling between a syscall and its exit tracepoint on a busy machine).
#[test]
fn nginx_with_sendfile_both_sides() {
    if !programs(&["nginx", "python3"]) {
        return;
    }
    let port = 19380u16;
    let (ngx, dir) = nginx("sendfile", port, Listen::HttpSendfile);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let paths = ["/index.html", "/large.txt", "/missing", "/index.html"];
    let (client_pid, out) = run_client(
        Command::new("python3")
            .arg(script("paced_get.py"))
            .args([&port.to_string(), "0.3"])
            .args(paths),
    );
    let (records, stats) = live.stop();
    let workers = children(ngx.0.id());
    drop(ngx);
    let _ = std::fs::remove_dir_all(&dir);
    let printed = status_lines(&out);
    assert_eq!(printed.len(), paths.len());
    let side = |client: bool| -> Vec<&L7Record> {
        records
            .iter()
            .filter(|r| {
                if client {
                    pid(r) == client_pid
                } else {
                    workers.contains(&pid(r))
                }
            })
            .collect()
    };
    let (client, server) = (side(true), side(false));
    assert_eq!(client.len(), paths.len(), "{records:#?}\n{stats:?}");
    assert_eq!(server.len(), paths.len(), "{records:#?}\n{stats:?}");
    for (i, (c, sv)) in client.iter().zip(&server).enumerate() {
        let at = paths[i];
        for r in [c, sv] {
            assert_eq!(s(&r.request_resource), paths[i], "{at}");
            assert_eq!(r.response_code, Some(printed[i].0), "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
        }
        // Static files went out by sendfile: the server side saw their bodies only as a
        // byte count (the response length is still the whole), flagged truncated.
        if printed[i].0 == 200 {
            assert!(sv.truncated, "{at}");
            assert_eq!(sv.resp_len.map(|l| l >= printed[i].1), Some(true), "{at}");
        }
        assert!(
            sv.end_ns < c.end_ns + 50_000_000,
            "{at}: the server's response ends with the client's: {sv:?} {c:?}"
        );
    }
    assert!(stats.get("bpf_stream_gap_bytes") > 0, "{stats:?}");
}

/// A redis-server on `port` (no persistence), accepting connections.
fn redis_server(port: u16) -> Proc {
    let server = Proc(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    wait_port(port);
    server
}

#[test]
fn redis_cli_against_redis_server_both_sides() {
    if !programs(&["redis-server", "redis-cli"]) {
        return;
    }
    let port = 16479u16;
    let server = redis_server(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let commands = [
        "SET live:k hello",
        "GET live:k",
        "INCR live:k",
        "DEL live:k",
    ];
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = cli.id();
    cli.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", commands.join("\n")).as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty()) // redis-cli follows an error with an empty line
        .map(str::to_string)
        .collect();
    assert_eq!(printed.len(), commands.len(), "{printed:?}");

    for side in ["redis-cli", "redis-server"] {
        let mine: Vec<&L7Record> = records
            .iter()
            .filter(|r| comm(r) == side && r.protocol == Protocol::Redis)
            .collect();
        // redis-cli sends COMMAND DOCS first on an interactive-capable session; only the
        // user's commands are compared, in order.
        let user: Vec<&&L7Record> = mine
            .iter()
            .filter(|r| s(&r.request_resource).contains("live:k"))
            .collect();
        assert_eq!(user.len(), commands.len(), "{side}: {mine:#?}\n{stats:?}");
        for (i, r) in user.iter().enumerate() {
            assert_eq!(s(&r.request_resource), commands[i], "{side} {i}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}");
            if let Some(err) = printed[i].strip_prefix("ERR ") {
                assert_eq!(r.response_status, ResponseStatus::ServerError, "{side} {i}");
                assert_eq!(
                    s(&r.response_exception),
                    format!("-ERR {err}"),
                    "{side} {i}"
                );
            } else {
                assert_eq!(
                    r.response_status,
                    ResponseStatus::Ok,
                    "{side} {i}: {mine:#?}"
                );
            }
            if side == "redis-cli" {
                assert_eq!(pid(r), cli_pid);
            } else {
                assert_eq!(pid(r), server_pid);
            }
        }
    }
}

/// Values larger than the 16 KiB snaplen: redis-cli SETs a 40,000-byte value (one write, cut
/// by the snaplen), GETs it back (a reply cut the same way on the server's side), then a small
/// key. The cut command and reply are reported truncated and skipped by their RESP lengths,
/// so every exchange pairs and the next one parses. Expectations: redis-cli's output, and the
/// reply's length from RESP itself (`$40000\r\n` + the value + `\r\n`).
#[test]
fn redis_values_larger_than_the_snaplen_both_sides() {
    if !programs(&["redis-server", "redis-cli"]) {
        return;
    }
    let port = 16489u16;
    let server = redis_server(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let value = "v".repeat(40_000);
    let commands = [
        format!("SET live:big {value}"),
        "GET live:big".to_string(),
        "SET live:small s".to_string(),
        "GET live:small".to_string(),
    ];
    let mut cli = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", commands.join("\n")).as_bytes())
        .unwrap();
    let out = cli.wait_with_output().unwrap();
    let (records, stats) = live.stop();
    drop(server);
    let printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(printed, ["OK", value.as_str(), "OK", "s"]);
    let big_reply = format!("${}\r\n", value.len()).len() + value.len() + 2;
    for side in ["redis-cli", "redis-server"] {
        let user: Vec<&L7Record> = records
            .iter()
            .filter(|r| comm(r) == side && s(&r.request_resource).contains("live:"))
            .collect();
        assert_eq!(user.len(), commands.len(), "{side}: {user:#?}\n{stats:?}");
        let at = |i: usize| format!("{side} {i}");
        assert_eq!(s(&user[0].request_type), "SET", "{}", at(0));
        assert!(s(&user[0].request_resource).starts_with("SET live:big vvv"));
        assert!(user[0].truncated, "{}: the command was cut", at(0));
        assert_eq!(s(&user[1].request_resource), "GET live:big");
        assert_eq!(user[1].resp_len, Some(big_reply as u64), "{}", at(1));
        assert_eq!(s(&user[2].request_resource), commands[2]);
        assert_eq!(s(&user[3].request_resource), commands[3]);
        assert_eq!(user[3].resp_len, Some(b"$1\r\ns\r\n".len() as u64));
        for (i, r) in user.iter().enumerate() {
            assert!(!r.unpaired && r.rrt_ns > 0, "{}: {r:?}", at(i));
            assert_eq!(r.response_status, ResponseStatus::Ok, "{}", at(i));
        }
    }
    // (redis-cli's COMMAND DOCS at the start is answered with a nested reply of several
    // hundred KiB, cut by the snaplen more than once: walking the rest of a nested reply
    // cannot cross a second gap, so that reply's tail is resynchronised over; the user's
    // commands come after the next turn.)
    assert_eq!(stats.get("parse_errors_redis"), 0, "{stats:?}");
}

/// DNS over UDP, both sides: dig and a client on an unconnected socket (sendto/recvfrom: the
/// peer is in user memory, not in the socket) against dnsmasq (recvmsg/sendmsg with
/// msg_name). Expected values are what the clients printed; the port filter is on, so an
/// unconnected socket's traffic only passes on the peer read from the call.
#[test]
fn dns_over_udp_from_dig_and_an_unconnected_socket_both_sides() {
    if !programs(&["dnsmasq", "dig", "python3"]) {
        return;
    }
    let port = 15355u16;
    let server = Proc(
        Command::new("dnsmasq")
            .args(["--no-daemon", &format!("--port={port}")])
            .args(["--listen-address=127.0.0.1,::1", "--bind-interfaces"])
            .args(["--no-resolv", "--no-hosts", "--local=/l7tap.test/"])
            .args(["--host-record=shop.l7tap.test,10.1.2.3,fd00::3"])
            .args(["--txt-record=info.l7tap.test,hello dns"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts"),
    );
    wait_port(port); // dnsmasq answers on TCP too; UDP is ready with it
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let queries = [
        ("shop.l7tap.test", "A"),
        ("missing.l7tap.test", "A"),
        ("info.l7tap.test", "TXT"),
    ];
    let mut digs = Vec::new();
    for (name, qtype) in queries {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+noall", "+answer"])
            .args(["+comments", "+tries=1", name, qtype])
            .output()
            .unwrap();
        digs.push((
            name,
            qtype,
            DigAnswer::parse(&String::from_utf8_lossy(&out.stdout)),
        ));
    }
    // (id, name, over IPv6)
    let unconnected = [
        (0x4c37u16, "shop.l7tap.test", false),
        (0x4c38, "missing.l7tap.test", false),
        (0x4c39, "shop.l7tap.test", true),
    ];
    let mut sent = Vec::new();
    for (id, name, v6) in unconnected {
        let (_, text) = run_client(
            Command::new("python3")
                .arg(script("dns_sendto.py"))
                .args([&port.to_string(), name, &id.to_string()])
                .args(if v6 { &["6"][..] } else { &[] }),
        );
        let f: Vec<String> = text.split(' ').map(|w| w.trim().to_string()).collect();
        assert_eq!(f.len(), 5, "{text}");
        sent.push((name, v6, f));
    }
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    let dns: Vec<&L7Record> = records
        .iter()
        .filter(|r| r.protocol == Protocol::Dns)
        .collect();
    // Each query's two records: the server's (dnsmasq) and the client's, on one flow.
    let sides = |id: u64, server_ip: &str| -> (&L7Record, &L7Record) {
        let of = |server: bool| {
            let found: Vec<&&L7Record> = dns
                .iter()
                .filter(|r| r.request_id == Some(id) && (pid(r) == server_pid) == server)
                .collect();
            assert_eq!(
                found.len(),
                1,
                "id {id} server {server}: {dns:#?}\n{stats:?}"
            );
            *found[0]
        };
        let (srv, cli) = (of(true), of(false));
        assert_eq!(comm(srv), "dnsmasq");
        for r in [srv, cli] {
            assert_eq!(r.flow.l4, L4::Udp, "{r:?}");
            assert_eq!(
                r.flow.server,
                format!("{server_ip}:{port}")
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
            );
            assert!(!r.unpaired && r.rrt_ns > 0, "{r:?}");
        }
        assert_eq!(srv.flow.client, cli.flow.client, "both sides see one flow");
        (srv, cli)
    };
    for (name, qtype, dig) in &digs {
        let (code, class) = dig.code();
        for r in <[&L7Record; 2]>::from(sides(dig.id, "127.0.0.1")) {
            assert_eq!(s(&r.request_resource), *name);
            assert_eq!(s(&r.request_type), *qtype);
            assert_eq!(r.response_code, Some(code), "{name}");
            assert_eq!(r.response_status, class, "{name}");
            assert_eq!(s(&r.response_result), dig.answers.join("; "), "{name}");
        }
    }
    // What the client printed: local port, id, rcode, address, TTL.
    for (name, v6, f) in &sent {
        let (srv, cli) = sides(
            f[1].parse().unwrap(),
            if *v6 { "[::1]" } else { "127.0.0.1" },
        );
        assert_eq!(comm(cli), "python3");
        assert_eq!(
            cli.flow.client.port(),
            f[0].parse::<u16>().unwrap(),
            "bound port"
        );
        for r in [srv, cli] {
            assert_eq!(s(&r.request_resource), **name);
            assert_eq!(r.response_code, Some(f[2].parse().unwrap()));
            let answer = if f[3].is_empty() {
                String::new()
            } else {
                format!("A={} TTL={}", f[3], f[4])
            };
            assert_eq!(s(&r.response_result), answer);
        }
    }
    assert_eq!(stats.get("records_unpaired"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A network namespace of the test's own, with loopback up and, for `ip netns exec`, its own
/// `/etc/resolv.conf` (`/etc/netns/NAME/resolv.conf`); removed when dropped.
struct Netns(String);

impl Netns {
    fn create(name: &str, resolv_conf: &str) -> Option<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        if !ok(Command::new("ip").args(["netns", "add", name]))
            || !ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))
        {
            skip("cannot create a network namespace (`ip netns add` needs root)");
            return None;
        }
        let ns = Netns(name.to_string());
        let dir = PathBuf::from("/etc/netns").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), resolv_conf).unwrap();
        Some(ns)
    }

    /// `cmd args...` inside the namespace.
    fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, cmd]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.0));
    }
}

/// The C library's own resolver: `getent ahosts` asks for A and AAAA at once with one
/// `sendmmsg` of two datagrams on a connected socket (glibc's default; seen with strace) and
/// reads the answers with `recvfrom`. dnsmasq answers on port 53 of a network namespace made
/// for the test, whose resolv.conf points at it. Expectation: the addresses getent printed,
/// and "not found" (its exit code 2) for a name dnsmasq does not know.
#[test]
fn glibc_resolver_sendmmsg_in_a_network_namespace_both_sides() {
    if !programs(&["dnsmasq", "getent", "ip"]) {
        return;
    }
    let Some(ns) = Netns::create(
        "l7tap-resolver",
        "nameserver 127.0.0.1\noptions attempts:1\n",
    ) else {
        return;
    };
    let server = Proc(
        ns.command("dnsmasq")
            .args(["--no-daemon", "--port=53", "--listen-address=127.0.0.1"])
            .args(["--bind-interfaces", "--no-resolv", "--no-hosts"])
            .args([
                "--local=/l7tap.test/",
                "--host-record=shop.l7tap.test,10.1.2.3,fd00::3",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts"),
    );
    // Ready when it answers (inside the namespace: the host's port checks cannot see it).
    let lookup = |name: &str| {
        ns.command("getent")
            .args(["ahosts", name])
            .output()
            .unwrap()
    };
    let t = Instant::now();
    while !lookup("shop.l7tap.test").status.success() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "dnsmasq did not answer"
        );
        sleep(Duration::from_millis(50));
    }
    let Some(live) = Live::start(config(&[53])) else {
        return;
    };
    let found = lookup("shop.l7tap.test");
    let missing = lookup("missing.l7tap.test");
    let (records, stats) = live.stop();
    let dnsmasq = children(server.0.id())
        .into_iter()
        .chain([server.0.id()])
        .collect::<Vec<_>>();
    drop(server);
    // What getent printed: each address with its socket types; exit 2 is "not found".
    let printed: std::collections::BTreeSet<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(missing.status.code(), Some(2), "getent: not found");
    let dns: Vec<&L7Record> = records
        .iter()
        .filter(|r| r.protocol == Protocol::Dns && r.flow.server.port() == 53)
        .filter(|r| comm(r) == "getent" || dnsmasq.contains(&pid(r)))
        .collect();
    for (name, qtype, code) in [
        ("shop.l7tap.test", "A", 0),
        ("shop.l7tap.test", "AAAA", 0),
        ("missing.l7tap.test", "A", 3),
        ("missing.l7tap.test", "AAAA", 3),
    ] {
        let of: Vec<&&L7Record> = dns
            .iter()
            .filter(|r| s(&r.request_resource) == name && s(&r.request_type) == qtype)
            .collect();
        assert_eq!(
            of.len(),
            2,
            "{name} {qtype}: one record per side\n{dns:#?}\n{stats:?}"
        );
        let sides: Vec<String> = of.iter().map(|r| comm(r)).collect();
        assert!(sides.contains(&"getent".to_string()), "{sides:?}");
        assert!(sides.contains(&"dnsmasq".to_string()), "{sides:?}");
        assert_eq!(
            of[0].request_id, of[1].request_id,
            "the same query on both sides"
        );
        for r in of {
            assert!(!r.unpaired && r.rrt_ns > 0, "{r:?}");
            assert_eq!(r.response_code, Some(code), "{r:?}");
            if code == 0 {
                // "A=10.1.2.3 TTL=0": the address is one getent printed.
                let answer = s(&r.response_result);
                let addr = answer
                    .split_whitespace()
                    .next()
                    .and_then(|a| a.split_once('='))
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default();
                assert!(printed.contains(&addr), "{answer} not in {printed:?}");
            }
        }
    }
    assert_eq!(printed.len(), 2, "{printed:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A DNS server that reads with recvmmsg(2) and answers with sendmmsg(2) on one unconnected
/// socket (as NSD and Knot do; built from tests/live/mmsg_dns.c with gcc), queried by six
/// dig processes at once: each message of a batch has its own peer (`msg_name`), and each
/// record must carry it. Expectations: what dig printed (id, status) and what the server
/// printed (id, client port) per answer.
#[test]
fn recvmmsg_and_sendmmsg_server_with_parallel_dig_clients_both_sides() {
    if !programs(&["gcc", "dig"]) {
        return;
    }
    let port = 15356u16;
    let bin = scratch_dir("mmsg").join("mmsg_dns");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(common::root().join("tests/live/mmsg_dns.c"))
        .status()
        .unwrap();
    assert!(built.success(), "mmsg_dns.c builds");
    let names: Vec<String> = (0..6).map(|i| format!("q{i}.l7tap.test")).collect();
    let mut server = Proc(
        Command::new(&bin)
            .args([&port.to_string(), &names.len().to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    sleep(Duration::from_millis(200)); // bound before any query (UDP: nothing to wait on)
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let digs: Vec<(String, Child)> = names
        .iter()
        .map(|n| {
            let child = Command::new("dig")
                .args(["@127.0.0.1", "-p", &port.to_string(), "+noall", "+comments"])
                .args(["+tries=1", "+time=5", n, "A"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (n.clone(), child)
        })
        .collect();
    let mut asked = Vec::new();
    for (name, child) in digs {
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "dig {name}");
        asked.push((
            name,
            pid,
            DigAnswer::parse(&String::from_utf8_lossy(&out.stdout)),
        ));
    }
    let server_pid = server.0.id();
    let mut printed = String::new();
    std::io::Read::read_to_string(server.0.stdout.as_mut().unwrap(), &mut printed).unwrap();
    let _ = server.0.wait();
    let (records, stats) = live.stop();
    // "id client_port" per answer, as the server printed them.
    let answered: std::collections::HashMap<u64, u16> = printed
        .lines()
        .map(|l| {
            let (id, port) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), port.parse().unwrap())
        })
        .collect();
    assert_eq!(answered.len(), names.len(), "{printed}");
    for (name, dig_pid, dig) in &asked {
        assert_eq!(dig.status, "NXDOMAIN", "{name}");
        let client_port = answered[&dig.id];
        for want_pid in [server_pid, *dig_pid] {
            let mine: Vec<&L7Record> = of_pids(&records, &[want_pid])
                .into_iter()
                .filter(|r| r.request_id == Some(dig.id))
                .collect();
            assert_eq!(
                mine.len(),
                1,
                "{name} pid {want_pid}: {records:#?}\n{stats:?}"
            );
            let r = mine[0];
            assert_eq!(r.protocol, Protocol::Dns);
            assert_eq!(s(&r.request_resource), *name);
            assert_eq!(s(&r.request_type), "A");
            assert_eq!(r.response_code, Some(3), "{name}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{r:?}");
            assert_eq!(r.flow.server.port(), port);
            assert_eq!(r.flow.client.port(), client_port, "the message's own peer");
        }
    }
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A DNS server that takes 40 queries in one recvmmsg and answers them with one sendmmsg (as
/// NSD does, up to 100 per call), and a client that sends the 40 one after the other from one
/// socket (tests/live/dns_burst.py). Every message of the batch is a record on both sides,
/// each with its own peer; before, the kernel program stopped at the 8th message of a call
/// (and counted the rest in `bpf_mmsg_messages_cut`). Expectations: the ids and codes the
/// client printed and the ids the server printed.
#[test]
fn a_batch_of_40_datagrams_in_one_recvmmsg_and_sendmmsg_both_sides() {
    if !programs(&["gcc", "python3"]) {
        return;
    }
    let port = 15357u16;
    let count = 40;
    let bin = scratch_dir("mmsg40").join("mmsg_dns");
    let built = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(common::root().join("tests/live/mmsg_dns.c"))
        .status()
        .unwrap();
    assert!(built.success(), "mmsg_dns.c builds");
    let mut server = Proc(
        Command::new(&bin)
            .args([port.to_string(), count.to_string(), count.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    sleep(Duration::from_millis(200)); // bound before any query
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let (client_pid, out) = run_client(
        Command::new("python3")
            .arg(script("dns_burst.py"))
            .args([port.to_string(), count.to_string()]),
    );
    let server_pid = server.0.id();
    let mut printed = String::new();
    std::io::Read::read_to_string(server.0.stdout.as_mut().unwrap(), &mut printed).unwrap();
    let _ = server.0.wait();
    let (records, stats) = live.stop();
    // "id rcode" per answer, as the client printed them; "id port" as the server did.
    let answers: Vec<(u64, i32)> = out
        .lines()
        .map(|l| {
            let (id, rcode) = l.split_once(' ').unwrap();
            (id.parse().unwrap(), rcode.parse().unwrap())
        })
        .collect();
    assert_eq!(answers.len(), count);
    assert_eq!(printed.lines().count(), count, "{printed}");
    for (side, want_pid) in [("server", server_pid), ("client", client_pid)] {
        let mine = of_pids(&records, &[want_pid]);
        assert_eq!(mine.len(), count, "{side}: {records:#?}\n{stats:?}");
        for &(id, rcode) in &answers {
            let r = mine
                .iter()
                .find(|r| r.request_id == Some(id))
                .unwrap_or_else(|| panic!("{side}: id {id}"));
            assert_eq!(r.protocol, Protocol::Dns);
            assert_eq!(s(&r.request_resource), format!("q{id}.burst.l7tap.test"));
            assert_eq!(r.response_code, Some(rcode), "{side} {id}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {id}: {r:?}");
        }
    }
    assert_eq!(stats.get("bpf_mmsg_messages_cut"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A mosquitto broker on `port` (anonymous, no persistence), stopped when dropped.
fn mosquitto(port: u16) -> Proc {
    let dir = scratch_dir(&format!("mqtt{port}"));
    let conf = dir.join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let broker = Proc(
        Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    broker
}

/// A PUBLISH larger than the 16 KiB snaplen: mosquitto_pub sends a 40,000-byte message and
/// then a small one on one connection (QoS 1, `-l`: a message per line). The cut PUBLISH is
/// reported from what arrived (topic, packet id), skipped by its length, and pairs with its
/// PUBACK; the next one parses whole. Expectations: the messages given to mosquitto_pub.
#[test]
fn mqtt_publish_larger_than_the_snaplen_both_sides() {
    if !programs(&["mosquitto", "mosquitto_pub"]) {
        return;
    }
    let port = 11894u16;
    let broker = mosquitto(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let big = "b".repeat(40_000);
    let mut publ = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1"])
        .args(["-t", "live/big", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pub_pid = publ.id();
    publ.stdin
        .take()
        .unwrap()
        .write_all(format!("{big}\nsmall\n").as_bytes())
        .unwrap();
    assert!(publ.wait().unwrap().success());
    let (records, stats) = live.stop();
    let broker_pid = broker.0.id();
    drop(broker);
    for (side, p) in [("mosquitto_pub", pub_pid), ("mosquitto", broker_pid)] {
        let publishes: Vec<&L7Record> = records
            .iter()
            .filter(|r| pid(r) == p && s(&r.request_type) == "PUBLISH")
            .collect();
        let at = format!("{side}: {publishes:#?}\n{stats:?}");
        assert_eq!(publishes.len(), 2, "{at}");
        for r in &publishes {
            assert_eq!(s(&r.request_resource), "live/big", "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}");
        }
        // "topic" + packet id + payload, in the remaining length.
        let fixed = 2 + "live/big".len() + 2;
        assert_eq!(
            publishes[0].req_len,
            Some((fixed + big.len()) as u64),
            "{at}"
        );
        assert_eq!(
            publishes[1].req_len,
            Some((fixed + "small".len()) as u64),
            "{at}"
        );
        assert!(!publishes[1].truncated, "{at}");
    }
    assert_eq!(stats.get("parse_errors_mqtt"), 0, "{stats:?}");
}

/// mosquitto with mosquitto_sub and three mosquitto_pub (QoS 0, 1 and 2; MQTT 3.1.1 and 5):
/// every process's records, checked against the client ids and versions given, and against
/// what the subscriber printed.
#[test]
fn mosquitto_publishers_and_subscriber_all_sides() {
    if !programs(&["mosquitto", "mosquitto_sub", "mosquitto_pub"]) {
        return;
    }
    let port = 11884u16;
    let broker = mosquitto(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let p = port.to_string();
    // (stdbuf: line-buffered output through the pipe, so "Subscribed" arrives when printed.)
    let mut sub = Command::new("stdbuf")
        .args(["-oL", "mosquitto_sub"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-i",
            "l7tap-sub",
            "-t",
            "plant/+/temp",
        ])
        // -d: debug lines ("Client l7tap-sub received SUBACK", "Subscribed (mid: 1): 1")
        // around the messages; -W 10 bounds its life.
        .args(["-q", "1", "-v", "-d", "-C", "3", "-W", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sub_pid = sub.id();
    let mut sub_out = std::io::BufReader::new(sub.stdout.take().unwrap());
    // Publish once the broker has the subscription (it said so; bounded by -W).
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut sub_out, &mut line).unwrap() > 0
        && !line.starts_with("Subscribed")
    {
        line.clear();
    }
    assert!(
        line.starts_with("Subscribed"),
        "mosquitto_sub never subscribed"
    );
    // (client id, topic, QoS, payload, MQTT 5?)
    let pubs = [
        ("l7tap-pub-a", "plant/a/temp", "0", "21.5", false),
        ("l7tap-pub-b", "plant/b/temp", "1", "22.0", false),
        ("l7tap-pub-c", "plant/c/temp", "2", "23.5", true),
    ];
    let mut pub_pids = Vec::new();
    for (id, topic, qos, msg, v5) in pubs {
        let mut c = Command::new("mosquitto_pub");
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-i",
            id,
            "-t",
            topic,
            "-q",
            qos,
            "-m",
            msg,
        ]);
        if v5 {
            c.args(["-V", "mqttv5"]);
        }
        let child = c.spawn().unwrap();
        pub_pids.push(child.id());
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut sub_out, &mut rest).unwrap();
    let st = sub.wait().unwrap();
    assert!(st.success(), "mosquitto_sub: {st:?}: {rest}");
    let (records, stats) = live.stop();
    let broker_pid = broker.0.id();
    drop(broker);
    // The messages: the lines that are not debug output.
    let printed: Vec<&str> = rest.lines().filter(|l| !l.starts_with("Client ")).collect();
    assert_eq!(
        printed,
        pubs.map(|(_, t, _, m, _)| format!("{t} {m}")),
        "what the subscriber got"
    );
    let of = |p: u32| -> Vec<&L7Record> {
        records
            .iter()
            .filter(|r| pid(r) == p && r.protocol == Protocol::Mqtt)
            .collect()
    };
    let kind = |rs: &[&L7Record], t: &str| -> Vec<(String, String)> {
        rs.iter()
            .filter(|r| s(&r.request_type) == t)
            .map(|r| (s(&r.request_domain), s(&r.request_resource)))
            .collect()
    };
    let connect = |rs: &[&L7Record], id: &str, version: &str| {
        let c: Vec<&&L7Record> = rs
            .iter()
            .filter(|r| s(&r.request_type) == "CONNECT" && s(&r.request_domain) == id)
            .collect();
        assert_eq!(c.len(), 1, "{id}: {rs:#?}");
        assert_eq!(s(&c[0].version), version, "{id}");
        assert_eq!(c[0].response_code, Some(0), "{id}: accepted");
        assert!(!c[0].unpaired && c[0].rrt_ns > 0, "{id}");
    };
    let broker_side = of(broker_pid);
    // The subscriber: its CONNECT, its SUBSCRIBE granted QoS 1, a PUBLISH per message.
    let subs = of(sub_pid);
    connect(&subs, "l7tap-sub", "3.1.1");
    connect(&broker_side, "l7tap-sub", "3.1.1");
    for side in [&subs, &broker_side] {
        let sr: Vec<&&L7Record> = side
            .iter()
            .filter(|r| s(&r.request_type) == "SUBSCRIBE")
            .collect();
        assert_eq!(sr.len(), 1, "{side:#?}");
        assert_eq!(s(&sr[0].request_resource), "plant/+/temp");
        assert_eq!(sr[0].response_code, Some(1), "granted QoS 1, as -q 1 asked");
    }
    let delivered: Vec<String> = kind(&subs, "PUBLISH").into_iter().map(|x| x.1).collect();
    assert_eq!(delivered, pubs.map(|p| p.1.to_string()), "{subs:#?}");
    for ((id, topic, qos, _, v5), p) in pubs.iter().zip(&pub_pids) {
        let mine = of(*p);
        let version = if *v5 { "5" } else { "3.1.1" };
        connect(&mine, id, version);
        connect(&broker_side, id, version);
        let published = kind(&mine, "PUBLISH");
        assert_eq!(published.len(), 1, "{id}: {mine:#?}");
        assert_eq!(published[0].1, *topic, "{id}");
        // The broker sees it twice: from the publisher and on its way to the subscriber.
        let at_broker = kind(&broker_side, "PUBLISH");
        assert_eq!(
            at_broker.iter().filter(|x| x.1 == *topic).count(),
            2,
            "{topic}: {broker_side:#?}"
        );
        if *qos != "0" {
            // Acknowledged (PUBACK for QoS 1, PUBREC for QoS 2), paired by packet id.
            let r = mine
                .iter()
                .find(|r| s(&r.request_type) == "PUBLISH")
                .unwrap();
            assert!(
                !r.unpaired && r.rrt_ns > 0 && r.request_id.is_some(),
                "{id}: {r:?}"
            );
        }
    }
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// The seed's second case on live traffic: a grpcio client and server (Debian's
/// python3-grpcio; gRPC core writes and reads with sendmsg/recvmsg) with the
/// `grpc_business_id` plugin loaded: on both sides each call's record carries the request's
/// protobuf field 1235 as trace id and attribute `business_id`, and the reply's as `msg`.
/// Expected values are what the client printed.
#[test]
fn grpc_business_id_plugin_on_live_grpcio_calls_both_sides() {
    let py = "/usr/bin/python3";
    let grpc_ok = Command::new(py)
        .args(["-c", "import grpc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !grpc_ok {
        skip("Debian's python3-grpcio is not installed");
        return;
    }
    let port = 50653u16;
    let server = Proc(
        Command::new(py)
            .arg(script("grpc_order.py"))
            .args(["server", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let host = PluginHost::new(PluginLimits::default(), l7tap::wasm::stderr_log());
    host.load(
        "grpc_business_id",
        &std::fs::read(common::plugin("grpc_business_id")).unwrap(),
    )
    .unwrap();
    let Some(live) = Live::start_with(config(&[port]), Some(host.clone())) else {
        return;
    };
    let (client_pid, out) = run_client(
        Command::new(py)
            .arg(script("grpc_order.py"))
            .args(["client", &port.to_string()]),
    );
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    // "business_id status_code reply_msg_or_details" per call.
    let printed = out;
    let calls: Vec<(&str, i32, &str)> = printed
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let bid = f.next().unwrap();
            (bid, f.next().unwrap().parse().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(calls.len(), 3, "{printed}");
    for (side, p) in [("client", client_pid), ("server", server_pid)] {
        let mine: Vec<&L7Record> = records
            .iter()
            .filter(|r| pid(r) == p && r.protocol == Protocol::Grpc)
            .collect();
        assert_eq!(mine.len(), calls.len(), "{side}: {records:#?}\n{stats:?}");
        for (r, (bid, code, text)) in mine.iter().zip(&calls) {
            let at = format!("{side} {bid}");
            assert_eq!(s(&r.request_resource), "/order.OrderService/Get", "{at}");
            assert_eq!(r.response_code, Some(*code), "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}: {r:?}");
            assert_eq!(s(&r.trace_id), *bid, "{at}");
            assert_eq!(
                r.attribute("business_id").map(s).as_deref(),
                Some(*bid),
                "{at}"
            );
            assert_eq!(
                r.plugins.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                ["grpc_business_id"],
                "{at}"
            );
            if *code == 0 {
                assert_eq!(r.response_status, ResponseStatus::Ok, "{at}");
                assert_eq!(r.attribute("msg").map(s).as_deref(), Some(*text), "{at}");
            } else {
                // NOT_FOUND: no reply message; the details are the exception.
                assert_eq!(r.response_status, ResponseStatus::ClientError, "{at}");
                assert_eq!(s(&r.response_exception), *text, "{at}");
            }
        }
        assert!(
            mine.iter().all(|r| r.flow == mine[0].flow),
            "{side}: one channel"
        );
    }
    let failures: u64 = host
        .metrics()
        .iter()
        .flat_map(|(_, c)| {
            c.iter()
                .filter(|(k, _)| k.starts_with("fail"))
                .map(|(_, v)| *v)
        })
        .sum();
    assert_eq!(failures, 0, "{:?}", host.metrics());
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// The mariadb client (`--force -vvv`) runs the PostgreSQL test's session against a throwaway
/// MariaDB server (MySQL protocol): both sides' records against what the client printed
/// (each statement, then "Query OK, N rows affected", "N rows in set" under a table, or on
/// stderr "ERROR <code> (<state>) at line <n>: <message>").
#[test]
fn mariadb_client_against_mariadb_server_both_sides() {
    if !programs(&["mariadbd", "mariadb", "mariadb-install-db"]) {
        return;
    }
    let port = 13306u16;
    let db = Mariadb::start(port);
    let client = |name: &str| db.client(name);
    assert!(client("")
        .args(["-e", "CREATE DATABASE shop"])
        .status()
        .unwrap()
        .success());
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let sql_path = common::capture("postgres/session.sql");
    let sql = std::fs::read_to_string(&sql_path).unwrap();
    let cli = client("shop")
        .args(["--force", "-vvv"])
        .stdin(std::fs::File::open(&sql_path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cli_pid = cli.id();
    let out = cli.wait_with_output().unwrap();
    let (records, stats) = live.stop();
    let server_pid = db.server.0.id();
    drop(db);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // What the client printed after each statement: its first line that is not empty.
    let after = |stmt: &str| -> Vec<&str> {
        let echo = format!("--------------\n{stmt}\n--------------\n");
        let at = stdout
            .find(&echo)
            .unwrap_or_else(|| panic!("{stmt}: {stdout}"));
        stdout[at + echo.len()..]
            .lines()
            .take_while(|l| *l != "--------------")
            .filter(|l| !l.is_empty())
            .collect()
    };
    let statements: Vec<&str> = sql.lines().filter(|l| !l.is_empty()).collect();
    for (side, p) in [("mariadb", cli_pid), ("mariadbd", server_pid)] {
        let mine: Vec<&L7Record> = records
            .iter()
            .filter(|r| pid(r) == p && r.protocol == Protocol::Mysql)
            .collect();
        let login = mine.iter().find(|r| s(&r.request_type) == "LOGIN");
        let login = login.unwrap_or_else(|| panic!("{side}: {mine:#?}\n{stats:?}"));
        assert_eq!(s(&login.request_resource), "Login username: root db: shop");
        let queries: Vec<&&L7Record> = mine
            .iter()
            .filter(|r| s(&r.request_type) == "COM_QUERY")
            .collect();
        assert_eq!(queries.len(), statements.len(), "{side}: {mine:#?}");
        for (n, (r, stmt)) in queries.iter().zip(&statements).enumerate() {
            let stmt = stmt.trim_end_matches(';');
            let at = format!("{side}: {stmt}");
            assert_eq!(s(&r.request_resource), stmt, "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{at}");
            let error = stderr
                .lines()
                .find(|l| l.contains(&format!(" at line {}: ", n + 1)));
            let printed = after(stmt);
            if let Some(e) = error {
                // "ERROR 1062 (23000) at line 6: Duplicate entry '1' for key 'PRIMARY'"
                let code: i32 = e.split(' ').nth(1).unwrap().parse().unwrap();
                assert_eq!(r.response_code, Some(code), "{at}");
                assert_eq!(
                    s(&r.response_exception),
                    e.split_once(": ").unwrap().1,
                    "{at}"
                );
                assert_eq!(r.response_status, ResponseStatus::ClientError, "{at}");
            } else if let Some(ok) = printed[0].strip_prefix("Query OK, ") {
                let n = ok.split(' ').next().unwrap();
                assert_eq!(s(&r.response_result), format!("affected_rows={n}"), "{at}");
                assert_eq!(r.response_status, ResponseStatus::Ok, "{at}");
            } else {
                // A result set: "+---+", "| item | qty  |", ..., "3 rows in set".
                let columns = printed[1].matches('|').count() - 1;
                assert_eq!(s(&r.response_result), format!("columns={columns}"), "{at}");
                assert!(printed.iter().any(|l| l.contains(" rows in set")), "{at}");
                assert_eq!(r.response_status, ResponseStatus::Ok, "{at}");
            }
        }
    }
    assert_eq!(stats.get("parse_errors_mysql"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
}

/// A throwaway MariaDB server (mariadb-install-db, root without a password, TCP on
/// 127.0.0.1), stopped and removed when dropped.
struct Mariadb {
    server: Proc,
    dir: PathBuf,
    port: u16,
}

impl Mariadb {
    fn start(port: u16) -> Mariadb {
        let dir = scratch_dir(&format!("mariadb{port}"));
        let d = dir.display().to_string();
        let install = Command::new("mariadb-install-db")
            .args(["--no-defaults", "--user=root", "--skip-test-db"])
            .arg(format!("--datadir={d}/data"))
            .arg("--auth-root-authentication-method=normal")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(install.success(), "mariadb-install-db");
        let server = Proc(
            Command::new("mariadbd")
                .args(["--no-defaults", "--user=root", "--skip-log-bin"])
                .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M"])
                .arg(format!("--port={port}"))
                .arg(format!("--datadir={d}/data"))
                .arg(format!("--socket={d}/sock"))
                .arg(format!("--pid-file={d}/pid"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_port(port);
        Mariadb { server, dir, port }
    }

    /// The mariadb client on this server, in database `db` (none when empty).
    fn client(&self, db: &str) -> Command {
        let mut c = Command::new("mariadb");
        c.args(["-h", "127.0.0.1", "-P", &self.port.to_string()])
            .args(["-u", "root", "--skip-ssl"]);
        if !db.is_empty() {
            c.args(["-D", db]);
        }
        c
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.0.id().to_string()])
            .status();
        let _ = self.server.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Statements larger than the 16 KiB snaplen: a bulk INSERT of a 40,000-byte value (one write
/// by the client, cut by the snaplen), reading it back (the row goes out as one packet, cut on
/// the server's side), then small statements on the same connection. A packet cut short is
/// reported from what arrived and skipped by its length, so each statement pairs with its own
/// answer. Expectations: what the mariadb client printed.
#[test]
fn mariadb_statements_larger_than_the_snaplen_both_sides() {
    if !programs(&["mariadbd", "mariadb", "mariadb-install-db"]) {
        return;
    }
    let db = Mariadb::start(13316);
    assert!(db
        .client("")
        .args(["-e", "CREATE DATABASE big; CREATE TABLE big.t (v LONGTEXT)"])
        .status()
        .unwrap()
        .success());
    let Some(live) = Live::start(config(&[db.port])) else {
        return;
    };
    let value = "v".repeat(40_000);
    let statements = [
        format!("INSERT INTO t VALUES ('{value}')"),
        "SELECT v FROM t".to_string(),
        "SELECT LENGTH(v) FROM t".to_string(),
        "SELECT 41 + 1".to_string(),
    ];
    let mut cmd = db.client("big");
    cmd.args(["-N", "-B", "-e", &statements.join(";\n")]);
    let (client_pid, out) = run_client(&mut cmd);
    let (records, stats) = live.stop();
    let server_pid = db.server.0.id();
    drop(db);
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed, [value.as_str(), "40000", "42"], "{out}");
    for (side, p) in [("mariadb", client_pid), ("mariadbd", server_pid)] {
        let queries: Vec<&L7Record> = records
            .iter()
            .filter(|r| pid(r) == p && s(&r.request_type) == "COM_QUERY")
            .collect();
        let at = format!("{side}: {queries:#?}\n{stats:?}");
        assert_eq!(queries.len(), statements.len(), "{at}");
        for (i, r) in queries.iter().enumerate() {
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}\n{stats:?}");
            assert_eq!(r.response_status, ResponseStatus::Ok, "{side} {i}");
        }
        assert!(s(&queries[0].request_resource).starts_with("INSERT INTO t VALUES ('vvv"));
        assert_eq!(s(&queries[0].response_result), "affected_rows=1", "{at}");
        for i in 1..4 {
            assert_eq!(s(&queries[i].request_resource), statements[i], "{at}");
            assert_eq!(s(&queries[i].response_result), "columns=1", "{at}");
        }
    }
    assert_eq!(stats.get("parse_errors_mysql"), 0, "{stats:?}");
}

/// A throwaway PostgreSQL cluster (initdb as the postgres user, trust auth, TCP on 127.0.0.1),
/// stopped when dropped.
struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
}

impl Postgres {
    fn start(port: u16) -> Option<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()?;
        let dir = scratch_dir(&format!("postgres{port}"));
        let as_postgres = |cmd: String| {
            Command::new("su")
                .args(["postgres", "-c", &cmd])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .ok()?;
        let (d, b) = (dir.display().to_string(), bin.display().to_string());
        assert!(as_postgres(format!(
            "{b}/initdb -D {d}/db -A trust -U postgres"
        )));
        let pg = Postgres { bin, dir };
        assert!(as_postgres(format!(
            "{b}/pg_ctl -D {d}/db -l {d}/log -w -o '-p {port} -k {d} -c listen_addresses=127.0.0.1' start"
        )));
        Some(pg)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args(["postgres", "-c"])
            .arg(format!(
                "{}/pg_ctl -D {}/db -m immediate stop",
                self.bin.display(),
                self.dir.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// psql runs the bundled session (tests/captures/postgres/session.sql: DDL, inserts, an update,
/// a select, a duplicate key and a missing table) against a real server on `port`, through
/// `host` (an address, or the directory of the server's Unix socket), under a capture with
/// `config`; both sides' records are checked against what psql printed, as for the bundled
/// capture. Returns psql's and the server's records and the counters; None when skipped.
fn psql_session_both_sides(
    port: u16,
    host: impl Fn(&Postgres) -> String,
    config: BpfConfig,
) -> Option<(Vec<L7Record>, Vec<L7Record>, StatsSnapshot)> {
    if !programs(&["psql", "su"]) {
        return None;
    }
    let Some(pg) = Postgres::start(port) else {
        skip("no PostgreSQL server under /usr/lib/postgresql");
        return None;
    };
    let host = host(&pg);
    let psql = |args: &[&str]| {
        let mut c = Command::new("psql");
        c.args(["-h", &host, "-p", &port.to_string(), "-U", "postgres"])
            .args(args)
            .env("PGSSLMODE", "disable");
        c
    };
    assert!(psql(&["-c", "CREATE DATABASE shop"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let live = Live::start(config)?;
    let sql = common::capture("postgres/session.sql");
    // stdout and stderr into one file, so errors stay between the statements they follow.
    let out_path = pg.dir.join("psql.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut client = psql(&["-d", "shop", "-a", "-f"])
        .arg(&sql)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let client_pid = client.id();
    client.wait().unwrap();
    let (records, stats) = live.stop();
    let printed = std::fs::read_to_string(&out_path).unwrap();
    let sql = std::fs::read_to_string(&sql).unwrap();
    drop(pg);
    let pgsql = records
        .iter()
        .filter(|r| r.protocol == Protocol::Postgresql);
    let client_side: Vec<L7Record> = pgsql
        .clone()
        .filter(|r| pid(r) == client_pid)
        .cloned()
        .collect();
    let server_side: Vec<L7Record> = pgsql
        .filter(|r| pid(r) != client_pid && comm(r) == "postgres")
        .cloned()
        .collect();
    for (side, recs) in [("psql", &client_side), ("postgres", &server_side)] {
        let at = format!("{side}: {recs:#?}\n{stats:?}");
        let recs: Vec<&L7Record> = recs.iter().collect();
        common::check_psql_session(&recs, &sql, &printed, &at);
        let startup = recs
            .iter()
            .find(|r| s(&r.request_type) == "StartupMessage")
            .unwrap_or_else(|| panic!("{at}"));
        assert_eq!(s(&startup.request_domain), "shop", "{side}");
    }
    assert!(client_side.iter().all(|r| comm(r) == "psql"));
    assert_eq!(stats.get("parse_errors_postgresql"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_events"), 0, "{stats:?}");
    Some((client_side, server_side, stats))
}

/// The bundled psql session over TCP (loopback).
#[test]
fn psql_against_postgresql_both_sides() {
    let port = 15433u16;
    let Some((client_side, server_side, _)) =
        psql_session_both_sides(port, |_| "127.0.0.1".into(), config(&[port]))
    else {
        return;
    };
    for r in client_side.iter().chain(&server_side) {
        assert_eq!(r.flow.server.port(), port, "{r:?}");
    }
    assert_eq!(
        client_side[0].flow.client, server_side[0].flow.client,
        "both sides see one connection"
    );
}

/// Results larger than the 16 KiB snaplen: a 100,000-byte value, which the server sends as
/// one DataRow in one write (cut by the snaplen), then small queries on the same connection.
/// The cut response is reported at once (truncated, up to the end of the cut message, skipped
/// by its length) and the rest of it up to ReadyForQuery skipped, so each later query pairs
/// with its own answer. Expectations: what psql printed.
#[test]
fn psql_results_larger_than_the_snaplen_both_sides() {
    if !programs(&["psql", "su"]) {
        return;
    }
    let port = 15443u16;
    let Some(pg) = Postgres::start(port) else {
        skip("no PostgreSQL server under /usr/lib/postgresql");
        return;
    };
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let queries = [
        "SELECT length(repeat('x', 100000)) AS n, repeat('x', 100000) AS big",
        "SELECT 41 + 1 AS answer",
        "SELECT 'after' AS word",
    ];
    let mut cmd = Command::new("psql");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-At", "-F", " "])
        .env("PGSSLMODE", "disable");
    for q in queries {
        cmd.args(["-c", q]);
    }
    let (client_pid, out) = run_client(&mut cmd);
    let (records, stats) = live.stop();
    drop(pg);
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed.len(), 3, "{out}");
    assert!(printed[0].starts_with("100000 xxx"));
    assert_eq!(printed[1..], ["42", "after"]);
    for (side, client) in [("psql", true), ("postgres", false)] {
        let mine: Vec<&L7Record> = records
            .iter()
            .filter(|r| r.protocol == Protocol::Postgresql && (pid(r) == client_pid) == client)
            .filter(|r| s(&r.request_type) == "Q")
            .collect();
        let at = format!("{side}: {mine:#?}\n{stats:?}");
        assert_eq!(mine.len(), queries.len(), "{at}");
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(s(&r.request_resource), queries[i], "{at}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}: {r:?}");
            assert_eq!(r.response_status, ResponseStatus::Ok, "{side} {i}");
        }
        // Whole answers carry their command tag.
        assert_eq!(s(&mine[1].response_result), "SELECT 1", "{at}");
        assert_eq!(s(&mine[2].response_result), "SELECT 1", "{at}");
    }
    assert_eq!(stats.get("parse_errors_postgresql"), 0, "{stats:?}");
}

/// Redis pub/sub: a subscriber (RESP spoken by a small Python client) and redis-cli
/// publishing. Each message the server pushes is a record of its own (kind `message`, the
/// channel as resource) on both sides, not an unpaired response; the SUBSCRIBE pairs with its
/// confirmation. Expected values are what the subscriber printed.
/// A capture of Unix-domain stream sockets as well (`BpfConfig::unix_sockets`), with the port
/// filter set to a port nothing uses: Unix sockets have no ports and are not subject to it.
fn unix_config() -> BpfConfig {
    BpfConfig {
        ports: vec![1],
        unix_sockets: true,
        ..Default::default()
    }
}

/// psql talks to PostgreSQL through its Unix socket (`-h DIR`, psql's own default way in),
/// running the bundled session, under a capture of Unix sockets whose port filter lets no
/// TCP port through. Both sides' records are checked against what psql printed, as over TCP,
/// and are named by the server's socket path, which PostgreSQL makes from its socket
/// directory and port (`DIR/.s.PGSQL.PORT`, see `unix_socket_directories`).
#[test]
fn psql_over_a_unix_socket_both_sides() {
    let port = 15435u16;
    let socket = std::cell::RefCell::new(String::new());
    let Some((client_side, server_side, stats)) = psql_session_both_sides(
        port,
        |pg| {
            let dir = pg.dir.display().to_string();
            *socket.borrow_mut() = format!("{dir}/.s.PGSQL.{port}");
            dir
        },
        unix_config(),
    ) else {
        return;
    };
    let socket = socket.into_inner();
    for r in client_side.iter().chain(&server_side) {
        assert_eq!(r.flow.l4, L4::Unix, "{r:?}");
        assert_eq!(r.flow.path, socket, "{r:?}");
    }
    assert_eq!(stats.get("unix_paths_not_kept"), 0, "{stats:?}");
}

/// redis-cli against redis-server's Unix socket (`-s`): a capture without `unix_sockets`
/// (the default) records none of it; one with it records every command on both sides,
/// checked against redis-cli's output and named by the socket's path.
#[test]
fn redis_over_a_unix_socket_only_when_asked_both_sides() {
    if !programs(&["redis-server", "redis-cli"]) {
        return;
    }
    let dir = scratch_dir("redis-unix");
    let sock = dir.join("redis.sock");
    let server = Proc(
        Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&sock)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts"),
    );
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(20));
    }
    let commands = [
        "SET unix:k hello",
        "GET unix:k",
        "APPEND unix:k !",
        "GET unix:k",
        "DEL unix:k",
    ];
    let run = || {
        let mut cli = Command::new("redis-cli")
            .arg("-s")
            .arg(&sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = cli.id();
        cli.stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", commands.join("\n")).as_bytes())
            .unwrap();
        let out = cli.wait_with_output().unwrap();
        (pid, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let server_pid = server.0.id();

    let Some(live) = Live::start(config(&[])) else {
        return;
    };
    let (off_pid, _) = run();
    let (records, _) = live.stop();
    assert!(
        records
            .iter()
            .all(|r| r.flow.l4 != L4::Unix && pid(r) != off_pid && pid(r) != server_pid),
        "{records:#?}"
    );

    let Some(live) = Live::start(unix_config()) else {
        return;
    };
    let (cli_pid, printed) = run();
    let (records, stats) = live.stop();
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    let printed: Vec<&str> = printed.lines().collect();
    assert_eq!(printed, ["OK", "hello", "6", "hello!", "1"]);
    let path = sock.display().to_string();
    for (side, want) in [("redis-cli", cli_pid), ("redis-server", server_pid)] {
        let mine: Vec<&L7Record> = records
            .iter()
            .filter(|r| pid(r) == want && s(&r.request_resource).contains("unix:k"))
            .collect();
        assert_eq!(
            mine.len(),
            commands.len(),
            "{side}: {records:#?}\n{stats:?}"
        );
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(comm(r), side);
            assert_eq!(r.protocol, Protocol::Redis, "{side} {i}");
            assert_eq!(s(&r.request_resource), commands[i], "{side} {i}");
            assert_eq!(r.response_status, ResponseStatus::Ok, "{side} {i}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}");
            assert_eq!(r.flow.l4, L4::Unix, "{side} {i}");
            assert_eq!(r.flow.path, path, "{side} {i}");
        }
    }
}

/// An HTTP/1.1 server on an abstract Unix socket (tests/live/unix_http.py, Python's
/// http.server, a thread per connection) and curl (`--abstract-unix-socket`; a connection per
/// request, as curl does not reuse these across `--next`): GET, a 404 and a 3,000-byte POST
/// echoed back. Both sides are checked against curl's report and the
/// server's own log, and named `@name`, as `ss` shows an abstract name.
#[test]
fn http_over_an_abstract_unix_socket_both_sides() {
    if !programs(&["python3", "curl"]) {
        return;
    }
    let name = format!("@l7tap-test-{}", std::process::id());
    let mut child = Command::new("python3")
        .arg(script("unix_http.py"))
        .arg(&name)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut log, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let server = Proc(child);
    let Some(live) = Live::start(unix_config()) else {
        return;
    };
    let body = "x".repeat(3000);
    let mut cmd = Command::new("curl");
    for (i, (method, path)) in [("GET", "/hello"), ("GET", "/missing"), ("POST", "/echo")]
        .iter()
        .enumerate()
    {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-s", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{size_download} %{num_connects}\\n")
            .args(["--abstract-unix-socket", &name[1..]]);
        if *method == "POST" {
            cmd.args(["--data-binary", &body]);
        }
        cmd.arg(format!("http://localhost{path}"));
    }
    let (curl_pid, out) = run_client(&mut cmd);
    let printed = curl_lines(out.as_bytes());
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    let mut served = String::new();
    std::io::Read::read_to_string(&mut log, &mut served).unwrap();
    // "METHOD PATH CODE BODY_LENGTH" per request, from the server.
    let served: Vec<Vec<String>> = served
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(served.len(), 3, "{served:?}");
    assert_eq!(printed.len(), 3);
    for (side, want) in [("curl", curl_pid), ("python3", server_pid)] {
        let mine = of_pids(&records, &[want]);
        assert_eq!(mine.len(), 3, "{side}: {records:#?}\n{stats:?}");
        for (i, r) in mine.iter().enumerate() {
            let (code, size, _) = printed[i];
            assert_eq!(comm(r), side);
            assert_eq!(r.protocol, Protocol::Http1, "{side} {i}");
            assert_eq!(s(&r.request_type), served[i][0], "{side} {i}");
            assert_eq!(s(&r.request_resource), served[i][1], "{side} {i}");
            assert_eq!(r.response_code, Some(i32::from(code)), "{side} {i}");
            assert_eq!(served[i][2], code.to_string(), "{side} {i}");
            assert_eq!(r.resp_len, Some(size), "{side} {i}");
            assert_eq!(served[i][3], size.to_string(), "{side} {i}");
            assert!(!r.unpaired && r.rrt_ns > 0, "{side} {i}");
            assert_eq!(r.flow.l4, L4::Unix, "{side} {i}");
            assert_eq!(r.flow.path, name, "{side} {i}");
        }
        assert_eq!(mine[2].req_len, Some(body.len() as u64), "{side}");
    }
}

#[test]
fn redis_pubsub_pushes_are_records_of_their_own_both_sides() {
    if !programs(&["redis-server", "redis-cli", "python3"]) {
        return;
    }
    let port = 16480u16;
    let server = redis_server(port);
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let mut sub = Proc(
        Command::new("python3")
            .arg(script("redis_subscribe.py"))
            .args([&port.to_string(), "news", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let sub_pid = sub.0.id();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(sub.0.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "subscribed");
    for word in ["hello", "world"] {
        let (_, out) = run_client(Command::new("redis-cli").args([
            "-p",
            &port.to_string(),
            "PUBLISH",
            "news",
            word,
        ]));
        assert_eq!(out.trim(), "1", "one subscriber received it");
    }
    let printed: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(sub.0.wait().unwrap().success());
    let (records, stats) = live.stop();
    let server_pid = server.0.id();
    drop(server);
    assert_eq!(printed, ["message news hello", "message news world"]);
    // The subscriber's connection, as either side saw it (the server has the publishers' too).
    let sub_client = records
        .iter()
        .find(|r| pid(r) == sub_pid)
        .map(|r| r.flow.client)
        .unwrap_or_else(|| panic!("no subscriber record: {records:#?}"));
    for (side, p) in [("subscriber", sub_pid), ("redis-server", server_pid)] {
        let mine: Vec<&L7Record> = of_pids(&records, &[p])
            .into_iter()
            .filter(|r| r.flow.client == sub_client)
            .collect();
        let subscribe: Vec<&&L7Record> = mine
            .iter()
            .filter(|r| s(&r.request_type) == "SUBSCRIBE")
            .collect();
        assert_eq!(subscribe.len(), 1, "{side}: {mine:#?}");
        assert!(!subscribe[0].unpaired && subscribe[0].rrt_ns > 0, "{side}");
        let pushes: Vec<(String, String, bool)> = mine
            .iter()
            .filter(|r| s(&r.request_type) == "message")
            .map(|r| (s(&r.request_resource), s(&r.response_result), r.unpaired))
            .collect();
        assert_eq!(
            pushes,
            [
                ("news".into(), "Array".into(), false),
                ("news".into(), "Array".into(), false)
            ],
            "{side}: {mine:#?}"
        );
    }
    assert_eq!(stats.get("records_unpaired"), 0, "{records:#?}\n{stats:?}");
}

#[test]
fn unlisted_ports_and_pids_are_filtered_in_the_kernel() {
    if !programs(&["nginx", "curl", "openssl"]) {
        return;
    }
    let port = 18480u16;
    let (ngx, dir) = nginx("filters", port, Listen::Http);
    // Port filter: only `port`; the backend on port+1 is not listed.
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let backend = Command::new("curl")
        .args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/created", port + 1))
        .status()
        .unwrap();
    assert!(backend.success());
    let (records, stats) = live.stop();
    assert!(records.is_empty(), "{records:#?}");
    assert!(stats.get("bpf_filtered_port") > 0, "{stats:?}");
    // (Process exits are still reported; no payload is.)
    assert_eq!(stats.get("bpf_payload_bytes"), 0, "{stats:?}");
    assert_eq!(stats.get("bpf_segments"), 0, "{stats:?}");

    // Pid filter, switched on at run time: only the client process is seen.
    let Some(live) = Live::start(config(&[port])) else {
        return;
    };
    let mut client = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read go; exec curl -s -o /dev/null http://127.0.0.1:{port}/index.html"
        ))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    live.control.allow_pid(client.id()).unwrap();
    client.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(client.wait().unwrap().success());
    let (records, stats) = live.stop();
    drop(ngx);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(comm(&records[0]), "curl");
    assert_eq!(records[0].response_code, Some(200));
    assert!(stats.get("bpf_filtered_pid") > 0, "{stats:?}");
}

/// A sender writes 2000 requests of exactly 1000 bytes as fast as it can into a 4 KiB ring.
/// Every syscall is either delivered or counted as lost, and after the burst the pipeline is
/// back in step.
#[test]
fn overflowed_ring_counts_every_loss_and_resyncs() {
    if !programs(&["python3"]) {
        return;
    }
    const BURST: u64 = 2000;
    let port = 18580u16;
    let receiver = Proc(
        Command::new("python3")
            .arg(script("sink_server.py"))
            .arg(port.to_string())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    let Some(live) = Live::start(BpfConfig {
        ports: vec![port],
        ring_bytes: 4096,
        ..Default::default()
    }) else {
        return;
    };
    let mut sender = Command::new("python3")
        .arg(script("burst_sender.py"))
        .args([port.to_string(), BURST.to_string()])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    live.control.allow_pid(sender.id()).unwrap();
    sender.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(sender.wait().unwrap().success());
    let (records, stats) = live.stop();
    drop(receiver);

    let burst = records
        .iter()
        .filter(|r| s(&r.request_resource).starts_with("/burst/"))
        .count() as u64;
    let after: Vec<String> = records
        .iter()
        .map(|r| s(&r.request_resource))
        .filter(|p| p.starts_with("/after/"))
        .collect();
    let lost = stats.get("bpf_ring_full_events");
    assert!(lost > 0, "the ring must overflow: {stats:?}");
    assert!(burst > 0, "some requests get through: {stats:?}");
    // Every send() is one event: delivered (one record each) or counted as lost.
    assert_eq!(burst + lost, BURST, "{stats:?}");
    assert_eq!(stats.get("bpf_ring_full_bytes"), lost * 1000, "{stats:?}");
    assert_eq!(stats.get("bpf_stream_gap_bytes"), lost * 1000, "{stats:?}");
    // Back in step after the burst.
    assert_eq!(after, ["/after/0", "/after/1", "/after/2"], "{stats:?}");
    assert!(records.iter().all(|r| comm(r) == "python3"));
}
