//! What the kernel and the process must offer before anything is loaded, checked up front so
//! that a missing piece is named instead of surfacing as a bare errno.

use crate::BpfError;
use std::path::Path;

/// Capability bits (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Loading BPF programs and attaching tracepoints needs CAP_BPF + CAP_PERFMON (or
/// CAP_SYS_ADMIN, which root has).
pub fn check_privileges() -> Result<(), BpfError> {
    let Some(caps) = effective_caps() else {
        return Err(BpfError::Privilege(
            "cannot read the capability set from /proc/self/status".into(),
        ));
    };
    let has = |c: u32| caps & (1u64 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    Err(BpfError::Privilege(format!(
        "loading eBPF programs needs root, or CAP_BPF and CAP_PERFMON (effective capabilities: {caps:#x})"
    )))
}

/// CPU numbers in the kernel's list format (`0-3,8,10-11`, as in
/// /sys/devices/system/cpu/online); `None` when it does not parse. Ranges are capped at
/// `limit` (the possible CPUs).
pub fn parse_cpu_list(s: &str, limit: u32) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.trim().parse::<u32>().ok()?;
                (n, n)
            }
        };
        if a > b {
            return None;
        }
        out.extend((a..=b).take_while(|c| *c < limit));
    }
    (!out.is_empty()).then_some(out)
}

/// The CPUs online now (their rings are created; a CPU brought online later has none, and
/// its events are counted as lost); every possible CPU when the list cannot be read.
pub fn online_cpus(possible: u32) -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s, possible))
        .unwrap_or_else(|| (0..possible).collect())
}

/// CO-RE needs the kernel's BTF.
pub fn check_btf() -> Result<(), BpfError> {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        Ok(())
    } else {
        Err(BpfError::KernelFeature(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux is missing; it needs CONFIG_DEBUG_INFO_BTF=y)".into(),
        ))
    }
}

/// Syscall tracepoints are found through tracefs; mounts it when it is not (as root).
pub fn ensure_tracefs() -> Result<(), BpfError> {
    const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let ready = || {
        CANDIDATES
            .iter()
            .any(|d| Path::new(d).join("events/syscalls").is_dir())
    };
    if ready() {
        return Ok(());
    }
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tracefs", "nodev", CANDIDATES[0]])
        .output();
    if ready() {
        return Ok(());
    }
    let why = match mounted {
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    Err(BpfError::KernelFeature(format!(
        "syscall tracepoints are not visible: tracefs is not mounted at /sys/kernel/tracing and \
         mounting it failed ({why}); run `mount -t tracefs nodev /sys/kernel/tracing` as root, or \
         the kernel lacks CONFIG_FTRACE_SYSCALLS"
    )))
}

/// Nanoseconds to add to a CLOCK_MONOTONIC stamp (what `bpf_ktime_get_ns` returns) to get
/// Unix-epoch time.
pub fn monotonic_to_epoch_offset() -> i128 {
    let mono = monotonic_ns();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    wall - i128::from(mono)
}

#[allow(unsafe_code)]
/// CLOCK_MONOTONIC in ns: the clock of the events' timestamps (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid, exclusive pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Where Debian, Ubuntu and Fedora keep OpenSSL 3's libssl.
pub const LIBSSL_CANDIDATES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/usr/lib/libssl.so.3",
];

/// Where Debian, Ubuntu and Fedora keep GnuTLS (wget, apt, GNOME and many other programs use it
/// instead of OpenSSL).
pub const LIBGNUTLS_CANDIDATES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/usr/lib64/libgnutls.so.30",
    "/usr/lib/libgnutls.so.30",
];

/// Where Debian, Ubuntu and Fedora keep NSPR, whose PR_Write/PR_Read/PR_Send/PR_Recv carry
/// NSS's plaintext (Firefox, Thunderbird, libcurl's NSS build, 389 Directory Server).
pub const LIBNSPR_CANDIDATES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/libnspr4.so",
    "/lib/x86_64-linux-gnu/libnspr4.so",
    "/usr/lib64/libnspr4.so",
    "/usr/lib/libnspr4.so",
];

/// The TLS libraries l7tap probes, by the start of their file names (`libssl.so.3` is a
/// symlink to `libssl.so.3.0.x` on some distributions, and `/proc/PID/maps` shows the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsLibrary {
    /// OpenSSL 3's libssl.
    OpenSsl,
    /// GnuTLS.
    GnuTls,
    /// Mozilla's NSS, through NSPR's I/O calls (`libnspr4.so`).
    Nss,
}

impl TlsLibrary {
    /// All of them, in the order they are reported.
    pub const ALL: [TlsLibrary; 3] = [TlsLibrary::OpenSsl, TlsLibrary::GnuTls, TlsLibrary::Nss];

