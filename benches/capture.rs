//! Cost the eBPF capture adds to a traced syscall (issue 5): 100-byte datagrams sent with
//! `sendto` to a loopback UDP socket that never reads (so no receiver thread competes for the
//! 2 cores, and the kernel drops what overflows its buffer after the send succeeded), with
//! capture off, attached but filtered out (port filter), and capturing (events read and turned
//! into segments by a consumer thread). Same for `write` on a connected TCP socket, whose
//! baseline is larger and noisier (the receiver must drain it), and `send` on a Unix stream
//! socket pair (not captured in the filtered configuration, where `unix_sockets` is off: the
//! cost every Unix-socket write pays when the feature is off; captured in the capturing one).
//! Needs root; without it only the baselines run, with a printed reason.
//!
//! `cargo bench --bench capture`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, Criterion};
use l7tap::core::Source;
use l7tap_capture_bpf::{BpfConfig, BpfSource};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Kernel-measured run time of the capture program of `syscall` (data syscalls have one, at
/// syscall exit): (ns, runs). Needs kernel.bpf_stats_enabled=1.
fn prog_time(syscall: &str) -> (u64, u64) {
    let exit = format!("exit_{syscall}");
    let mut out = (0, 0);
    for (name, run_ns, cnt) in l7tap_capture_bpf::program_run_stats() {
        if name == exit {
            out.0 += run_ns;
            out.1 += cnt;
        }
    }
    out
}

/// A connected pair: the writer, and a thread that drains the peer.
fn socket_pair() -> (TcpStream, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let w = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let (mut r, _) = l.accept().expect("accept");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    w.set_nodelay(true).expect("nodelay");
    (w, port)
}

/// Starts a capture in a thread that consumes every segment; returns its stop handle and the
/// number of segments seen.
type Running = (
    l7tap_capture_bpf::BpfControl,
    Arc<AtomicU64>,
    std::thread::JoinHandle<()>,
);

fn start(config: BpfConfig) -> Option<Running> {
    let (tx, rx) = std::sync::mpsc::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let handle = std::thread::spawn(move || match BpfSource::open(config) {
        Ok(mut src) => {
            tx.send(Ok(src.control())).expect("send");
            let _ = src.run(&mut |_seg| {
                s2.fetch_add(1, Ordering::Relaxed);
                true
            });
        }
        Err(e) => tx.send(Err(e)).expect("send"),
    });
    match rx.recv().expect("capture thread") {
        Ok(c) => Some((c, seen, handle)),
        Err(e) => {
            eprintln!("capture benches skipped: {e}");
            None
        }
    }
}

/// The benchmark group.
fn bench(c: &mut Criterion) {
    let payload = [b'x'; 100];
    let mut g = c.benchmark_group("syscall_100B");
    let (mut w, port) = socket_pair();
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sink_addr = sink.local_addr().expect("addr");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // A connected UDP socket: the filter reads both ports from the socket (no user memory),
    // and no receiver competes for the CPU (the TCP case needs a draining thread).
    let udp_conn = UdpSocket::bind("127.0.0.1:0").expect("bind");
    udp_conn.connect(sink_addr).expect("connect");
    // The floor of the in-program numbers: a send that fails (no destination), so the exit
    // program returns at its first test. What bpf_stats reports for it is its own accounting
    // (two clock reads) plus entering the program: the same-run baseline to subtract.
    let unconnected = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // The kernel's own accounting of the time spent in our programs: unaffected by what else
    // the shared machine does, unlike the wall-clock numbers.
    // bpf_stats itself costs two clock reads per program run: L7TAP_BENCH_BPF_STATS=0 leaves it
    // off so the wall-clock rows carry only our programs' cost.
    let stats_wanted = std::env::var("L7TAP_BENCH_BPF_STATS").map_or(true, |v| v != "0");
    let stats_on =
        stats_wanted && std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").is_ok();
    let (mut uw, mut ur) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while matches!(ur.read(&mut buf), Ok(n) if n > 0) {}
    });
    // Times `f` in criterion and, from bpf_stats, inside the sendto programs.
    let timed = |g: &mut criterion::BenchmarkGroup<'_, _>,
                 name: String,
                 what: &str,
                 f: &mut dyn FnMut()| {
        let before = prog_time("sendto");
        g.bench_function(&name, |b| b.iter(&mut *f));
        let after = prog_time("sendto");
        let runs = after.1.saturating_sub(before.1);
        if stats_on && runs > 0 {
            eprintln!(
                "{name}: the BPF program ran {:.1} ns per {what} ({runs} calls, kernel bpf_stats)",
                (after.0 - before.0) as f64 / runs as f64,
            );
        }
    };
    let mut run = |g: &mut criterion::BenchmarkGroup<'_, _>, label: &str| {
        timed(g, format!("udp_sendto/{label}"), "sendto", &mut || {
            udp.send_to(&payload, sink_addr).expect("send");
        });
        timed(
            g,
            format!("udp_send_failing/{label}"),
            "failing send",
            &mut || {
                let _ = unconnected.send(&payload);
            },
        );
        timed(
            g,
            format!("udp_send_connected/{label}"),
            "connected send",
            &mut || {
                udp_conn.send(&payload).expect("send");
            },
        );
        // std's TcpStream::write is send(2), i.e. the sendto syscall with no address.
        timed(g, format!("tcp_write/{label}"), "TCP send", &mut || {
            w.write_all(&payload).expect("write")
        });
        // (std's UnixStream::write is send(2) too.)
        timed(
            g,
            format!("unix_send/{label}"),
            "Unix-socket send",
            &mut || uw.write_all(&payload).expect("write"),
        );
    };
    run(&mut g, "capture_off");

    // The bench's own process is the one writing: trace_self on.
    let base = BpfConfig {
        trace_self: true,
        tls: false,
        ..Default::default()
    };
    if let Some((ctl, _, handle)) = start(BpfConfig {
        ports: vec![1],
        ..base.clone()
    }) {
        run(&mut g, "attached_filtered");
        ctl.stop();
        handle.join().expect("capture thread"); // detached and unloaded
        if let Some((ctl, seen, handle)) = start(BpfConfig {
            ports: vec![port, sink_addr.port()],
            unix_sockets: true,
            ..base
        }) {
            run(&mut g, "capturing");
            ctl.stop();
            handle.join().expect("capture thread");
            eprintln!(
                "capturing: {} segments consumed",
                seen.load(Ordering::Relaxed)
            );
            if stats_on {
                let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
