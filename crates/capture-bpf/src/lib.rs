//! Live capture with eBPF: every L7 message processes on this host send or receive over inet
//! sockets, seen at the syscall, without touching the processes.
//!
//! The kernel side (`src/bpf/l7tap.bpf.c`, compiled by clang in `build.rs`, CO-RE against the
//! checked-in `vmlinux.h`) hooks syscall tracepoints (this kernel has no kprobes) for
//! write/writev/sendto/sendmsg/sendmmsg/sendfile/splice, read/readv/recvfrom/recvmsg/recvmmsg,
//! connect/accept/accept4/close and process exit, io_uring requests (BTF tracepoints),
//! OpenSSL's SSL_write/SSL_read(_ex) with uprobes for TLS plaintext, and Go's crypto/tls in Go
//! binaries ([`gotls`]). Non-socket I/O, filtered pids and ports are dropped in the
//! kernel; what passes goes through a ring buffer per CPU. User space ([`BpfSource`]) merges
//! the rings back into time order and turns the events into core [`Segment`]s, so the
//! engine's framing, inference, parsing, pairing and plugins work exactly as for pcap replay.
//!
//! ```no_run
//! use l7tap_core::Source;
//! let mut source = l7tap_capture_bpf::BpfSource::open(l7tap_capture_bpf::BpfConfig {
//!     ports: vec![80],
//!     duration: Some(std::time::Duration::from_secs(5)),
//!     ..Default::default()
//! })?;
//! // With the facade crate: `engine.run(&mut source)`; here, the raw segments.
//! source.run(&mut |segment| {
//!     println!("{:?} {} bytes", segment.flow, segment.payload.len());
//!     true
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod convert;
pub mod event;
pub mod gotls;
pub mod reorder;
mod system;

use convert::{Converter, Sighting};
use event::FileKey;
use l7tap_core::{Segment, Source, SourceError, StatsSnapshot};
use libbpf_rs::{MapCore, MapFlags, MapHandle, ObjectBuilder, UprobeOpts};
use parking_lot::Mutex;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use system::{TlsLibrary, LIBGNUTLS_CANDIDATES, LIBNSPR_CANDIDATES, LIBSSL_CANDIDATES};

/// The compiled BPF object.
const BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/l7tap.bpf.o"));

/// `ports` map value bit: the port is on the allowlist (the low bits are its snaplen).
const PORT_LISTED: u32 = 0x8000_0000;

/// Largest per-syscall copy the kernel side supports (`SNAP_MAX`).
pub const SNAPLEN_MAX: u32 = 16384;

/// Ring memory of all CPUs together when `ring_bytes` is 0 (8 MiB).
pub const AUTO_RING_TOTAL: u32 = 8 << 20;
/// Smallest ring per CPU when `ring_bytes` is 0 (512 KiB).
pub const AUTO_RING_MIN: u32 = 512 << 10;

/// What to capture and how much.
#[derive(Debug, Clone)]
pub struct BpfConfig {
    /// Only these processes (thread group ids); empty: every process.
    pub pids: Vec<u32>,
    /// Never these processes.
    pub deny_pids: Vec<u32>,
    /// Only connections with one of these ports at either end; empty: every port.
    pub ports: Vec<u16>,
    /// Bytes copied per syscall, at most [`SNAPLEN_MAX`]; more is counted as truncated and
    /// skipped by length where the protocol allows.
    pub snaplen: u32,
    /// Per-port snaplen overriding `snaplen` (also adds the port to the allowlist when
    /// `ports` is non-empty).
    pub port_snaplen: Vec<(u16, u32)>,
    /// Size of each online CPU's ring buffer in bytes (rounded up to a power of two, at least
    /// one page): the kernel side writes into the ring of the CPU it runs on, so memory is
    /// this times the CPUs online. 0 (the default): [`AUTO_RING_TOTAL`] split between them,
    /// at least [`AUTO_RING_MIN`] each.
    pub ring_bytes: u32,
    /// Wake the reader when this many bytes are queued in one CPU's ring; below that, it
    /// picks events up at the next poll tick.
    pub wakeup_bytes: u32,
    /// Longest wait for events before pending segments are handed on.
    pub poll_interval: Duration,
    /// Attach the TLS library uprobes for plaintext: OpenSSL's and GnuTLS's (each where the
    /// library is found).
    pub tls: bool,
    /// Probe Go binaries' crypto/tls for plaintext: those of the processes running when the
    /// capture starts, and `go_binaries`. A Go program started later from a binary probed
    /// then is covered too (probes are per binary, not per process).
    pub go_tls: bool,
    /// Go binaries to probe whether or not they are running.
    pub go_binaries: Vec<PathBuf>,
    /// See socket I/O done through io_uring (two BTF tracepoints on io_uring requests).
    /// Where the kernel's io_uring differs from what the programs expect, capture goes on
    /// without it and [`BpfSource::io_uring_status`] says why.
    pub io_uring: bool,
    /// Capture Unix-domain stream sockets too (`L4::Unix` flows named by their path). The
    /// port filter does not apply to them (they have no ports); the pid filter does. Off by
    /// default: on a typical host most Unix-socket bytes are logs (services' stdout to
    /// journald), D-Bus and X11, not request/response traffic.
    pub unix_sockets: bool,
    /// libssl to probe; `None`: the first of [`LIBSSL_CANDIDATES`] that exists.
    pub libssl: Option<PathBuf>,
    /// libgnutls to probe; `None`: the first of [`LIBGNUTLS_CANDIDATES`] that exists.
    pub libgnutls: Option<PathBuf>,
    /// libnspr4 (NSS's I/O) to probe; `None`: the first of [`LIBNSPR_CANDIDATES`] that exists.
    pub libnspr: Option<PathBuf>,
    /// Connections tracked in user space at once (beyond: oldest closed, counted).
    pub max_connections: usize,
    /// Stop after this long (`None`: until [`BpfControl::stop`]).
    pub duration: Option<Duration>,
    /// Capture l7tap's own process too (off: its own output never feeds back).
    pub trace_self: bool,
}

