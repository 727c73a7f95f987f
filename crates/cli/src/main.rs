//! The `l7tap` command: replay captures and print L7 records.
//!
//! Thin by design: argument parsing, wiring of the engine, printing.

mod lines;

use clap::{Parser, Subcommand, ValueEnum};
use l7tap::pcap::PcapSource;
use l7tap::{Engine, L7Record, Protocol, StatsSnapshot};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "l7tap",
    version,
    about = "Capture, parse and enrich L7 traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a pcap/pcapng file and print one record per request/response exchange.
    Replay(ReplayArgs),
    /// Capture live traffic with eBPF (needs root) and print records as they complete.
    Capture(CaptureArgs),
    /// Work with Wasm plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Load a plugin as the engine would: validate its imports and exports, run `_start`,
    /// print the hooks it registers; with --sample, run a hook on a sample payload.
    Check(CheckArgs),
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SampleHook {
    /// on_http_req with the sample as the request message.
    HttpReq,
    /// on_http_resp with the sample as the response message.
    HttpResp,
    /// check_payload then parse_payload with the sample as a client->server payload.
    Payload,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// The plugin (.wasm, or .wat text).
    file: PathBuf,
    /// A file holding a sample payload (e.g. a raw HTTP message) to run a hook on.
    #[arg(long, value_name = "FILE")]
    sample: Option<PathBuf>,
    /// Which hook the sample goes to.
    #[arg(long, value_enum, default_value = "http-resp")]
    hook: SampleHook,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One JSON object per line (field names in the README).
    Json,
    /// Aligned columns for people.
    Table,
}

#[derive(clap::Args)]
struct EngineArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// Where records go: `stdout` (in --format); `file=PATH` (appended) or `unix=PATH` (a
    /// listening unix stream socket, as Vector's and Fluent Bit's socket sources) in --format;
    /// or `otlp=http://host:4318` to export them to an OpenTelemetry collector as log records
    /// and spans.
    #[arg(long, default_value = "stdout", value_name = "DEST")]
    output: String,
    /// Only parse these protocols (repeatable; default: all built-in).
    #[arg(long = "protocol", value_name = "NAME")]
    protocols: Vec<String>,
    /// Largest message kept whole; longer ones are cut and flagged truncated.
    #[arg(long, default_value_t = 65536, value_name = "N")]
    max_message_bytes: usize,
    /// Worker threads (records of different flows may then interleave differently).
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// Do not print the counter summary on stderr.
    #[arg(long)]
    no_stats: bool,
    /// Wasm plugins (DeepFlow ABI), called in the order given (repeatable).
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    plugins: Vec<PathBuf>,
    /// Instructions one plugin hook call may execute.
    #[arg(long, default_value_t = 20_000_000, value_name = "N")]
    plugin_instructions: u64,
    /// Linear-memory cap per plugin instance, MiB.
    #[arg(long, default_value_t = 128, value_name = "MIB")]
    plugin_memory_mib: u64,
    /// Wall-clock time one plugin hook call may take, ms (a call past it is stopped).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    plugin_call_ms: u64,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The capture file (pcap or pcapng).
    file: PathBuf,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// Only these processes (repeatable; default: all but l7tap itself).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Only connections with this port at either end (repeatable; default: all ports).
    #[arg(long = "port", value_name = "N")]
    ports: Vec<u16>,
    /// Also capture Unix-domain stream sockets (a local PostgreSQL or Redis, Docker's API,
    /// containerd's gRPC, PHP-FPM ...): records name the socket's path. `--port` does not
    /// apply to them; `--pid` does.
    #[arg(long)]
    unix: bool,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// Bytes copied per syscall (at most 16384).
    #[arg(long, default_value_t = l7tap_capture_bpf::SNAPLEN_MAX, value_name = "N")]
    snaplen: u32,
    /// Size of each CPU's ring buffer, KiB (a power of two; one ring per online CPU). 0: 8 MiB
    /// split between the CPUs, at least 512 KiB each.
    #[arg(long, default_value_t = 0, value_name = "KIB")]
    ring_kib: u32,
    /// Do not probe for TLS plaintext (neither OpenSSL, GnuTLS, NSS nor Go's crypto/tls).
    #[arg(long)]
    no_tls: bool,
    /// The libssl.so.3 to probe (default: the system's).
    #[arg(long, value_name = "PATH")]
    libssl: Option<PathBuf>,
    /// The libgnutls.so.30 to probe (default: the system's).
    #[arg(long, value_name = "PATH")]
    libgnutls: Option<PathBuf>,
    /// The libnspr4.so (NSS's I/O calls) to probe (default: the system's).
    #[arg(long, value_name = "PATH")]
    libnspr: Option<PathBuf>,
    /// A Go binary whose crypto/tls to probe even if no process runs it yet (repeatable; the
    /// binaries of the processes running at start are found without it).
    #[arg(long = "go-tls-binary", value_name = "PATH")]
    go_tls_binaries: Vec<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => finish(replay(args)),
        Command::Capture(args) => finish(capture(args)),
        Command::Plugin(PluginCommand::Check(args)) => finish(plugin_check(args)),
    }
}

