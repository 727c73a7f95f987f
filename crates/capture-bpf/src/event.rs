//! The kernel's event layout (`struct l7tap_event` in `bpf/l7tap.h`), decoded without unsafe.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Size of the fixed header that precedes each payload.
pub const HEADER_LEN: usize = 104;

/// `event.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Payload of one syscall (or one message of sendmmsg/recvmmsg, or one SSL call).
    Data,
    /// connect() or accept() finished: the socket's role is known.
    Open,
    /// close() of a socket that had been reported.
    Close,
    /// A process exited.
    Exit,
    /// A process exec'd a program user space has not looked at: `sock_id` is the file's
    /// inode, `offset` its device (the kernel's `dev_t`), the payload the filename given to
    /// execve (see [`RawEvent::file_key`], [`RawEvent::exec_path`]).
    Exec,
    /// The names of a Unix-domain socket first seen (sent before its first open or data
    /// event): the payload is the socket's own name and its peer's, each in
    /// [`UNIX_NAME_SLOT`] bytes, their lengths in `lport` and `rport` (see
    /// [`RawEvent::unix_names`]).
    UnixNames,
    /// A process mapped the code of a TLS library file user space has not looked at
    /// (`libssl.so*`, `libgnutls.so*`): `sock_id` and `offset` as for [`Kind::Exec`].
    Mapped,
}

/// A file as the kernel names it: (device as the kernel's `dev_t`, inode). The key of the
/// kernel's `known_files` map (`struct file_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// `s_dev`: major << 20 | minor.
    pub dev: u64,
    /// `i_ino`.
    pub ino: u64,
}

impl FileKey {
    /// The key of a file user space has `stat`ed (glibc's `st_dev` encoding turned into the
    /// kernel's).
    pub fn of_metadata(m: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        FileKey::of_stat(m.dev(), m.ino())
    }

    /// The key of a file by `stat`'s `st_dev` and `st_ino`.
    pub fn of_stat(st_dev: u64, ino: u64) -> FileKey {
        let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
        let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
        FileKey {
            dev: (major << 20) | (minor & 0xf_ffff),
            ino,
        }
    }

    /// The key's bytes, as the kernel map holds them.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.dev.to_ne_bytes());
        b[8..].copy_from_slice(&self.ino.to_ne_bytes());
        b
    }
}

/// `sun_path`'s size: the longest name in a [`Kind::UnixNames`] event.
pub const UNIX_NAME_LEN: usize = 108;
/// The room for each name in a [`Kind::UnixNames`] event.
pub const UNIX_NAME_SLOT: usize = 128;
/// `AF_UNIX`.
pub const AF_UNIX: u16 = 1;

/// Flag bits of `event.flags`.
pub mod flags {
    /// Fewer bytes were copied than moved (snaplen).
    pub const TRUNCATED: u8 = 1;
    /// Plaintext from an OpenSSL uprobe.
    pub const TLS: u8 = 2;
    /// The kernel (re)created the connection state: offsets restart at 0.
    pub const NEW_STATE: u8 = 4;
    /// The payload could not be read from user memory.
    pub const READ_FAULT: u8 = 8;
    /// sendfile, splice: the bytes never were in user memory.
    pub const NOT_COPIED: u8 = 16;
    /// TLS plaintext whose socket the kernel could not find (a memory BIO: the program moves
    /// the ciphertext itself): `sock_id` is 0 and `offset` the SSL's address.
    pub const TLS_UNBOUND: u8 = 32;
}

/// Roles from `event.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not seen connect() or accept() (the connection predates the capture, or UDP).
    Unknown,
    /// The socket called connect().
    Client,
    /// The socket came from accept().
    Server,
}

/// `event.dir` 0: the process sent the bytes.
pub const DIR_EGRESS: u8 = 0;