impl Default for BpfConfig {
    fn default() -> Self {
        BpfConfig {
            pids: Vec::new(),
            deny_pids: Vec::new(),
            ports: Vec::new(),
            snaplen: SNAPLEN_MAX,
            port_snaplen: Vec::new(),
            ring_bytes: 0,
            wakeup_bytes: 256 << 10,
            poll_interval: Duration::from_millis(20),
            tls: true,
            go_tls: true,
            go_binaries: Vec::new(),
            io_uring: true,
            unix_sockets: false,
            libssl: None,
            libgnutls: None,
            libnspr: None,
            max_connections: 65_536,
            duration: None,
            trace_self: false,
        }
    }
}

/// Why live capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The process lacks a privilege.
    #[error("missing privilege: {0}")]
    Privilege(String),
    /// The kernel lacks a feature.
    #[error("missing kernel feature: {0}")]
    KernelFeature(String),
    /// The BPF object failed to open, load (verifier) or attach.
    #[error("{what}: {source}")]
    Libbpf {
        /// What was being done.
        what: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

fn libbpf(what: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    let what = what.into();
    // Privileges are checked before anything is loaded, so EACCES/EPERM here come from the
    // verifier or a security module, not from a missing capability: no guessing.
    move |source| BpfError::Libbpf { what, source }
}

/// Maps that change the capture while it runs.
#[derive(Debug)]
struct ControlMaps {
    settings: MapHandle,
    ports: MapHandle,
    pids: MapHandle,
    stats: MapHandle,
    known_files: MapHandle,
}

/// A handle to change filters and stop a running [`BpfSource`] from another thread.
#[derive(Debug, Clone)]
pub struct BpfControl {
    maps: Arc<ControlMaps>,
    stop: Arc<AtomicBool>,
    /// The `struct l7tap_config` values, kept so one field can change without reading back.
    settings: Arc<Mutex<[u32; 9]>>,
}

impl BpfControl {
    /// Ends [`Source::run`] at its next poll tick.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The flag [`BpfControl::stop`] sets, for signal handlers (e.g. `signal-hook`'s
    /// `flag::register`).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn write_settings(&self, f: impl FnOnce(&mut [u32; 9])) -> Result<(), BpfError> {
        let mut s = self.settings.lock();
        f(&mut s);
        let mut v = Vec::with_capacity(32);
        for x in s.iter() {
            v.extend_from_slice(&x.to_le_bytes());
        }
        self.maps
            .settings
            .update(&0u32.to_le_bytes(), &v, MapFlags::ANY)
            .map_err(libbpf("updating the capture settings"))
    }

    /// Sets the global snaplen (bytes copied per syscall, at most [`SNAPLEN_MAX`]).
    pub fn set_snaplen(&self, snaplen: u32) -> Result<(), BpfError> {
        if snaplen == 0 || snaplen > SNAPLEN_MAX {
            return Err(BpfError::Config(format!(
                "snaplen must be 1..={SNAPLEN_MAX}, not {snaplen}"
            )));
        }
        self.write_settings(|s| s[0] = snaplen)
    }

    /// Adds a port to the allowlist (and turns the port filter on), with an optional
    /// per-port snaplen.
    pub fn allow_port(&self, port: u16, snaplen: Option<u32>) -> Result<(), BpfError> {
        let snap = snaplen.unwrap_or(0).min(SNAPLEN_MAX) | PORT_LISTED;
        self.maps
            .ports
            .update(
                &u32::from(port).to_le_bytes(),
                &snap.to_le_bytes(),
                MapFlags::ANY,
            )
            .map_err(libbpf("updating the port filter"))?;
        self.write_settings(|s| {
            s[1] = 1;
            s[6] = 1;
        })
    }

    /// Removes a port from the allowlist.
    pub fn remove_port(&self, port: u16) -> Result<(), BpfError> {
        self.maps
            .ports
            .update(
                &u32::from(port).to_le_bytes(),
                &0u32.to_le_bytes(),
                MapFlags::ANY,
            )
            .map_err(libbpf("updating the port filter"))
    }

    /// Turns the port filter off: every port is captured (per-port snaplens stay).
    pub fn clear_port_filter(&self) -> Result<(), BpfError> {
        self.write_settings(|s| s[1] = 0)
    }

    /// Adds a process to the allowlist (and turns the pid filter on).
    pub fn allow_pid(&self, pid: u32) -> Result<(), BpfError> {
        self.maps
            .pids
            .update(&pid.to_le_bytes(), &1u32.to_le_bytes(), MapFlags::ANY)
            .map_err(libbpf("updating the pid filter"))?;
        self.write_settings(|s| {
            s[2] = 1;
            s[5] = 1;
        })
    }

    /// Never captures this process.
    pub fn deny_pid(&self, pid: u32) -> Result<(), BpfError> {
        self.maps
            .pids
            .update(&pid.to_le_bytes(), &2u32.to_le_bytes(), MapFlags::ANY)
            .map_err(libbpf("updating the pid filter"))?;
        self.write_settings(|s| s[5] = 1)
    }

    /// Tells the kernel program that l7tap has looked at `key`'s file: its execs and mappings
    /// are not reported any more (until the LRU map pushes it out). A failed update only
    /// means the file is reported again.
    fn mark_known(&self, key: FileKey) {
        let _ = self
            .maps
            .known_files
            .update(&key.to_bytes(), &[1u8], MapFlags::ANY);
    }

    /// The kernel's counters, summed over CPUs, by name (see [`event::STAT_NAMES`]).
    pub fn kernel_stats(&self) -> StatsSnapshot {
        let mut out = Vec::with_capacity(event::STAT_NAMES.len());
        for (i, name) in event::STAT_NAMES.iter().enumerate() {
            let total = match self
                .maps
                .stats
                .lookup_percpu(&(i as u32).to_le_bytes(), MapFlags::ANY)
            {
                Ok(Some(per_cpu)) => per_cpu
                    .iter()
                    .map(|v| {
                        let mut w = [0u8; 8];
                        let n = v.len().min(8);
                        w[..n].copy_from_slice(&v[..n]);
                        u64::from_le_bytes(w)
                    })
                    .sum(),
                _ => 0,
            };
            out.push((name.to_string(), total));
        }
        StatsSnapshot(out)
    }
}

