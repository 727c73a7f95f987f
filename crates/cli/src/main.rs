//! The `l7tap` command: replay captures and print L7 records.
//!
//! Thin by design: argument parsing, wiring of the engine, printing.

use clap::{Parser, Subcommand, ValueEnum};
use l7tap::pcap::PcapSource;
use l7tap::{Engine, L7Record, Protocol, StatsSnapshot};
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    /// One JSON object per line (field names in the README).
    Json,
    /// Aligned columns for people.
    Table,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The capture file (pcap or pcapng).
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Replay(args) => match replay(args) {
            Ok(code) => code,
            Err(msg) => {
                eprintln!("l7tap: {msg}");
                ExitCode::from(2)
            }
        },
    }
}

fn replay(args: ReplayArgs) -> Result<ExitCode, String> {
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
    let mut builder = Engine::builder()
        .workers(args.workers)
        .max_message_bytes(args.max_message_bytes);
    if !protocols.is_empty() {
        builder = builder.protocols(&protocols);
    }
    let mut engine = builder.build().map_err(|e| e.to_string())?;
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

    let records = engine.records().ok_or("engine has no record channel")?;
    let format = args.format;
    let printer = std::thread::spawn(move || -> std::io::Result<u64> {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let mut n = 0;
        if format == Format::Table {
            writeln!(out, "{}", table_header())?;
        }
        for r in records {
            match format {
                Format::Json => writeln!(out, "{}", l7tap::json::to_line(&r))?,
                Format::Table => writeln!(out, "{}", table_row(&r))?,
            }
            n += 1;
        }
        out.flush()?;
        Ok(n)
    });
    let run = engine.run(&mut source);
    let stats = engine.finish();
    let printed = printer
        .join()
        .map_err(|_| "printer thread failed".to_string())?;
    if let Err(e) = &printed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("writing records: {e}"));
        }
    }
    if !args.no_stats {
        print_stats(&stats);
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
    let s = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    let mut res = s(&r.request_resource);
    if res.chars().count() > 40 {
        res = res.chars().take(39).collect::<String>() + "…";
    }
    format!(
        "{:<8} {:<22} {:<22} {:<8} {:<40} {:>5} {:<13} {:>10.3}{}",
        r.protocol.name(),
        r.flow.client.to_string(),
        r.flow.server.to_string(),
        s(&r.request_type),
        res,
        r.response_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        r.response_status.as_str(),
        r.rrt_ns as f64 / 1e6,
        if r.truncated { " truncated" } else { "" },
    )
}