/// Names of the kernel's per-CPU counters, in `enum l7tap_stat` order.
pub const STAT_NAMES: [&str; 21] = [
    "bpf_events",
    "bpf_payload_bytes",
    "bpf_ring_full_events",
    "bpf_ring_full_bytes",
    "bpf_read_faults",
    "bpf_truncated_events",
    "bpf_truncated_bytes",
    "bpf_filtered_pid",
    "bpf_filtered_port",
    "bpf_not_inet_socket",
    "bpf_tls_events",
    "bpf_tls_ciphertext_suppressed",
    "bpf_tls_no_socket",
    "bpf_mmsg_messages_cut",
    "bpf_iovecs_cut",
    "bpf_peeked_receives",
    "bpf_io_uring_events",
    "bpf_io_uring_not_copied",
    "bpf_execs_of_known_programs",
    "bpf_mappings_of_known_libraries",
    "bpf_nspr_calls_without_socket",
];

/// One decoded event; `payload` borrows the record's bytes (as read from its ring).
#[derive(Debug, Clone)]
pub struct RawEvent<'a> {
    /// CLOCK_MONOTONIC nanoseconds.
    pub ts_mono_ns: u64,
    /// Kernel socket address, the connection id (0 for exit events).
    pub sock_id: u64,
    /// Stream offset of the first payload byte in this direction.
    pub offset: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// File descriptor (0 for TLS events).
    pub fd: u32,
    /// Bytes the syscall moved.
    pub total_len: u32,
    /// What kind of event.
    pub kind: Kind,
    /// True when the process sent the bytes.
    pub egress: bool,
    /// `enum l7tap_syscall`.
    pub syscall: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// SOCK_STREAM (1) or SOCK_DGRAM (2).
    pub sotype: u8,
    /// Address family: `AF_INET` (2), `AF_INET6` (10), [`AF_UNIX`] (its addresses are
    /// then unspecified), 0 when the event has no socket.
    pub family: u16,
    /// The socket's role as far as the kernel knows.
    pub role: Role,
    /// Local address.
    pub local: SocketAddr,
    /// Peer address.
    pub remote: SocketAddr,
    /// Command name, NUL-trimmed.
    pub comm: &'a [u8],
    /// The captured bytes (at most the snaplen).
    pub payload: &'a [u8],
}

/// Why a ring buffer record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the header or than the header says.
    #[error("event record too short")]
    Short,
    /// An unknown kind or address family.
    #[error("event record has an unknown kind or family")]
    Unknown,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn addr(family: u16, raw: &[u8], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match family {
        2 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        10 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&raw[..16]);
            // Dual-stack listeners see IPv4 peers as ::ffff:a.b.c.d; report them as IPv4 so
            // both ends of a connection agree on the addresses.
            IpAddr::V6(Ipv6Addr::from(o)).to_canonical()
        }
        0 | AF_UNIX => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => return Err(DecodeError::Unknown),
    };
    Ok(SocketAddr::new(ip, port))
}