/// The live eBPF source. Programs stay attached while it lives; dropping it detaches them.
pub struct BpfSource {
    // Links first: they detach before the object (and its maps) go away.
    links: Vec<libbpf_rs::Link>,
    object: libbpf_rs::Object,
    /// One ring buffer per online CPU, in CPU order.
    rings: Vec<MapHandle>,
    control: BpfControl,
    config: BpfConfig,
    converter: Converter,
    /// None: the TLS library probes are off.
    tls: Option<TlsProber>,
    /// None: Go TLS probing is off.
    go_tls: Option<GoProber>,
    io_uring_status: String,
    ring_bytes: u32,
}

impl std::fmt::Debug for BpfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpfSource")
            .field("config", &self.config)
            .field("tls", &self.tls_status())
            .field("gnutls", &self.gnutls_status())
            .field("nss", &self.nss_status())
            .field("go_tls", &self.go_tls_status())
            .field("io_uring", &self.io_uring_status)
            .finish_non_exhaustive()
    }
}

/// A TLS library's functions and the programs that probe them: (symbol, entry program, return
/// program, required: without it the library is not probed at all; the others are probed
/// where the file has them).
type TlsProbes = [(&'static str, &'static str, &'static str, bool)];

/// OpenSSL's (the `_ex` forms are OpenSSL 1.1.1+; BoringSSL, which programs link in, lacks
/// them).
const SSL_PROBES: &TlsProbes = &[
    ("SSL_write", "ssl_write_enter", "ssl_write_exit", true),
    (
        "SSL_write_ex",
        "ssl_write_ex_enter",
        "ssl_write_ex_exit",
        false,
    ),
    ("SSL_read", "ssl_read_enter", "ssl_read_exit", true),
    (
        "SSL_read_ex",
        "ssl_read_ex_enter",
        "ssl_read_ex_exit",
        false,
    ),
];

/// NSS's, through NSPR: `PR_Write`/`PR_Send` and `PR_Read`/`PR_Recv(fd, buf, amount, ...)`
/// return the bytes moved (libcurl's NSS build uses the `Send`/`Recv` pair, Firefox the
/// others); the same programs serve both pairs.
const NSPR_PROBES: &TlsProbes = &[
    ("PR_Write", "nspr_write_enter", "nspr_write_exit", true),
    ("PR_Send", "nspr_write_enter", "nspr_write_exit", true),
    ("PR_Read", "nspr_read_enter", "nspr_read_exit", true),
    ("PR_Recv", "nspr_read_enter", "nspr_read_exit", true),
];

/// GnuTLS's: `gnutls_record_send`/`recv(session, data, size)` return the bytes moved, as
/// `SSL_write`/`SSL_read` do (but as `ssize_t`).
const GNUTLS_PROBES: &TlsProbes = &[
    (
        "gnutls_record_send",
        "gnutls_send_enter",
        "gnutls_send_exit",
        true,
    ),
    (
        "gnutls_record_recv",
        "gnutls_recv_enter",
        "gnutls_recv_exit",
        true,
    ),
];

impl BpfSource {
    /// Checks privileges and kernel features, loads the programs, applies the filters and
    /// attaches every hook. Errors name what is missing.
    pub fn open(config: BpfConfig) -> Result<BpfSource, BpfError> {
        if config.snaplen == 0 || config.snaplen > SNAPLEN_MAX {
            return Err(BpfError::Config(format!(
                "snaplen must be 1..={SNAPLEN_MAX}, not {}",
                config.snaplen
            )));
        }
        system::check_btf()?;
        system::check_privileges()?;
        system::ensure_tracefs()?;

        let cpus = libbpf_rs::num_possible_cpus()
            .map_err(libbpf("counting possible CPUs"))?
            .max(1) as u32;
        // Rings for the CPUs online (a VM may list many more possible ones).
        let online = system::online_cpus(cpus);
        let wanted = if config.ring_bytes == 0 {
            (AUTO_RING_TOTAL / online.len().max(1) as u32).max(AUTO_RING_MIN)
        } else {
            config.ring_bytes
        };
        let ring_bytes = wanted
            .max(4096)
            .checked_next_power_of_two()
            .ok_or_else(|| {
                BpfError::Config(format!("ring_bytes {} is too large", config.ring_bytes))
            })?;
        // The io_uring programs read kernel-internal structures (CO-RE relocated) and attach
        // to BTF tracepoints whose arguments changed across kernel versions: where they do
        // not load, everything else still does.
        let (object, io_uring_status) = match load_object(cpus, config.io_uring) {
            Ok(object) if config.io_uring => (object, "attached".to_string()),
            Ok(object) => (object, "off".to_string()),
            Err(e) if config.io_uring => {
                let object = load_object(cpus, false)?;
                (object, format!("not attached: {e}"))
            }
            Err(e) => return Err(e),
        };
        let handle = |name: &str| -> Result<MapHandle, BpfError> {
            let m = object
                .maps()
                .find(|m| m.name() == name)
                .ok_or_else(|| BpfError::Config(format!("BPF object has no map {name}")))?;
            MapHandle::try_from(&m).map_err(libbpf(format!("opening map {name}")))
        };
        let control = BpfControl {
            maps: Arc::new(ControlMaps {
                settings: handle("settings")?,
                ports: handle("ports")?,
                pids: handle("pids")?,
                stats: handle("stats")?,
                known_files: handle("known_files")?,
            }),
            stop: Arc::new(AtomicBool::new(false)),
            settings: Arc::new(Mutex::new([0; 9])),
        };
        // A ring per online CPU, each in its slot of the outer map (the kernel keeps them
        // alive while they are there; these handles are the reader's).
        let outer = handle("rings")?;
        let mut rings = Vec::with_capacity(online.len());
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        for cpu in online {
            let ring = MapHandle::create(
                libbpf_rs::MapType::RingBuf,
                Some(format!("l7tap_ring{cpu}")),
                0,
                0,
                ring_bytes,
                &opts,
            )
            .map_err(libbpf(format!("creating the ring buffer of CPU {cpu}")))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&ring)) as u32;
            outer
                .update(&cpu.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(libbpf(format!("installing the ring buffer of CPU {cpu}")))?;
            rings.push(ring);
        }

        // Filters before attaching, so that nothing unwanted is ever reported.
        for &(port, snap) in &config.port_snaplen {
            control
                .maps
                .ports
                .update(
                    &port.to_le_bytes(),
                    &snap.min(SNAPLEN_MAX).to_le_bytes(),
                    MapFlags::ANY,
                )
                .map_err(libbpf("setting per-port snaplen"))?;
        }
        for &port in &config.ports {
            control.allow_port(port, None)?;
        }
        for &pid in &config.pids {
            control.allow_pid(pid)?;
        }
        for &pid in &config.deny_pids {
            control.deny_pid(pid)?;
        }
        let self_pid = if config.trace_self {
            0
        } else {
            std::process::id()
        };
        let port_filter = u32::from(!config.ports.is_empty());
        let pid_allow = u32::from(!config.pids.is_empty());
        let pid_rules = u32::from(!config.pids.is_empty() || !config.deny_pids.is_empty());
        let port_rules = u32::from(!config.ports.is_empty() || !config.port_snaplen.is_empty());
        control.write_settings(|s| {
            *s = [
                config.snaplen,
                port_filter,
                pid_allow,
                // Wake the reader well before the ring fills, whatever was configured.
                config.wakeup_bytes.clamp(1, ring_bytes / 4),
                self_pid,
                pid_rules,
                port_rules,
                // SSL-call lookups only when the OpenSSL probes may be attached.
                u32::from(config.tls),
                u32::from(config.unix_sockets),
            ]
        })?;

        let mut links = Vec::new();
        for prog in object.progs_mut() {
            let section = prog.section().to_string_lossy().into_owned();
            let tracepoint = section
                .strip_prefix("tracepoint/")
                .filter(|tp| config.go_tls || config.tls || *tp != "sched/sched_process_exec")
                .filter(|tp| config.tls || *tp != "syscalls/sys_exit_mmap");
            let btf_tracepoint = section.strip_prefix("tp_btf/");
            if let Some(tp) = tracepoint.or(btf_tracepoint.filter(|_| prog.autoload())) {
                let link = prog.attach().map_err(|e| {
                    if e.kind() == libbpf_rs::ErrorKind::NotFound {
                        BpfError::KernelFeature(format!("tracepoint {tp} does not exist"))
                    } else {
                        libbpf(format!("attaching tracepoint {tp}"))(e)
                    }
                })?;
                links.push(link);
            }
        }
        let tls = config
            .tls
            .then(|| TlsProber::start(&object, &config, &mut links));
        let mut go_tls = None;
        if config.go_tls {
            let mut prober = GoProber::default();
            for path in &config.go_binaries {
                prober.consider(&object, path, true, &mut links);
            }
            for path in system::running_executables() {
                prober.consider(&object, &path, false, &mut links);
            }
            go_tls = Some(prober);
        }
        // What the probers looked at already: the kernel does not report it again.
        let go_seen = go_tls.iter().flat_map(|g: &GoProber| g.seen.iter());
        for &key in tls.iter().flat_map(|t| t.seen.iter()).chain(go_seen) {
            control.mark_known(key);
        }
        let converter = Converter::new(config.max_connections, system::monotonic_to_epoch_offset());
        Ok(BpfSource {
            links,
            object,
            rings,
            control,
            config,
            converter,
            tls,
            go_tls,
            io_uring_status,
            ring_bytes,
        })
    }

    /// A handle to change filters or stop the capture from another thread.
    pub fn control(&self) -> BpfControl {
        self.control.clone()
    }

    /// "attached to <path> (functions)", "off", or why the OpenSSL probes are not attached;
    /// then the other libssl files probed (`also <path> (pid P)`: a container's, ...).
    pub fn tls_status(&self) -> String {
        self.tls
            .as_ref()
            .map_or_else(|| "off".to_string(), |t| t.status(TlsLibrary::OpenSsl))
    }

    /// The same for GnuTLS.
    pub fn gnutls_status(&self) -> String {
        self.tls
            .as_ref()
            .map_or_else(|| "off".to_string(), |t| t.status(TlsLibrary::GnuTls))
    }

    /// The same for NSS (its NSPR library).
    pub fn nss_status(&self) -> String {
        self.tls
            .as_ref()
            .map_or_else(|| "off".to_string(), |t| t.status(TlsLibrary::Nss))
    }

    /// Which Go binaries' crypto/tls is probed, and which could not be (or "off").
    pub fn go_tls_status(&self) -> String {
        self.go_tls
            .as_ref()
            .map_or_else(|| "off".to_string(), GoProber::status)
    }

    /// "attached", "off", or why the io_uring programs are not attached.
    pub fn io_uring_status(&self) -> &str {
        &self.io_uring_status
    }

    /// The size of each CPU's ring buffer.
    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }
}