    /// The library a mapped file's name says it is: `libssl.so.3`, `libgnutls.so.30`,
    /// `libnspr4.so` (and their longer versions), also with a tag after the stem as tools that
    /// bundle libraries rename them: `libssl-1a2b3c4d.so.3` in a Python wheel repaired by
    /// auditwheel (psycopg2-binary, for one), whose extension modules load that copy.
    pub fn of_file_name(name: &str) -> Option<TlsLibrary> {
        [
            ("libssl", ".so.3", TlsLibrary::OpenSsl),
            ("libgnutls", ".so.30", TlsLibrary::GnuTls),
            ("libnspr4", ".so", TlsLibrary::Nss),
        ]
        .into_iter()
        .find(|(stem, so, _)| {
            let Some(rest) = name.strip_prefix(stem) else {
                return false;
            };
            // An optional "-tag" (letters and digits), then the .so version.
            let rest = match rest.strip_prefix('-') {
                Some(tagged) => {
                    let tag = tagged.bytes().take_while(u8::is_ascii_alphanumeric).count();
                    if tag == 0 {
                        return false;
                    }
                    &tagged[tag..]
                }
                None => rest,
            };
            rest.starts_with(so)
        })
        .map(|(_, _, lib)| lib)
    }

    /// Where distributions keep it.
    pub fn candidates(self) -> &'static [&'static str] {
        match self {
            TlsLibrary::OpenSsl => &LIBSSL_CANDIDATES,
            TlsLibrary::GnuTls => &LIBGNUTLS_CANDIDATES,
            TlsLibrary::Nss => &LIBNSPR_CANDIDATES,
        }
    }
}

/// The TLS libraries process `pid` has mapped, each as a `/proc/PID/map_files/START-END` path
/// (the kernel resolves it to the very file mapped, in whatever mount namespace: a
/// container's own libssl, or a copy found through `LD_LIBRARY_PATH`) with the path the
/// process knows it by. `None` when the process is gone or its maps cannot be read.
pub fn mapped_tls_libraries(pid: u32) -> Option<Vec<(TlsLibrary, std::path::PathBuf, String)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    Some(parse_tls_maps(pid, &maps))
}

/// [`mapped_tls_libraries`] of a `/proc/PID/maps` text: one entry per library file.
pub fn parse_tls_maps(pid: u32, maps: &str) -> Vec<(TlsLibrary, std::path::PathBuf, String)> {
    let mut out: Vec<(TlsLibrary, std::path::PathBuf, String)> = Vec::new();
    for line in maps.lines() {
        // "start-end perms offset dev inode   path" (the path may hold spaces; a file
        // replaced since it was mapped ends in " (deleted)": its map_files link still
        // reaches the mapped one)
        let mut rest = line;
        let mut fields = [""; 5];
        for f in &mut fields {
            rest = rest.trim_start();
            let end = rest.find(' ').unwrap_or(rest.len());
            *f = &rest[..end];
            rest = &rest[end..];
        }
        let (range, path) = (fields[0], rest.trim_start());
        let name = path.trim_end_matches(" (deleted)");
        let Some(lib) = name.rsplit('/').next().and_then(TlsLibrary::of_file_name) else {
            continue;
        };
        if !name.starts_with('/') || out.iter().any(|(_, _, p)| p == path) {
            continue;
        }
        let map_file = std::path::PathBuf::from(format!("/proc/{pid}/map_files/{range}"));
        out.push((lib, map_file, path.to_string()));
    }
    out
}

/// OpenSSL's (or BoringSSL's) functions that the ELF file at `path` defines itself, with
/// their file offsets (where a uprobe goes): a program with the library linked in (Node.js's
/// own builds export them for native addons; a static build that is not stripped has them in
/// `.symtab`). Empty unless it defines both `SSL_write` and `SSL_read`; a program that imports
/// them from libssl defines neither. One pass over the symbol tables (libbpf, given names,
/// would read them once per probe: over a second for Node.js's 180,000 symbols).
pub fn openssl_functions(path: &Path) -> Vec<(&'static str, u64)> {
    use object::{Object, ObjectSection, ObjectSymbol};
    const NAMES: [&str; 4] = ["SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"];
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return Vec::new();
    };
    let mut found: Vec<(&'static str, u64)> = Vec::new();
    for sym in elf.dynamic_symbols().chain(elf.symbols()) {
        if !sym.is_definition() {
            continue;
        }
        let Some(name) = sym
            .name()
            .ok()
            .and_then(|n| NAMES.iter().find(|m| **m == n))
        else {
            continue;
        };
        if found.iter().any(|(n, _)| n == name) {
            continue;
        }
        let offset = sym
            .section_index()
            .and_then(|i| elf.section_by_index(i).ok())
            .and_then(|sec| {
                let (file_off, _) = sec.file_range()?;
                Some(file_off + sym.address().checked_sub(sec.address())?)
            });
        if let Some(offset) = offset {
            found.push((name, offset));
        }
        if found.len() == NAMES.len() {
            break;
        }
    }
    let has = |n: &str| found.iter().any(|(m, _)| *m == n);
    if !(has("SSL_write") && has("SSL_read")) {
        found.clear();
    }
    found
}