fn finish(r: Result<ExitCode, String>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("l7tap: {msg}");
            ExitCode::from(2)
        }
    }
}

fn plugin_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into())
}

fn read_module(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "wat") {
        return l7tap::wasm::wat_to_wasm(&bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    Ok(bytes)
}

fn load_plugins(
    paths: &[PathBuf],
    limits: l7tap::PluginLimits,
) -> Result<Option<l7tap::PluginHost>, String> {
    if paths.is_empty() {
        return Ok(None);
    }
    let host = l7tap::PluginHost::new(limits, l7tap::wasm::stderr_log());
    for p in paths {
        let wasm = read_module(p)?;
        host.load(&plugin_name(p), &wasm)
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(Some(host))
}

fn plugin_check(args: CheckArgs) -> Result<ExitCode, String> {
    let host = l7tap::PluginHost::new(l7tap::PluginLimits::default(), l7tap::wasm::stderr_log());
    let wasm = read_module(&args.file)?;
    let name = plugin_name(&args.file);
    let p = host
        .load(&name, &wasm)
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    println!("plugin {name}: loaded ({} bytes)", wasm.len());
    println!("hook bitmap: {:#034x}", p.hooks);
    let hooks = p.hook_names();
    println!(
        "hooks: {}",
        if hooks.is_empty() {
            "none (the plugin will never be called)".into()
        } else {
            hooks.join(", ")
        }
    );
    if let Some(h) = p.custom_hook {
        let point = match h.hook_point {
            0 => "ProtocolParse",
            1 => "SessionFilter",
            2 => "Sampling",
            _ => "unknown",
        };
        if h.hook_all {
            println!("custom_message: every message");
        } else {
            println!(
                "custom_message: hook point {} ({point}), type code {}",
                h.hook_point, h.type_code
            );
        }
    }
    if let Some(sample) = &args.sample {
        let payload = std::fs::read(sample).map_err(|e| format!("{}: {e}", sample.display()))?;
        let out = l7tap::wasm::sample::run(&host, args_hook(args.hook), payload.into());
        println!("{out}");
        // What the call cost: Wasm operators are exact (the metering count); the time is one
        // cold call's (instantiation is not in it), so only a rough guide.
        let m = &p.metrics;
        let calls: u64 = l7tap::wasm::Hook::ALL.iter().map(|h| m.calls(*h)).sum();
        println!(
            "cost: {calls} hook call(s), {} Wasm operators, {} us, guest memory {} KiB",
            m.instructions(),
            m.total_ns() / 1000,
            m.memory_bytes.load(std::sync::atomic::Ordering::Relaxed) / 1024
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn args_hook(h: SampleHook) -> l7tap::wasm::sample::SampleHook {
    match h {
        SampleHook::HttpReq => l7tap::wasm::sample::SampleHook::HttpReq,
        SampleHook::HttpResp => l7tap::wasm::sample::SampleHook::HttpResp,
        SampleHook::Payload => l7tap::wasm::sample::SampleHook::Payload,
    }
}

/// The line printer the workers format into, unless records go to an OTLP exporter (which
/// reads them from the engine's channel).
type Printer = Option<(Arc<lines::Lines>, crossbeam_channel::Receiver<lines::Msg>)>;

fn printer(args: &EngineArgs) -> Printer {
    if args.output.starts_with("otlp=") {
        return None;
    }
    let format: lines::Format = match args.format {
        Format::Json => l7tap::json::write_line,
        Format::Table => |r, out| out.extend_from_slice(table_row(r).as_bytes()),
    };
    let (l, rx) = lines::Lines::new(format);
    Some((Arc::new(l), rx))
}

fn build_engine(
    args: &EngineArgs,
    printer: &Printer,
) -> Result<(Engine, Option<l7tap::PluginHost>), String> {
    let mut protocols = Vec::new();
    for name in &args.protocols {
        let p = Protocol::from_name(name).ok_or_else(|| {
            format!(
                "unknown protocol '{name}' (built-in: {})",
                l7tap::protocols::builtin_protocol_names().join(", ")
            )
        })?;
        protocols.push(p);
    }
    let limits = l7tap::PluginLimits {
        instructions_per_call: args.plugin_instructions,
        max_memory_bytes: args.plugin_memory_mib.saturating_mul(1 << 20),
        max_call_time: std::time::Duration::from_millis(args.plugin_call_ms),
        ..Default::default()
    };
    let plugins = load_plugins(&args.plugins, limits)?;
    let mut builder = Engine::builder()
        .workers(args.workers)
        .max_message_bytes(args.max_message_bytes);
    if let Some(h) = &plugins {
        builder = builder.plugins(h.clone());
    }
    if !protocols.is_empty() {
        builder = builder.protocols(&protocols);
    }
    if let Some((l, _)) = printer {
        let l = Arc::clone(l);
        builder = builder.on_record(move |r| l.push(&r));
    }
    let engine = builder.build().map_err(|e| e.to_string())?;
    Ok((engine, plugins))
}

fn replay(args: ReplayArgs) -> Result<ExitCode, String> {
    let printer = printer(&args.engine);
    let (engine, plugins) = build_engine(&args.engine, &printer)?;
    let mut source = PcapSource::open(&args.file).map_err(|e| e.to_string())?;

    let size = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or(0);
    if std::io::stderr().is_terminal() && size > 16 << 20 {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        source = source.with_progress(move |n| b.set_position(n));
        std::mem::forget(bar); // the clone inside the source draws; it clears itself on drop
    }
    run_and_print(
        engine,
        plugins.as_ref(),
        &mut source,
        &args.engine,
        None,
        printer,
    )
}

fn capture(args: CaptureArgs) -> Result<ExitCode, String> {
    use l7tap_capture_bpf::{BpfConfig, BpfSource};
    let duration = match args.duration {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(format!(
                "--duration must be a positive number of seconds, not {s}"
            ))
        }
        None => None,
    };
    let printer = printer(&args.engine);
    let (engine, plugins) = build_engine(&args.engine, &printer)?;
    let config = BpfConfig {
        pids: args.pids.clone(),
        ports: args.ports.clone(),
        snaplen: args.snaplen,
        ring_bytes: args.ring_kib.saturating_mul(1024),
        tls: !args.no_tls,
        go_tls: !args.no_tls,
        go_binaries: args.go_tls_binaries.clone(),
        unix_sockets: args.unix,
        libssl: args.libssl.clone(),
        libgnutls: args.libgnutls.clone(),
        libnspr: args.libnspr.clone(),
        duration,
        ..Default::default()
    };
    let mut source = BpfSource::open(config).map_err(|e| e.to_string())?;
    let stop = source.control().stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("installing the signal handler: {e}"))?;
    }
    if !args.engine.no_stats {
        eprintln!(
            "l7tap: capturing (TLS: {}; GnuTLS: {}; NSS: {}; Go TLS: {}; io_uring: {})",
            source.tls_status(),
            source.gnutls_status(),
            source.nss_status(),
            source.go_tls_status(),
            source.io_uring_status()
        );
    }
    run_and_print(
        engine,
        plugins.as_ref(),
        &mut source,
        &args.engine,
        Some(stop),
        printer,
    )
}

/// Whether stdout's reader has gone: poll reports an error or hang-up on it (a pipe whose
/// reader exited, a closed terminal). A file never does.
#[allow(unsafe_code)]
fn stdout_reader_gone() -> bool {
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the call's duration, and a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Runs `source` through `engine`, printing records as they come and the counters at the end.
/// `live_stop`: the stop flag of a live capture (what is buffered is written at least every
/// 100 ms, and the capture stops when its output is closed, like `l7tap capture | head`).
fn run_and_print(
    mut engine: Engine,
    plugins: Option<&l7tap::PluginHost>,
    source: &mut dyn l7tap::core::Source,
    args: &EngineArgs,
    live_stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    printer: Printer,
) -> Result<ExitCode, String> {
    let format = args.format;
    // Records are shown promptly when someone watches or the traffic is live.
    let live = live_stop.is_some() || std::io::stdout().is_terminal();
    let exporter = match args.output.strip_prefix("otlp=") {
        Some(endpoint) => Some(
            l7tap_export::OtlpExporter::start(l7tap_export::OtlpConfig {
                endpoint: endpoint.to_string(),
                ..Default::default()
            })
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    // Where the printer writes: stdout, a file or a unix socket.
    let to_stdout = args.output == "stdout";
    let sink: Box<dyn Write + Send> = match args.output.as_str() {
        _ if exporter.is_some() => Box::new(std::io::sink()),
        "stdout" => Box::new(std::io::stdout()),
        o => match (o.strip_prefix("file="), o.strip_prefix("unix=")) {
            (Some(path), _) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("--output {o}: {e}"))?,
            ),
            (_, Some(path)) => Box::new(
                std::os::unix::net::UnixStream::connect(path)
                    .map_err(|e| format!("--output {o}: {e}"))?,
            ),
            _ => {
                return Err(format!(
                    "--output {o}: expected stdout, file=PATH, unix=PATH or otlp=http://host:port"
                ))
            }
        },
    };
    if let Some(ex) = exporter {
        let records = engine.records().ok_or("engine has no record channel")?;
        let sender = std::thread::spawn(move || {
            for r in records {
                ex.export(r);
            }
            ex.shutdown()
        });
        let run = engine.run(source);
        let mut stats = engine.finish();
        let counters = sender
            .join()
            .map_err(|_| "exporter thread failed".to_string())?;
        stats.merge(&StatsSnapshot(counters));
        if !args.no_stats {
            print_stats(&stats);
        }
        return match run {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("l7tap: {e}");
                Ok(ExitCode::from(1))
            }
        };
    }
    let (lines, rx) = printer.ok_or("the printer is missing")?;
    let l2 = Arc::clone(&lines);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        // Unbuffered: lines arrive in chunks of 64 KiB (or a live view's periodic flush).
        let mut out = sink;
        if format == Format::Table {
            writeln!(out, "{}", table_header())?;
        }
        let stop_capture = || {
            if let Some(stop) = &live_stop {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        let closed = || to_stdout && stdout_reader_gone();
        lines::write_all(&l2, rx, &mut out, live, &stop_capture, &closed)
    });
    let run = engine.run(source);
    let stats = engine.finish();
    lines.finish();
    let written = writer
        .join()
        .map_err(|_| "printer thread failed".to_string())?;
    if let Err(e) = &written {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("writing records: {e}"));
        }
    }
    if !args.no_stats {
        print_stats(&stats);
        let (_, lost) = lines.totals();
        if lost > 0 {
            eprintln!("l7tap: {lost} records not written: the output was closed");
        }
        if let Some(h) = plugins {
            for (name, m) in h.metrics() {
                let nz: Vec<String> = m
                    .iter()
                    .filter(|(_, v)| *v != 0)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                eprintln!("l7tap: plugin {name}: {}", nz.join(" "));
            }
        }
    }
    match run {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("l7tap: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_stats(stats: &StatsSnapshot) {
    let mut line = String::from("l7tap: counters:");
    for (name, v) in stats.non_zero() {
        line.push_str(&format!(" {name}={v}"));
    }
    eprintln!("{line}");
}

fn table_header() -> String {
    format!(
        "{:<8} {:<22} {:<22} {:<8} {:<40} {:>5} {:<13} {:>10}",
        "PROTO", "CLIENT", "SERVER", "TYPE", "RESOURCE", "CODE", "STATUS", "RRT_MS"
    )
}

fn table_row(r: &L7Record) -> String {
    // Control characters (binary payloads) would break the columns.
    let s = |b: &bytes::Bytes| {
        String::from_utf8_lossy(b)
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect::<String>()
    };
    let mut res = s(&r.request_resource);
    if res.chars().count() > 40 {
        res = res.chars().take(39).collect::<String>() + "…";
    }
    format!(
        "{:<8} {:<22} {:<22} {:<8} {:<40} {:>5} {:<13} {:>10.3}{}",
        r.protocol.name(),
        // A Unix socket has no addresses: its path names the server.
        if r.flow.l4 == l7tap::core::L4::Unix {
            "unix".to_string()
        } else {
            r.flow.client.to_string()
        },
        if r.flow.l4 == l7tap::core::L4::Unix {
            r.flow.path.to_string()
        } else {
            r.flow.server.to_string()
        },
        s(&r.request_type),
        res,
        r.response_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        r.response_status.as_str(),
        r.rrt_ns as f64 / 1e6,
        if r.truncated { " truncated" } else { "" },
    ) + &match &r.process {
        Some(p) => format!(" pid={}({})", p.pid, String::from_utf8_lossy(&p.comm)),
        None => String::new(),
    } + &if r.plugins.is_empty() {
        String::new()
    } else {
        format!(
            " plugins={}",
            r.plugins
                .iter()
                .map(|p| p.as_ref())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}