/// The kernel's accounting of l7tap's programs loaded on this host (every capture running):
/// (program name, total run time in ns, runs). The kernel only counts while
/// `kernel.bpf_stats_enabled` is 1 (`sysctl -w kernel.bpf_stats_enabled=1`), since counting
/// costs a little on every run.
pub fn program_run_stats() -> Vec<(String, u64, u64)> {
    libbpf_rs::query::ProgInfoIter::default()
        .filter_map(|p| {
            let name = p.name.to_string_lossy().into_owned();
            let ours = [
                "enter_",
                "exit_",
                "ssl_",
                "process_exit",
                "uring_",
                "go_tls_",
            ]
            .iter()
            .any(|pre| name.starts_with(pre));
            ours.then_some((name, p.run_time_ns, p.run_cnt))
        })
        .collect()
}

/// Opens the BPF object, sizes its per-CPU maps and loads it, with or without the io_uring
/// programs.
fn load_object(cpus: u32, io_uring: bool) -> Result<libbpf_rs::Object, BpfError> {
    let mut open = ObjectBuilder::default()
        .open_memory(BPF_OBJECT)
        .map_err(libbpf("opening the BPF object"))?;
    for mut m in open.maps_mut() {
        if m.name() == "rings" {
            m.set_max_entries(cpus)
                .map_err(libbpf("sizing the per-CPU ring array"))?;
        } else if m.name() == "scratch_map" {
            m.set_max_entries(cpus)
                .map_err(libbpf("sizing the per-CPU scratch"))?;
        }
    }
    for mut prog in open.progs_mut() {
        if prog
            .section()
            .to_string_lossy()
            .starts_with("tp_btf/io_uring")
        {
            prog.set_autoload(io_uring);
        }
    }
    open.load().map_err(libbpf(
        "loading the BPF programs (the kernel verifier's log is printed above)",
    ))
}