/// The running processes' ids, l7tap's own left out.
pub fn running_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != me)
        .collect()
}

/// The executables of the running processes, as `/proc/PID/exe` (a path the kernel resolves
/// to the binary even when it was deleted or lives in another mount namespace). l7tap's own
/// process is left out.
pub fn running_executables() -> Vec<std::path::PathBuf> {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && *n != me)
        .map(|pid| std::path::PathBuf::from(format!("/proc/{pid}/exe")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_defined_or_only_imported() {
        // libssl defines them (its dynamic symbols, as `nm -D` lists them); a program that
        // links it dynamically only imports them; this test binary has neither.
        if let Some(lib) = LIBSSL_CANDIDATES.iter().find(|c| Path::new(c).exists()) {
            let found = openssl_functions(Path::new(lib));
            assert_eq!(found.len(), 4, "{lib}: {found:?}");
            let nm = std::process::Command::new("nm")
                .args(["-D", "--defined-only"])
                .arg(lib)
                .output();
            if let Ok(nm) = nm {
                let listed = String::from_utf8_lossy(&nm.stdout).into_owned();
                for (name, offset) in &found {
                    // A shared library's text is mapped at file offset = address.
                    // (Versioned: `SSL_write@@OPENSSL_3.0.0`.)
                    let line = format!("{offset:016x} T {name}@");
                    assert!(listed.contains(&line), "{line}");
                }
            }
        }
        for importer in ["/usr/bin/curl", "/usr/bin/openssl"] {
            if Path::new(importer).exists() {
                assert!(
                    openssl_functions(Path::new(importer)).is_empty(),
                    "{importer}"
                );
            }
        }
        assert!(openssl_functions(Path::new("/proc/self/exe")).is_empty());
        assert!(openssl_functions(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn tls_libraries_in_a_maps_file() {
        let maps = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 08:01 1311  /usr/bin/python3.11
7f1c2a200000-7f1c2a25e000 r--p 00000000 08:01 2049  /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a25e000-7f1c2a2b9000 r-xp 0005e000 08:01 2049  /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2b000000-7f1c2b100000 r-xp 00000000 00:31 77    /opt/my app/lib/libgnutls.so.30.34.3 (deleted)
7f1c2c000000-7f1c2c001000 rw-p 00000000 00:00 0     [heap]
7f1c2d000000-7f1c2d001000 r--p 00000000 08:01 99    /usr/lib/x86_64-linux-gnu/libssl.so.1.1
7f1c2e000000-7f1c2e001000 r--p 00000000 08:01 98    /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2f000000-7f1c2f040000 r-xp 00000000 08:01 97    /usr/lib/x86_64-linux-gnu/libnspr4.so
7f1c30000000-7f1c30040000 r-xp 00000000 08:01 96    /usr/lib/x86_64-linux-gnu/libssl3.so
7f1c31000000-7f1c31040000 r-xp 00000000 08:01 95    /venv/site-packages/psycopg2_binary.libs/libssl-81ffa89e.so.3
7f1c32000000-7f1c32040000 r-xp 00000000 08:01 94    /opt/x/libssl-.so.3
";
        let libs = parse_tls_maps(42, maps);
        assert_eq!(
            libs,
            vec![
                (
                    TlsLibrary::OpenSsl,
                    "/proc/42/map_files/7f1c2a200000-7f1c2a25e000".into(),
                    "/usr/lib/x86_64-linux-gnu/libssl.so.3".to_string()
                ),
                (
                    TlsLibrary::GnuTls,
                    "/proc/42/map_files/7f1c2b000000-7f1c2b100000".into(),
                    "/opt/my app/lib/libgnutls.so.30.34.3 (deleted)".to_string()
                ),
                // (NSS's own libssl3.so is not OpenSSL: NSS is probed through NSPR.)
                (
                    TlsLibrary::Nss,
                    "/proc/42/map_files/7f1c2f000000-7f1c2f040000".into(),
                    "/usr/lib/x86_64-linux-gnu/libnspr4.so".to_string()
                ),
                // A wheel's bundled copy (auditwheel's name); not an empty tag.
                (
                    TlsLibrary::OpenSsl,
                    "/proc/42/map_files/7f1c31000000-7f1c31040000".into(),
                    "/venv/site-packages/psycopg2_binary.libs/libssl-81ffa89e.so.3".to_string()
                ),
            ]
        );
    }

    #[test]
    fn cpu_lists_in_the_kernel_format() {
        assert_eq!(parse_cpu_list("0-1\n", 2), Some(vec![0, 1]));
        assert_eq!(
            parse_cpu_list("0-3,8,10-11", 64),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("0", 1), Some(vec![0]));
        // Capped at the possible CPUs (the ring array has no slot beyond them).
        assert_eq!(parse_cpu_list("0-7", 4), Some(vec![0, 1, 2, 3]));
        for bad in ["", "x", "3-1", "1-", "0,,a"] {
            assert_eq!(parse_cpu_list(bad, 8), None, "{bad:?}");
        }
    }
}