impl<'a> RawEvent<'a> {
    /// Decodes one ring buffer record.
    pub fn decode(b: &'a [u8]) -> Result<RawEvent<'a>, DecodeError> {
        if b.len() < HEADER_LEN {
            return Err(DecodeError::Short);
        }
        let cap_len = u32_at(b, 40) as usize;
        if b.len() < HEADER_LEN + cap_len {
            return Err(DecodeError::Short);
        }
        let kind = match b[44] {
            1 => Kind::Data,
            2 => Kind::Open,
            3 => Kind::Close,
            4 => Kind::Exit,
            5 => Kind::Exec,
            6 => Kind::UnixNames,
            7 => Kind::Mapped,
            _ => return Err(DecodeError::Unknown),
        };
        let family = u16_at(b, 48);
        let role = match b[55] {
            1 => Role::Client,
            2 => Role::Server,
            _ => Role::Unknown,
        };
        let comm_raw = &b[88..104];
        let comm_len = comm_raw.iter().position(|&c| c == 0).unwrap_or(16);
        Ok(RawEvent {
            ts_mono_ns: u64_at(b, 0),
            sock_id: u64_at(b, 8),
            offset: u64_at(b, 16),
            pid: u32_at(b, 24),
            tid: u32_at(b, 28),
            fd: u32_at(b, 32),
            total_len: u32_at(b, 36),
            kind,
            egress: b[45] == DIR_EGRESS,
            syscall: b[46],
            flags: b[47],
            sotype: b[54],
            family,
            role,
            local: addr(family, &b[56..72], u16_at(b, 50))?,
            remote: addr(family, &b[72..88], u16_at(b, 52))?,
            comm: &comm_raw[..comm_len],
            payload: &b[HEADER_LEN..HEADER_LEN + cap_len],
        })
    }

    /// A [`Kind::UnixNames`] event's two names, the socket's own and its peer's (raw
    /// `sun_path` bytes: an abstract name starts with a NUL); empty when unnamed.
    pub fn unix_names(&self) -> (&'a [u8], &'a [u8]) {
        let name = |at: usize, len: u16| {
            let len = usize::from(len).min(UNIX_NAME_LEN);
            self.payload.get(at..at + len).unwrap_or(&[])
        };
        (
            name(0, self.local.port()),
            name(UNIX_NAME_SLOT, self.remote.port()),
        )
    }

    /// The file of a [`Kind::Exec`] or [`Kind::Mapped`] event.
    pub fn file_key(&self) -> FileKey {
        FileKey {
            dev: self.offset,
            ino: self.sock_id,
        }
    }

    /// The filename an exec'd program was started by (as given to execve: relative to the
    /// process's directory and root); `None` when not valid UTF-8 or empty.
    pub fn exec_path(&self) -> Option<&'a str> {
        let end = self
            .payload
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end])
            .ok()
            .filter(|p| !p.is_empty())
    }

    /// True when `flag` (one of [`flags`]) is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Builds a record in the kernel's layout, as the ring delivers it (for tests and benches).
#[derive(Debug, Clone, Default)]
pub struct EventBuilder {
    /// Header fields, in order; see [`RawEvent`].
    pub ts_mono_ns: u64,
    /// See [`RawEvent::sock_id`].
    pub sock_id: u64,
    /// See [`RawEvent::offset`].
    pub offset: u64,
    /// See [`RawEvent::pid`].
    pub pid: u32,
    /// See [`RawEvent::total_len`]; 0 means the payload length.
    pub total_len: u32,
    /// 1 data, 2 open, 3 close, 4 exit, 5 exec, 6 Unix socket names, 7 TLS library mapped.
    pub kind: u8,
    /// 0 egress, 1 ingress.
    pub dir: u8,
    /// See [`flags`].
    pub flags: u8,
    /// 1 stream, 2 datagram.
    pub sotype: u8,
    /// Address family; 0 means AF_INET (2).
    pub family: u16,
    /// 0 unknown, 1 client, 2 server.
    pub role: u8,
    /// Local IPv4 address and port.
    pub local: ([u8; 4], u16),
    /// Peer IPv4 address and port.
    pub remote: ([u8; 4], u16),
    /// Command name.
    pub comm: &'static str,
}

impl EventBuilder {
    /// The record bytes for `payload`.
    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.ts_mono_ns.to_le_bytes());
        b[8..16].copy_from_slice(&self.sock_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.pid.to_le_bytes());
        b[28..32].copy_from_slice(&self.pid.to_le_bytes());
        let total = if self.total_len == 0 {
            payload.len() as u32
        } else {
            self.total_len
        };
        b[36..40].copy_from_slice(&total.to_le_bytes());
        b[40..44].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        b[44] = self.kind;
        b[45] = self.dir;
        b[47] = self.flags;
        let family = if self.family == 0 { 2 } else { self.family };
        b[48..50].copy_from_slice(&family.to_le_bytes());
        b[50..52].copy_from_slice(&self.local.1.to_le_bytes());
        b[52..54].copy_from_slice(&self.remote.1.to_le_bytes());
        b[54] = self.sotype;
        b[55] = self.role;
        b[56..60].copy_from_slice(&self.local.0);
        b[72..76].copy_from_slice(&self.remote.0);
        let c = self.comm.as_bytes();
        let n = c.len().min(15);
        b[88..88 + n].copy_from_slice(&c[..n]);
        b.extend_from_slice(payload);
        b
    }
}