/// Go binaries probed at most (each costs two uprobes plus one per RET of `Read`).
pub const MAX_GO_BINARIES: usize = 64;
/// Binaries looked at at most (Go or not, by device and inode); past it, new ones are not.
const MAX_BINARIES_SEEN: usize = 65_536;
/// Binaries named in the status as not probed at most (the rest are counted).
const MAX_REFUSALS_NAMED: usize = 16;

/// The Go binaries probed for crypto/tls: those given and those of the running processes at
/// start, then the program of every exec (each binary once, whatever its path).
#[derive(Debug, Default)]
struct GoProber {
    seen: std::collections::HashSet<FileKey>,
    probed: Vec<String>,
    refused: Refusals,
    /// Go binaries past MAX_GO_BINARIES, and binaries past MAX_BINARIES_SEEN.
    over: usize,
}

impl GoProber {
    /// Looks at one binary; `asked`: named by the user (a refusal is then reported even when
    /// it is not a Go binary).
    fn consider(
        &mut self,
        object: &libbpf_rs::Object,
        path: &std::path::Path,
        asked: bool,
        links: &mut Vec<libbpf_rs::Link>,
    ) {
        let Some(key) = file_id(path) else {
            if asked {
                self.refuse(format!("{}: not found", path.display()));
            }
            return;
        };
        if self.seen.contains(&key) {
            return;
        }
        if self.seen.len() >= MAX_BINARIES_SEEN {
            self.over += 1;
            return;
        }
        self.seen.insert(key);
        let targets = match gotls::targets_of_file(path) {
            Ok(t) => t,
            Err(e @ gotls::NotProbed::Unsupported(_)) => {
                return self.refuse(format!("{}: {e}", path.display()));
            }
            Err(e) => {
                if asked {
                    self.refuse(format!("{}: {e}", path.display()));
                }
                return;
            }
        };
        if self.probed.len() >= MAX_GO_BINARIES {
            self.over += 1;
            return;
        }
        match attach_go_targets(object, path, &targets, links) {
            Ok(()) => self
                .probed
                .push(format!("{} ({})", path.display(), targets.go_version)),
            Err(e) => self.refuse(format!("{}: {e}", path.display())),
        }
    }

    fn refuse(&mut self, why: String) {
        self.refused.push(why);
    }

    fn status(&self) -> String {
        let mut status = if self.probed.is_empty() {
            "no Go binary using crypto/tls found yet".to_string()
        } else {
            format!("probing {}", self.probed.join(", "))
        };
        if self.over > 0 {
            status.push_str(&format!(
                "; {} more not looked at (limits {MAX_GO_BINARIES} Go binaries, {MAX_BINARIES_SEEN} binaries)",
                self.over
            ));
        }
        self.refused.describe(&mut status);
        status
    }
}

/// Files a prober could not probe, and why: the first [`MAX_REFUSALS_NAMED`] named, the rest
/// counted.
#[derive(Debug, Default)]
struct Refusals {
    named: Vec<String>,
    more: usize,
}

impl Refusals {
    fn push(&mut self, why: String) {
        if self.named.len() < MAX_REFUSALS_NAMED {
            self.named.push(why);
        } else {
            self.more += 1;
        }
    }

    /// Appends "; not probed: ..." to a status, when there is something to say.
    fn describe(&self, status: &mut String) {
        if !self.named.is_empty() {
            status.push_str(&format!("; not probed: {}", self.named.join(", ")));
            if self.more > 0 {
                status.push_str(&format!(" and {} more", self.more));
            }
        }
    }
}

fn attach_go_targets(
    object: &libbpf_rs::Object,
    path: &std::path::Path,
    t: &gotls::GoTlsTargets,
    links: &mut Vec<libbpf_rs::Link>,
) -> Result<(), String> {
    let mut attach = |prog_name: &str, offset: u64| -> Result<(), String> {
        let prog = object
            .progs_mut()
            .find(|p| p.name() == prog_name)
            .ok_or_else(|| format!("program {prog_name} missing"))?;
        let offset = usize::try_from(offset).map_err(|e| e.to_string())?;
        let link = prog
            .attach_uprobe_with_opts(-1, path, offset, UprobeOpts::default())
            .map_err(|e| format!("{prog_name} at {offset:#x}: {e}"))?;
        links.push(link);
        Ok(())
    };
    // RETs first: an entry probe without its returns would leave calls in the map.
    for &ret in &t.read_rets {
        attach("go_tls_read_ret", ret)?;
    }
    attach("go_tls_write_enter", t.write_entry)?;
    attach("go_tls_read_enter", t.read_entry)
}

/// The probes of a TLS library.
fn probes_of(lib: TlsLibrary) -> &'static TlsProbes {
    match lib {
        TlsLibrary::OpenSsl => SSL_PROBES,
        TlsLibrary::GnuTls => GNUTLS_PROBES,
        TlsLibrary::Nss => NSPR_PROBES,
    }
}

/// Attaches `probes` to the library file at `path`: the functions probed. All or nothing for
/// the required functions (a failure detaches what was attached); an optional function the
/// file lacks is left out.
/// `offsets`: the functions' file offsets when the caller found them (else libbpf looks each
/// name up in the file).
fn attach_probes(
    object: &libbpf_rs::Object,
    path: &std::path::Path,
    probes: &TlsProbes,
    offsets: Option<&[(&'static str, u64)]>,
    links: &mut Vec<libbpf_rs::Link>,
) -> Result<Vec<&'static str>, String> {
    let mut attached = Vec::new();
    let mut mine = Vec::new();
    for &(sym, enter, exit, required) in probes {
        let mut pair = Vec::new();
        let mut failed = None;
        let at = match offsets {
            None => Some(0),
            Some(o) => o
                .iter()
                .find(|(n, _)| *n == sym)
                .and_then(|(_, off)| usize::try_from(*off).ok()),
        };
        let Some(at) = at else {
            if required {
                return Err(format!("{sym}: not in the file"));
            }
            continue;
        };
        for (prog_name, retprobe) in [(enter, false), (exit, true)] {
            let Some(prog) = object.progs_mut().find(|p| p.name() == prog_name) else {
                return Err(format!("program {prog_name} missing"));
            };
            let opts = UprobeOpts {
                retprobe,
                func_name: offsets.is_none().then(|| sym.to_string()),
                ..Default::default()
            };
            match prog.attach_uprobe_with_opts(-1, path, at, opts) {
                Ok(link) => pair.push(link),
                Err(e) => {
                    failed = Some(format!("{sym}: {e}"));
                    break;
                }
            }
        }
        match failed {
            None => {
                mine.extend(pair);
                attached.push(sym);
            }
            Some(e) if required => return Err(e),
            Some(_) => {} // (dropping `pair` detaches a lone entry probe)
        }
    }
    links.extend(mine);
    Ok(attached)
}

/// The file a `/proc/PID/exe` or `/proc/PID/map_files/...` link points to, by its own path
/// when that path reaches the same file from here (so that probing it does not depend on
/// the process still running); else the link itself (another mount namespace).
fn stable_path(link: &std::path::Path) -> PathBuf {
    match std::fs::read_link(link) {
        Ok(target) if target.is_absolute() && file_id(&target) == file_id(link) => target,
        _ => link.to_path_buf(),
    }
}

/// TLS library files probed at most besides the system's own (a container's libssl, a copy
/// loaded through `LD_LIBRARY_PATH`, ...); each costs two uprobes per function.
pub const MAX_TLS_LIBRARIES: usize = 64;

/// The TLS libraries probed: the system's (the first of its usual paths, or the one
/// configured), then every other file of those libraries that a process maps: found in
/// `/proc/PID/maps` of the processes running at start, and afterwards whenever the kernel
/// program sees a process map one l7tap has not looked at (an `EV_MAPPED` event: at program
/// start, or at a dlopen however late, from a container's filesystem or a private copy).
/// Probes are per file (inode), so a library probed once is probed for every process that
/// maps it, now or later.
#[derive(Debug, Default)]
struct TlsProber {
    /// Library and program files looked at (device, inode).
    seen: std::collections::HashSet<FileKey>,
    /// The system library's status, per [`TlsLibrary::ALL`] entry.
    system: [String; 3],
    /// Other files probed: (library, "path (how found)").
    probed: Vec<(TlsLibrary, String)>,
    refused: Refusals,
    /// Files not probed past [`MAX_TLS_LIBRARIES`] or [`MAX_BINARIES_SEEN`].
    over: usize,
}

impl TlsProber {
    /// Probes the system libraries (or the configured ones) and those the running
    /// processes map.
    fn start(
        object: &libbpf_rs::Object,
        config: &BpfConfig,
        links: &mut Vec<libbpf_rs::Link>,
    ) -> TlsProber {
        let mut p = TlsProber::default();
        for (i, lib) in TlsLibrary::ALL.into_iter().enumerate() {
            let configured = match lib {
                TlsLibrary::OpenSsl => config.libssl.clone(),
                TlsLibrary::GnuTls => config.libgnutls.clone(),
                TlsLibrary::Nss => config.libnspr.clone(),
            };
            let candidates = lib.candidates();
            let Some(path) =
                configured.or_else(|| candidates.iter().map(PathBuf::from).find(|c| c.exists()))
            else {
                let name = candidates
                    .first()
                    .and_then(|c| c.rsplit('/').next())
                    .unwrap_or("the library");
                p.system[i] = format!("not attached: no {name} found");
                continue;
            };
            if let Some(id) = file_id(&path) {
                p.seen.insert(id);
            }
            p.system[i] = match attach_probes(object, &path, probes_of(lib), None, links) {
                Ok(syms) => format!("attached to {} ({})", path.display(), syms.join(", ")),
                Err(e) => format!("not attached to {}: {e}", path.display()),
            };
        }
        for pid in system::running_pids() {
            p.scan_maps(object, pid, links);
            p.consider_program(
                object,
                &PathBuf::from(format!("/proc/{pid}/exe")),
                pid,
                links,
            );
        }
        p
    }

    /// Probes a program (`exe`, run by `pid`) itself when it has OpenSSL linked in (not yet
    /// probed).
    fn consider_program(
        &mut self,
        object: &libbpf_rs::Object,
        exe: &std::path::Path,
        pid: u32,
        links: &mut Vec<libbpf_rs::Link>,
    ) {
        let Some(id) = file_id(exe) else {
            return;
        };
        if self.seen.contains(&id) {
            return;
        }
        let functions = system::openssl_functions(exe);
        if functions.is_empty() {
            if self.seen.len() < MAX_BINARIES_SEEN {
                self.seen.insert(id);
            }
            return;
        }
        let shown = || {
            let name = std::fs::read_link(exe).unwrap_or_else(|_| exe.to_path_buf());
            format!("{} (OpenSSL linked in, pid {pid})", name.display())
        };
        self.consider(
            object,
            TlsLibrary::OpenSsl,
            exe,
            Some(&functions),
            shown,
            links,
        );
    }

    /// Probes the TLS libraries `pid` has mapped that are not probed yet. False when its maps
    /// cannot be read (it has ended).
    fn scan_maps(
        &mut self,
        object: &libbpf_rs::Object,
        pid: u32,
        links: &mut Vec<libbpf_rs::Link>,
    ) -> bool {
        let Some(libraries) = system::mapped_tls_libraries(pid) else {
            return false;
        };
        for (lib, file, shown) in libraries {
            self.consider(
                object,
                lib,
                &file,
                None,
                || format!("{shown} (pid {pid})"),
                links,
            );
        }
        true
    }

    fn consider(
        &mut self,
        object: &libbpf_rs::Object,
        lib: TlsLibrary,
        file: &std::path::Path,
        offsets: Option<&[(&'static str, u64)]>,
        shown: impl FnOnce() -> String,
        links: &mut Vec<libbpf_rs::Link>,
    ) {
        let Some(id) = file_id(file) else {
            return;
        };
        if self.seen.contains(&id) {
            return;
        }
        if self.seen.len() >= MAX_BINARIES_SEEN || self.probed.len() >= MAX_TLS_LIBRARIES {
            self.over += 1;
            return;
        }
        self.seen.insert(id);
        let shown = shown();
        match attach_probes(object, &stable_path(file), probes_of(lib), offsets, links) {
            Ok(_) => self.probed.push((lib, shown)),
            Err(e) => self.refused.push(format!("{shown}: {e}")),
        }
    }

    /// The status of one library: the system's file, then the others probed.
    fn status(&self, lib: TlsLibrary) -> String {
        let i = TlsLibrary::ALL.iter().position(|l| *l == lib).unwrap_or(0);
        let mut status = self.system[i].clone();
        let others: Vec<&str> = self
            .probed
            .iter()
            .filter(|(l, _)| *l == lib)
            .map(|(_, s)| s.as_str())
            .collect();
        if !others.is_empty() {
            status.push_str(&format!("; also {}", others.join(", ")));
        }
        if lib == TlsLibrary::OpenSsl {
            // (Refusals and limits once, with the first library.)
            if self.over > 0 {
                status.push_str(&format!(
                    "; {} TLS libraries or programs not looked at (limits {MAX_TLS_LIBRARIES} libraries, {MAX_BINARIES_SEEN} files)",
                    self.over
                ));
            }
            self.refused.describe(&mut status);
        }
        status
    }
}

/// A file's (device, inode) as the kernel names it, following links
/// (`/proc/PID/map_files/...`, `/proc/PID/exe`).
fn file_id(path: &std::path::Path) -> Option<FileKey> {
    std::fs::metadata(path)
        .ok()
        .map(|m| FileKey::of_metadata(&m))
}

impl BpfSource {
    /// Probes what a [`Sighting`] shows: a program started (its Go TLS, its linked-in
    /// OpenSSL) or a TLS library mapped. False when it could not be looked at (the process
    /// ended first, and its program cannot be found by the filename it was started by).
    fn look_at(&mut self, s: &Sighting) -> bool {
        let Some(path) = &s.program else {
            return self
                .tls
                .as_mut()
                .is_some_and(|t| t.scan_maps(&self.object, s.pid, &mut self.links));
        };
        // The running process's program; else the file it was started by when that is
        // still the same file (a program that ran for a millisecond).
        let exe = PathBuf::from(format!("/proc/{}/exe", s.pid));
        let exe = if std::fs::metadata(&exe).is_ok() {
            exe
        } else {
            let p = PathBuf::from(&**path);
            let same = file_id(&p) == Some(s.key);
            if !(p.is_absolute() && same) {
                return false;
            }
            p
        };
        if let Some(prober) = self.go_tls.as_mut() {
            prober.consider(&self.object, &exe, false, &mut self.links);
        }
        if let Some(prober) = self.tls.as_mut() {
            prober.consider_program(&self.object, &exe, s.pid, &mut self.links);
        }
        true
    }
}

impl Source for BpfSource {
    fn run(&mut self, emit: &mut dyn FnMut(Segment) -> bool) -> Result<(), SourceError> {
        self.run_live(emit, &mut || {})
    }

    fn run_live(
        &mut self,
        emit: &mut dyn FnMut(Segment) -> bool,
        idle: &mut dyn FnMut(),
    ) -> Result<(), SourceError> {
        let deadline = self.config.duration.map(|d| Instant::now() + d);
        let mut pending: Vec<Segment> = Vec::with_capacity(1024);
        // Events are copied out of the per-CPU rings (once: segments slice their payload from
        // that copy) and converted in time order.
        let held = RefCell::new(reorder::Reorder::default());
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        let io_err = |what: &str, e: libbpf_rs::Error| SourceError::Io {
            path: "eBPF ring buffer".into(),
            source: std::io::Error::other(format!("{what}: {e}")),
        };
        for (i, ring) in self.rings.iter().enumerate() {
            let held = &held;
            builder
                .add(ring, move |data: &[u8]| {
                    held.borrow_mut().push(i, data);
                    0
                })
                .map_err(|e| io_err("adding a ring buffer", e))?;
        }
        let one_ring = self.rings.len() == 1;
        let ring = builder
            .build()
            .map_err(|e| io_err("opening the ring buffers", e))?;
        let stop = self.control.stop.clone();
        loop {
            let stopping =
                stop.load(Ordering::Relaxed) || deadline.is_some_and(|d| Instant::now() >= d);
            if !stopping {
                let rc = ring.poll_raw(self.config.poll_interval);
                if rc < 0 && rc != -libc::EINTR {
                    return Err(io_err(
                        "polling",
                        libbpf_rs::Error::from(std::io::Error::from_raw_os_error(-rc)),
                    ));
                }
            }
            // Every event stamped before this, minus the hold, is in its ring by now.
            let drained_at = system::monotonic_ns();
            // Events queued without a wakeup (below wakeup_bytes) are read here; on the way
            // out, this drains what is still in the rings.
            ring.consume_raw();
            let upto = if stopping || one_ring {
                u64::MAX
            } else {
                drained_at.saturating_sub(reorder::HOLD_NS)
            };
            let converter = &mut self.converter;
            held.borrow_mut()
                .release(upto, &mut |ev| converter.push(ev, &mut pending));
            for seg in pending.drain(..) {
                if !emit(seg) {
                    return Err(SourceError::Stopped);
                }
            }
            // New programs and TLS libraries: probed before they get far (the kernel wakes
            // the reader for these events), then marked known to the kernel.
            for s in self.converter.take_sightings() {
                if self.look_at(&s) {
                    self.control.mark_known(s.key);
                }
            }
            idle();
            if stopping {
                break;
            }
        }
        Ok(())
    }

    fn stats(&self) -> StatsSnapshot {
        let mut s = self.control.kernel_stats();
        let c = self.converter.stats();
        s.merge(&StatsSnapshot(vec![
            ("bpf_records_read".into(), c.events),
            ("bpf_records_undecodable".into(), c.decode_errors),
            ("bpf_segments".into(), c.segments),
            ("bpf_stream_gap_bytes".into(), c.gap_bytes),
            ("bpf_connections_restarted".into(), c.restarted),
            ("bpf_connections_evicted".into(), c.evicted),
            ("bpf_connections_closed".into(), c.closed),
            ("bpf_tls_ciphertext_bytes".into(), c.tls_ciphertext_bytes),
            ("bpf_execs_dropped".into(), c.execs_dropped),
            ("bpf_exec_events".into(), c.exec_events),
            ("bpf_mapped_events".into(), c.mapped_events),
            ("tls_unbound_bound".into(), c.tls_unbound_bound),
            ("tls_unbound_dropped".into(), c.tls_unbound_dropped),
            ("unix_paths_not_kept".into(), c.unix_paths_not_kept),
            (
                "bpf_go_tls_binaries".into(),
                self.go_tls.as_ref().map_or(0, |g| g.probed.len() as u64),
            ),
            (
                "bpf_tls_libraries_extra".into(),
                self.tls.as_ref().map_or(0, |t| t.probed.len() as u64),
            ),
        ]));
        s
    }
}
