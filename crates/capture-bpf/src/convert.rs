//! Kernel events -> core [`Segment`]s: connection identity, orientation, offsets and gaps.
//!
//! Pure user-space logic, tested without root.

use crate::event::{flags, FileKey, Kind, RawEvent, Role, AF_UNIX};
use bytes::{Buf, Bytes};
use l7tap_core::{Direction, FlowKey, ProcessInfo, Segment, L4};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

/// Counters of the conversion (added to the source's stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConvertStats {
    /// Records taken from the ring buffer.
    pub events: u64,
    /// Records that could not be decoded (dropped, counted).
    pub decode_errors: u64,
    /// Segments produced.
    pub segments: u64,
    /// Bytes known missing in a stream (ring full, snaplen, sendfile, splice): the parsers resync.
    pub gap_bytes: u64,
    /// Connections the kernel restarted (offsets back to 0) while we still tracked them.
    pub restarted: u64,
    /// Connections forgotten because the table was full (closed early, counted).
    pub evicted: u64,
    /// Connections closed by close() or process exit.
    pub closed: u64,
    /// Bytes of TLS seen encrypted (a stream that starts with a TLS handshake record: the
    /// handshake before OpenSSL's first read or write, or a TLS library l7tap does not probe):
    /// not parsed, counted here.
    pub tls_ciphertext_bytes: u64,
    /// Exec and library-mapping events not handed on because [`MAX_PENDING_EXECS`] were
    /// waiting already.
    pub execs_dropped: u64,
    /// Exec events: programs started that l7tap had not looked at (their first start, and
    /// starts of programs that ended before l7tap could look).
    pub exec_events: u64,
    /// Events of TLS library files mapped that l7tap had not looked at.
    pub mapped_events: u64,
    /// TLS plaintext events without their socket (memory BIOs) tied to the connection their
    /// thread moved the ciphertext on.
    pub tls_unbound_bound: u64,
    /// ... and those that could not be: no ciphertext connection of theirs was seen (a port
    /// the filter left out, a connection older than the capture), or [`MAX_UNBOUND_PENDING`]
    /// were waiting already, or one waited longer than [`UNBOUND_WAIT_NS`].
    pub tls_unbound_dropped: u64,
    /// Unix socket connections whose path was not kept: more than
    /// [`l7tap_core::MAX_INTERNED_PATHS`] different paths seen (their records have an
    /// empty path), or more sockets' names pending than connections tracked.
    pub unix_paths_not_kept: u64,
}

/// A file the kernel saw a process start or map that l7tap has not looked at yet: the probers
/// look at it, then tell the kernel it is known ([`crate::BpfControl`]'s `known_files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The process.
    pub pid: u32,
    /// The file, as the kernel names it.
    pub key: FileKey,
    /// A program started (with the filename given to execve, possibly empty); `None`: a TLS
    /// library mapped.
    pub program: Option<Box<str>>,
}

/// TLS plaintext writes without their socket waiting for their thread's next ciphertext send,
/// at most (all threads together).
pub const MAX_UNBOUND_PENDING: usize = 4096;
/// How long such a write waits at most (ns of event time).
pub const UNBOUND_WAIT_NS: u64 = 1_000_000_000;

/// Exec and library-mapping events held for [`Converter::take_sightings`] at most.
pub const MAX_PENDING_EXECS: usize = 4096;

/// True when `b`, the first bytes of a stream, are a TLS handshake record carrying a
/// ClientHello or ServerHello (RFC 8446 5.1: type 22, legacy version 3.x, a length within
/// the record limit; 4.: handshake type 1 or 2). No plaintext protocol starts this way.
fn starts_tls(b: &[u8]) -> bool {
    match b {
        [0x16, 0x03, minor, hi, lo, kind, ..] => {
            let len = usize::from(*hi) << 8 | usize::from(*lo);
            *minor <= 4 && (4..=16384 + 2048).contains(&len) && matches!(kind, 1 | 2)
        }
        _ => false,
    }
}

#[derive(Debug)]
struct Conn {
    flow: FlowKey,
    local_is_client: bool,
    /// Next expected offset per event direction (0 egress, 1 ingress).
    next: [u64; 2],
    process: ProcessInfo,
    /// The stream is TLS ciphertext (see [`starts_tls`]): its bytes are counted, not parsed.
    ciphertext: bool,
    /// A TLS plaintext stream first placed from unbound plaintext (a memory BIO): its offsets
    /// are counted here; the kernel's, should it later find the socket itself, left out
    /// the bytes it could not place.
    own_offsets: bool,
}

impl Conn {
    /// The segment that ends this connection's flow; none for a ciphertext stream, which
    /// never gave the engine a flow.
    fn close(&self, ts: u64) -> Option<Segment> {
        (!self.ciphertext).then(|| Segment::close(self.flow, ts))
    }
}

/// Turns events into segments; holds one entry per live connection (bounded).
#[derive(Debug)]
pub struct Converter {
    /// (connection id, peer) -> state. The peer matters for unconnected UDP sockets.
    conns: ConnTable,
    max_conns: usize,
    /// Added to CLOCK_MONOTONIC stamps to get Unix-epoch nanoseconds.
    epoch_offset_ns: i128,
    stats: ConvertStats,
    /// Programs started and TLS libraries mapped since the last
    /// [`Converter::take_sightings`].
    sightings: Vec<Sighting>,
    /// Unix sockets' names by socket id, from [`Kind::UnixNames`] events, until the socket
    /// closes or its process exits (at most `max_conns`).
    unix: UnixNameTable,
    /// Memory-BIO TLS: SSL address -> the ciphertext connection its plaintext belongs to (at
    /// most `max_conns`; checked against `conns` when used).
    ssl_conns: HashMap<u64, ConnKey, l7tap_core::FlowBuildHasher>,
    /// Per thread: the ciphertext connection it last received on (a memory BIO's reads
    /// follow the ciphertext's arrival on the same thread).
    rx_cipher: HashMap<u32, ConnKey, l7tap_core::FlowBuildHasher>,
    /// Per thread: plaintext written into a memory BIO, waiting for the thread's next
    /// ciphertext send (which says the connection).
    pending: HashMap<u32, std::collections::VecDeque<Unbound>, l7tap_core::FlowBuildHasher>,
    pending_len: usize,
}

/// TLS plaintext reported without its socket.
#[derive(Debug)]
struct Unbound {
    ssl: u64,
    egress: bool,
    ts: u64,
    total: u64,
    payload: Bytes,
    process: ProcessInfo,
}

/// A Unix socket's own name and its peer's, as shown (`@` for an abstract name's NUL).
#[derive(Debug, Clone)]
struct UnixNames {
    local: String,
    peer: String,
    pid: u32,
}

/// A `sun_path` as shown: an abstract name (leading NUL) as `@name`, as `ss` and systemd
/// show it; bytes that are not UTF-8 replaced.
fn unix_name(raw: &[u8]) -> String {
    match raw.split_first() {
        None => String::new(),
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest).replace('\0', "@")),
        // A pathname: NUL-terminated within the length the kernel keeps.
        Some(_) => {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).into_owned()
        }
    }
}

/// True for a name that says who the server is: a path or an abstract name the program
/// chose, not one the kernel made up for a client (autobind: `@` and five hex digits).
fn names_a_server(name: &str) -> bool {
    let autobind = name.len() == 6
        && name.starts_with('@')
        && name[1..].bytes().all(|b| b.is_ascii_hexdigit());
    !name.is_empty() && !autobind
}

/// A tracked stream: connection id and peer (the peer matters for unconnected UDP sockets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnKey(u64, SocketAddr);

impl std::hash::Hash for ConnKey {
    /// One word into the table's seeded hasher (the derived hash fed the address to it a
    /// few bytes at a time).
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.0 ^ l7tap_core::addr_hash(&self.1).rotate_left(29));
    }
}

/// Connection id of the plaintext stream of a TLS socket (socket addresses are aligned, so
/// the low bit is free).
fn tls_id(sock_id: u64) -> u64 {
    sock_id | 1
}

/// Keys grouped under a value (a socket, a process): one inline, more in a set.
#[derive(Debug)]
enum Group<K> {
    One(K),
    Many(HashSet<K, l7tap_core::FlowBuildHasher>),
}

/// An index from a value to the keys under it; adding and removing a key is O(1) however many
/// share the value (a server process's thousands of connections, a DNS socket's peers).
#[derive(Debug)]
struct Index<V, K>(HashMap<V, Group<K>, l7tap_core::FlowBuildHasher>);

impl<V: std::hash::Hash + Eq + Copy, K: std::hash::Hash + Eq + Copy> Index<V, K> {
    fn add(&mut self, v: V, key: K) {
        use std::collections::hash_map::Entry;
        match self.0.entry(v) {
            Entry::Vacant(e) => {
                e.insert(Group::One(key));
            }
            Entry::Occupied(mut e) => match e.get_mut() {
                Group::One(k) if *k == key => {}
                Group::One(k) => {
                    let set = [*k, key].into_iter().collect();
                    e.insert(Group::Many(set));
                }
                Group::Many(set) => {
                    set.insert(key);
                }
            },
        }
    }

    fn remove(&mut self, v: V, key: K) {
        use std::collections::hash_map::Entry;
        if let Entry::Occupied(mut e) = self.0.entry(v) {
            let empty = match e.get_mut() {
                Group::One(k) => *k == key,
                Group::Many(set) => {
                    set.remove(&key);
                    set.is_empty()
                }
            };
            if empty {
                e.remove();
            }
        }
    }

    /// The keys under `v`.
    fn keys(&self, v: V) -> Vec<K> {
        match self.0.get(&v) {
            None => Vec::new(),
            Some(Group::One(k)) => vec![*k],
            Some(Group::Many(set)) => set.iter().copied().collect(),
        }
    }
}

impl<V, K> Default for Index<V, K> {
    fn default() -> Self {
        Index(HashMap::default())
    }
}

/// A value owned by a process: the one that last moved its bytes.
trait Owned {
    fn pid(&self) -> u32;
}

impl Owned for Conn {
    fn pid(&self) -> u32 {
        self.process.pid
    }
}

impl Owned for UnixNames {
    fn pid(&self) -> u32 {
        self.pid
    }
}

/// A table indexed by owning process too, so that a process exit is a lookup, not a pass over
/// every entry.
#[derive(Debug)]
struct ByProcess<K, V> {
    map: HashMap<K, V, l7tap_core::FlowBuildHasher>,
    by_pid: Index<u32, K>,
}

impl<K, V> Default for ByProcess<K, V> {
    fn default() -> Self {
        ByProcess {
            map: HashMap::default(),
            by_pid: Index::default(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy, V: Owned> ByProcess<K, V> {
    fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// (The owner changes through [`ByProcess::set_pid`] only.)
    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    fn any_key(&self) -> Option<K> {
        self.map.keys().next().copied()
    }

    fn insert(&mut self, key: K, value: V) {
        let pid = value.pid();
        self.by_pid.add(pid, key);
        if let Some(old) = self.map.insert(key, value) {
            if old.pid() != pid {
                self.by_pid.remove(old.pid(), key);
            }
        }
    }

    fn remove(&mut self, key: &K) -> Option<V> {
        let v = self.map.remove(key)?;
        self.by_pid.remove(v.pid(), *key);
        Some(v)
    }

    /// Moves `key` to process `pid`; `set` changes the value itself. Returns the value.
    fn set_pid(&mut self, key: &K, pid: u32, set: impl FnOnce(&mut V)) -> Option<&mut V> {
        let v = self.map.get_mut(key)?;
        let old = v.pid();
        set(v);
        if old != pid {
            self.by_pid.remove(old, *key);
            self.by_pid.add(pid, *key);
        }
        self.map.get_mut(key)
    }

    fn of_process(&self, pid: u32) -> Vec<K> {
        self.by_pid.keys(pid)
    }

    fn remove_process(&mut self, pid: u32) {
        for k in self.of_process(pid) {
            self.remove(&k);
        }
    }
}

/// The connections tracked, indexed by socket (a close, or a new connection on a reused
/// socket, ends every stream under it: its TLS plaintext twin, an unconnected UDP socket's
/// peers) and by process (an exit ends the process's): each such event costs a lookup, not a
/// pass over every connection (with 10,000 tracked, a pass made a short connection cost
/// ~130 us instead of ~1 us).
#[derive(Debug, Default)]
struct ConnTable {
    conns: ByProcess<ConnKey, Conn>,
    /// Socket id, TLS twin folded in (`id & !1`) -> its keys.
    by_sock: Index<u64, ConnKey>,
}

impl std::ops::Deref for ConnTable {
    type Target = ByProcess<ConnKey, Conn>;
    fn deref(&self) -> &Self::Target {
        &self.conns
    }
}

impl ConnTable {
    /// (The process of a connection changes through [`ConnTable::set_process`] only.)
    fn get_mut(&mut self, key: &ConnKey) -> Option<&mut Conn> {
        self.conns.get_mut(key)
    }

    fn insert(&mut self, key: ConnKey, conn: Conn) {
        self.by_sock.add(key.0 & !1, key);
        self.conns.insert(key, conn);
    }

    fn remove(&mut self, key: &ConnKey) -> Option<Conn> {
        let c = self.conns.remove(key)?;
        self.by_sock.remove(key.0 & !1, *key);
        Some(c)
    }

    /// Another process moved the connection's bytes (its thread and name with it).
    fn set_process(&mut self, key: &ConnKey, pid: u32, tid: u32, comm: &[u8]) -> Option<&mut Conn> {
        self.conns.set_pid(key, pid, |c| {
            if c.process.pid != pid {
                c.process.comm = comm_bytes(comm);
                c.process.pid = pid;
            }
            c.process.tid = tid;
        })
    }

    /// The keys of socket `id`: its own streams and its TLS twin's.
    fn of_socket(&self, id: u64) -> Vec<ConnKey> {
        self.by_sock.keys(id & !1)
    }
}

/// Unix sockets' names by socket id until the socket closes or its process exits.
type UnixNameTable = ByProcess<u64, UnixNames>;

impl Converter {
    /// A converter that tracks at most `max_conns` connections; `epoch_offset_ns` maps the
    /// kernel's monotonic stamps to the Unix epoch.
    pub fn new(max_conns: usize, epoch_offset_ns: i128) -> Self {
        Converter {
            // The flow tables' seeded fast hasher (SipHash was ~1 % of capture's main thread).
            conns: ConnTable::default(),
            max_conns: max_conns.max(1),
            epoch_offset_ns,
            stats: ConvertStats::default(),
            sightings: Vec::new(),
            unix: UnixNameTable::default(),
            ssl_conns: HashMap::default(),
            rx_cipher: HashMap::default(),
            pending: HashMap::default(),
            pending_len: 0,
        }
    }

    /// The programs started and TLS libraries mapped, not looked at yet, since the last call
    /// (at most [`MAX_PENDING_EXECS`]; more are counted in `execs_dropped`).
    pub fn take_sightings(&mut self) -> Vec<Sighting> {
        std::mem::take(&mut self.sightings)
    }

    /// Counters so far.
    pub fn stats(&self) -> ConvertStats {
        self.stats
    }

    /// Connections currently tracked.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn epoch(&self, mono: u64) -> u64 {
        (i128::from(mono) + self.epoch_offset_ns).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Decodes one ring buffer record and appends what it means to `out`. A data segment's
    /// payload is `record` itself, narrowed to the payload (no copy, and no reference-count
    /// change on the buffer it shares with other records).
    pub fn push(&mut self, mut record: Bytes, out: &mut Vec<Segment>) {
        self.stats.events += 1;
        let ev = match RawEvent::decode(&record) {
            Ok(ev) => ev,
            Err(_) => {
                self.stats.decode_errors += 1;
                return;
            }
        };
        let before = out.len();
        match ev.kind {
            Kind::Data => {
                // Where the payload sits in the record (the event borrows it until here).
                let at = (ev.payload.as_ptr() as usize).wrapping_sub(record.as_ptr() as usize);
                let len = ev.payload.len();
                if ev.has(flags::TLS_UNBOUND) {
                    if at.checked_add(len).is_some_and(|end| end <= record.len()) {
                        let u = Unbound {
                            ssl: ev.offset,
                            egress: ev.egress,
                            ts: self.epoch(ev.ts_mono_ns),
                            total: u64::from(ev.total_len).max(len as u64),
                            payload: record.slice(at..at + len),
                            process: ProcessInfo {
                                pid: ev.pid,
                                tid: ev.tid,
                                comm: comm_bytes(ev.comm),
                            },
                        };
                        self.unbound(u, out);
                    }
                } else if let Some(i) = self.data(&ev, out) {
                    // (The payload is a slice of the record: the check cannot fail.)
                    if at.checked_add(len).is_some_and(|end| end <= record.len()) {
                        record.advance(at);
                        record.truncate(len);
                        if let Some(seg) = out.get_mut(i) {
                            seg.payload = record;
                        }
                    }
                }
            }
            Kind::Open => self.open(&ev, out),
            Kind::Close => {
                let ts = self.epoch(ev.ts_mono_ns);
                let keys = self.conns.of_socket(ev.sock_id);
                self.close_keys(keys, ts, out);
                self.unix.remove(&ev.sock_id);
            }
            Kind::Exit => {
                let ts = self.epoch(ev.ts_mono_ns);
                let pid = ev.pid;
                let keys = self.conns.of_process(pid);
                self.close_keys(keys, ts, out);
                self.unix.remove_process(pid);
            }
            Kind::UnixNames => {
                if self.unix.len() >= self.max_conns && !self.unix.contains_key(&ev.sock_id) {
                    // (Names are dropped at close; this many pending means closes were lost.)
                    if let Some(k) = self.unix.any_key() {
                        self.unix.remove(&k);
                        self.stats.unix_paths_not_kept += 1;
                    }
                }
                let (local, peer) = ev.unix_names();
                self.unix.insert(
                    ev.sock_id,
                    UnixNames {
                        local: unix_name(local),
                        peer: unix_name(peer),
                        pid: ev.pid,
                    },
                );
            }
            Kind::Exec | Kind::Mapped => {
                let (program, counter) = if ev.kind == Kind::Exec {
                    (true, &mut self.stats.exec_events)
                } else {
                    (false, &mut self.stats.mapped_events)
                };
                *counter += 1;
                if self.sightings.len() < MAX_PENDING_EXECS {
                    self.sightings.push(Sighting {
                        pid: ev.pid,
                        key: ev.file_key(),
                        program: program.then(|| ev.exec_path().unwrap_or("").into()),
                    });
                } else {
                    self.stats.execs_dropped += 1;
                }
            }
        }
        self.stats.segments += (out.len() - before) as u64;
    }

    fn close_keys(&mut self, keys: Vec<ConnKey>, ts: u64, out: &mut Vec<Segment>) {
        for k in keys {
            if let Some(c) = self.conns.remove(&k) {
                self.stats.closed += 1;
                out.extend(c.close(ts));
            }
        }
    }

    fn open(&mut self, ev: &RawEvent<'_>, out: &mut Vec<Segment>) {
        // A new connection on a reused socket address: end whatever was tracked under it.
        let ts = self.epoch(ev.ts_mono_ns);
        let id = ev.sock_id;
        let keys = self.conns.of_socket(id);
        self.close_keys(keys, ts, out);
        if ev.sotype == 1 {
            self.insert(ev, id, out);
        }
    }

    /// Room for one more connection: at `max_conns`, one is closed (counted).
    fn make_room(&mut self, ts: u64, out: &mut Vec<Segment>) {
        if self.conns.len() >= self.max_conns {
            if let Some(k) = self.conns.any_key() {
                if let Some(c) = self.conns.remove(&k) {
                    self.stats.evicted += 1;
                    out.extend(c.close(ts));
                }
            }
        }
    }

    fn insert(&mut self, ev: &RawEvent<'_>, id: u64, out: &mut Vec<Segment>) -> ConnKey {
        self.make_room(self.epoch(ev.ts_mono_ns), out);
        let flow = if ev.family == AF_UNIX {
            // The server's socket is the one with a name (a listener's accepted sockets share
            // its name); a client's own name, if any, is usually the kernel's autobind one.
            let (local, peer) = self
                .unix
                .get(&ev.sock_id)
                .map(|n| (n.local.as_str(), n.peer.as_str()))
                .unwrap_or_default();
            let local_is_client = match ev.role {
                Role::Client => true,
                Role::Server => false,
                Role::Unknown => !names_a_server(local) && names_a_server(peer),
            };
            let (own, other) = if local_is_client {
                (peer, local)
            } else {
                (local, peer)
            };
            let name = if own.is_empty() { other } else { own };
            let path = l7tap_core::intern_path(name).unwrap_or_else(|| {
                self.stats.unix_paths_not_kept += 1;
                ""
            });
            (
                local_is_client,
                FlowKey {
                    l4: L4::Unix,
                    client: ev.local,
                    server: ev.remote,
                    socket_id: id,
                    path,
                },
            )
        } else {
            let local_is_client = match ev.role {
                Role::Client => true,
                Role::Server => false,
                // Not seen connect/accept: the side on the lower (service) port is the
                // server; inference swaps the roles if the traffic says otherwise.
                Role::Unknown => ev.local.port() > ev.remote.port(),
            };
            let (client, server) = if local_is_client {
                (ev.local, ev.remote)
            } else {
                (ev.remote, ev.local)
            };
            (
                local_is_client,
                FlowKey {
                    l4: if ev.sotype == 2 { L4::Udp } else { L4::Tcp },
                    client,
                    server,
                    socket_id: id,
                    path: "",
                },
            )
        };
        let (local_is_client, flow) = flow;
        let key = ConnKey(id, ev.remote);
        self.conns.insert(
            key,
            Conn {
                flow,
                local_is_client,
                next: [0, 0],
                process: ProcessInfo {
                    pid: ev.pid,
                    tid: ev.tid,
                    comm: comm_bytes(ev.comm),
                },
                ciphertext: false,
                own_offsets: false,
            },
        );
        key
    }

    /// The segments of a data event; returns the index in `out` of the one that carries the
    /// event's payload (left empty here: the caller moves the record into it).
    fn data(&mut self, ev: &RawEvent<'_>, out: &mut Vec<Segment>) -> Option<usize> {
        let tls = ev.has(flags::TLS);
        let id = if tls { tls_id(ev.sock_id) } else { ev.sock_id };
        let ts = self.epoch(ev.ts_mono_ns);
        let udp = ev.sotype == 2;
        if tls && !self.conns.contains_key(&ConnKey(id, ev.remote)) {
            // First plaintext of a TLS connection: the handshake ciphertext reported before
            // the kernel knew is a stream of its own, ended here.
            let raw = ev.sock_id;
            let keys = self.conns.of_socket(raw);
            self.close_keys(keys.into_iter().filter(|k| k.0 == raw).collect(), ts, out);
        }
        let key = ConnKey(id, ev.remote);
        let dir_ix = usize::from(!ev.egress);
        // (None: not tracked yet. One lookup here and one below on the common path.)
        let restart = self
            .conns
            .get(&key)
            .map(|c| !udp && !c.own_offsets && ev.offset < c.next[dir_ix]);
        if restart == Some(true) {
            // The kernel's state for this socket was recreated (LRU) or the socket reused
            // without a close we saw: a new stream.
            self.stats.restarted += 1;
            if let Some(c) = self.conns.remove(&key) {
                out.extend(c.close(ts));
            }
        }
        if restart != Some(false) {
            self.insert(ev, id, out);
        }
        let mut c = self.conns.get_mut(&key)?;
        if c.process.pid != ev.pid {
            // (Another process: its index entry moves too; rare, so more lookups.)
            c = self.conns.set_process(&key, ev.pid, ev.tid, ev.comm)?;
        }
        c.process.tid = ev.tid;
        let direction = if ev.egress == c.local_is_client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        // The bytes the syscall moved; the event carries the first `payload.len()` of them.
        let moved = u64::from(ev.total_len).max(ev.payload.len() as u64);
        if !udp && !tls && !c.ciphertext && ev.offset == 0 && c.next == [0, 0] {
            c.ciphertext = starts_tls(ev.payload);
        }
        let at = if c.own_offsets {
            c.next[dir_ix]
        } else {
            ev.offset
        };
        // (Saturating: offsets come from the kernel, but a garbled event must not panic.)
        let end = at.saturating_add(moved);
        if c.ciphertext {
            c.next[dir_ix] = c.next[dir_ix].max(end);
            self.stats.tls_ciphertext_bytes = self.stats.tls_ciphertext_bytes.saturating_add(moved);
            self.ciphertext_moved(key, ev.egress, ev.tid, out);
            return None;
        }
        let (gap, tail) = if udp {
            (0, 0)
        } else {
            let gap = at.saturating_sub(c.next[dir_ix]);
            c.next[dir_ix] = end;
            (gap, moved - ev.payload.len() as u64)
        };
        self.stats.gap_bytes = self
            .stats
            .gap_bytes
            .saturating_add(gap.saturating_add(tail));
        let segment = |payload: Bytes, offset: u64, gap_before: u64| Segment {
            flow: c.flow,
            direction,
            ts_ns: ts,
            payload,
            offset,
            gap_before,
            end_of_flow: false,
            process: Some(c.process.clone()),
        };
        let mut carrier = None;
        if !ev.payload.is_empty() {
            let offset = if udp { 0 } else { at };
            carrier = Some(out.len());
            out.push(segment(Bytes::new(), offset, gap));
        }
        // Bytes moved but not carried (sendfile, splice, the snaplen cut, a read fault): a
        // gap now, at this syscall's time, so that a message they end is complete when it was
        // sent, not when the connection next carries bytes (or closes).
        let unseen = tail.saturating_add(if ev.payload.is_empty() { gap } else { 0 });
        if unseen > 0 {
            out.push(segment(Bytes::new(), end, unseen));
        }
        carrier
    }
}

impl Converter {
    /// TLS plaintext without its socket (a memory BIO: Python's asyncio, Node.js, ...). Once
    /// its SSL is tied to a connection it goes there; a read is tied to the ciphertext
    /// connection its thread last received on (the program reads the ciphertext, then the
    /// plaintext out of the BIO); a write waits for its thread's next ciphertext send.
    fn unbound(&mut self, u: Unbound, out: &mut Vec<Segment>) {
        if let Some(&key) = self.ssl_conns.get(&u.ssl) {
            if self.conns.contains_key(&key) {
                return self.emit_plain(key, u, out);
            }
            self.ssl_conns.remove(&u.ssl);
        }
        if !u.egress {
            match self.rx_cipher.get(&u.process.tid) {
                Some(&key) if self.conns.contains_key(&key) => {
                    self.bind(u.ssl, key);
                    self.emit_plain(key, u, out);
                }
                _ => self.stats.tls_unbound_dropped += 1,
            }
            return;
        }
        self.expire_pending(u.ts);
        if self.pending_len >= MAX_UNBOUND_PENDING {
            self.stats.tls_unbound_dropped += 1;
            return;
        }
        self.pending_len += 1;
        self.pending.entry(u.process.tid).or_default().push_back(u);
    }

    /// Drops the waiting writes older than [`UNBOUND_WAIT_NS`] at `now` (counted).
    fn expire_pending(&mut self, now: u64) {
        if self.pending_len == 0 {
            return;
        }
        let mut dropped = 0;
        self.pending.retain(|_, q| {
            while q
                .front()
                .is_some_and(|u| now.saturating_sub(u.ts) > UNBOUND_WAIT_NS)
            {
                q.pop_front();
                dropped += 1;
            }
            !q.is_empty()
        });
        self.pending_len -= dropped;
        self.stats.tls_unbound_dropped += dropped as u64;
    }

    /// A thread moved ciphertext on `key`: what it received is where its next plaintext read
    /// comes from; what it sends carries the plaintext it wrote just before.
    fn ciphertext_moved(&mut self, key: ConnKey, egress: bool, tid: u32, out: &mut Vec<Segment>) {
        if !egress {
            if self.rx_cipher.len() >= self.max_conns && !self.rx_cipher.contains_key(&tid) {
                self.rx_cipher.clear();
            }
            self.rx_cipher.insert(tid, key);
            return;
        }
        let Some(q) = self.pending.get_mut(&tid) else {
            return;
        };
        let Some(ssl) = q.front().map(|u| u.ssl) else {
            return;
        };
        // This send carries the first waiting SSL's ciphertext: that SSL's writes go here.
        let mut mine = Vec::new();
        let mut rest = std::collections::VecDeque::new();
        for u in q.drain(..) {
            if u.ssl == ssl {
                mine.push(u);
            } else {
                rest.push_back(u);
            }
        }
        *q = rest;
        if q.is_empty() {
            self.pending.remove(&tid);
        }
        self.pending_len -= mine.len();
        self.bind(ssl, key);
        for u in mine {
            self.emit_plain(key, u, out);
        }
    }

    fn bind(&mut self, ssl: u64, key: ConnKey) {
        if self.ssl_conns.len() >= self.max_conns && !self.ssl_conns.contains_key(&ssl) {
            self.ssl_conns.clear();
        }
        self.ssl_conns.insert(ssl, key);
    }

    /// Plaintext of the ciphertext connection `cipher`: into its TLS stream (made from the
    /// ciphertext connection's flow the first time), at the stream's next offset.
    fn emit_plain(&mut self, cipher: ConnKey, u: Unbound, out: &mut Vec<Segment>) {
        let key = ConnKey(tls_id(cipher.0), cipher.1);
        if !self.conns.contains_key(&key) {
            let Some(c) = self.conns.get(&cipher) else {
                self.stats.tls_unbound_dropped += 1;
                return;
            };
            let mut flow = c.flow;
            flow.socket_id = key.0;
            let conn = Conn {
                flow,
                local_is_client: c.local_is_client,
                next: [0, 0],
                process: u.process.clone(),
                ciphertext: false,
                own_offsets: true,
            };
            self.make_room(u.ts, out);
            self.conns.insert(key, conn);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        self.stats.tls_unbound_bound += 1;
        let direction = if u.egress == c.local_is_client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let dir_ix = usize::from(!u.egress);
        let offset = c.next[dir_ix];
        c.next[dir_ix] = offset.saturating_add(u.total);
        let Unbound {
            ts,
            total,
            payload,
            process,
            ..
        } = u;
        let tail = total - payload.len() as u64;
        let seg = |payload: Bytes, offset: u64, gap_before: u64| Segment {
            flow: c.flow,
            direction,
            ts_ns: ts,
            payload,
            offset,
            gap_before,
            end_of_flow: false,
            process: Some(process.clone()),
        };
        if !payload.is_empty() {
            out.push(seg(payload, offset, 0));
        }
        if tail > 0 {
            out.push(seg(Bytes::new(), offset + total, tail));
        }
    }
}

/// Distinct process names kept for the life of the process (at most 16 bytes each, so 64
/// KiB in all); past this, names get a reference-counted copy each.
pub const COMMS_INTERNED: usize = 4096;

/// A process name as `Bytes` whose clones cost nothing. Every segment and record carries its
/// process's name: as a reference-counted `Bytes`, each of those clones and drops touched one
/// count from both the reader thread (which makes segments) and the worker (which drops
/// them), a cache line bouncing between cores per event. A name is therefore kept once, as a
/// static slice (`Bytes::from_static`: cloning copies a pointer). Looked up only when a
/// connection is first seen or changes process, never per event.
fn comm_bytes(raw: &[u8]) -> Bytes {
    static INTERNED: parking_lot::Mutex<Option<HashSet<&'static [u8]>>> =
        parking_lot::Mutex::new(None);
    let mut guard = INTERNED.lock();
    let names = guard.get_or_insert_with(HashSet::new);
    if let Some(s) = names.get(raw) {
        return Bytes::from_static(s);
    }
    if names.len() >= COMMS_INTERNED {
        return Bytes::copy_from_slice(raw);
    }
    let kept: &'static [u8] = Box::leak(Box::from(raw));
    names.insert(kept);
    Bytes::from_static(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBuilder;

    /// Pushes a record as the reader does: in a `Bytes` of its own.
    fn feed(c: &mut Converter, record: &[u8], out: &mut Vec<Segment>) {
        c.push(Bytes::copy_from_slice(record), out);
    }

    fn data(sock: u64, off: u64, dir: u8, role: u8, payload: &[u8]) -> Vec<u8> {
        EventBuilder {
            ts_mono_ns: 1_000 + off,
            sock_id: sock,
            offset: off,
            pid: 42,
            kind: 1,
            dir,
            sotype: 1,
            role,
            local: ([127, 0, 0, 1], 40000),
            remote: ([127, 0, 0, 1], 80),
            comm: "curl",
            ..Default::default()
        }
        .bytes(payload)
    }

    /// A Unix socket's event (`kind` 1 data, 2 open, 6 names) as the kernel writes it:
    /// family AF_UNIX, no addresses; for names, the lengths in the port fields.
    fn unix_event(
        sock: u64,
        kind: u8,
        role: u8,
        dir: u8,
        payload: &[u8],
        lens: (u16, u16),
    ) -> Vec<u8> {
        EventBuilder {
            ts_mono_ns: 1_000,
            sock_id: sock,
            pid: 7,
            kind,
            dir,
            sotype: 1,
            family: AF_UNIX,
            role,
            local: ([0; 4], lens.0),
            remote: ([0; 4], lens.1),
            comm: "psql",
            ..Default::default()
        }
        .bytes(payload)
    }

    /// Exec and mapping events become sightings with the kernel's file key (device in
    /// `offset`, inode in `sock_id`) and, for an exec, the filename given to execve (the
    /// kernel's copy ends in a NUL); both kinds are counted, and past MAX_PENDING_EXECS
    /// waiting, dropped and counted.
    #[test]
    fn exec_and_mapping_events_become_sightings() {
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        let ev = |kind: u8, pid: u32, payload: &[u8]| {
            EventBuilder {
                ts_mono_ns: 5,
                sock_id: 1234,
                offset: (8 << 20) | 1,
                pid,
                kind,
                family: 0,
                comm: "sh",
                ..Default::default()
            }
            .bytes(payload)
        };
        feed(&mut c, &ev(5, 10, b"/usr/bin/true\0"), &mut out);
        feed(&mut c, &ev(7, 11, b""), &mut out);
        let key = FileKey {
            dev: (8 << 20) | 1,
            ino: 1234,
        };
        assert_eq!(
            c.take_sightings(),
            vec![
                Sighting {
                    pid: 10,
                    key,
                    program: Some("/usr/bin/true".into()),
                },
                Sighting {
                    pid: 11,
                    key,
                    program: None,
                },
            ]
        );
        assert!(out.is_empty());
        assert!(c.take_sightings().is_empty());
        for _ in 0..MAX_PENDING_EXECS + 3 {
            feed(&mut c, &ev(5, 12, b""), &mut out);
        }
        let s = c.take_sightings();
        assert_eq!(s.len(), MAX_PENDING_EXECS);
        assert_eq!(s[0].program.as_deref(), Some(""));
        let st = c.stats();
        assert_eq!(
            (st.exec_events, st.mapped_events, st.execs_dropped),
            (MAX_PENDING_EXECS as u64 + 4, 1, 3)
        );
    }

    /// The kernel's dev_t (major << 20 | minor) from stat's st_dev, whose encoding glibc
    /// defines in <sys/sysmacros.h> (`gnu_dev_makedev`): minor bits 0-7 and 20-31, major bits
    /// 8-19 and 32-63. The st_dev values are Python's `os.makedev` results.
    #[test]
    fn file_keys_use_the_kernels_device_numbers() {
        // makedev(8, 1) = 0x801: /dev/sda1.
        assert_eq!(FileKey::of_stat(0x801, 7).dev, (8 << 20) | 1);
        // makedev(0, 300) = 0x10002c: an anonymous device (overlayfs, tmpfs) past minor 255.
        assert_eq!(FileKey::of_stat(0x10_002c, 7).dev, 300);
        // makedev(259, 3) = 0x10303: an NVMe partition (major past 255).
        assert_eq!(FileKey::of_stat(0x10303, 7).dev, (259 << 20) | 3);
        assert_eq!(FileKey::of_stat(0x10303, 7).ino, 7);
    }

    /// A names event's payload: each name in its 128-byte slot.
    fn names(local: &[u8], peer: &[u8]) -> (Vec<u8>, (u16, u16)) {
        let mut p = vec![0u8; 2 * crate::event::UNIX_NAME_SLOT];
        p[..local.len()].copy_from_slice(local);
        p[crate::event::UNIX_NAME_SLOT..][..peer.len()].copy_from_slice(peer);
        (p, (local.len() as u16, peer.len() as u16))
    }

    #[test]
    fn unix_sockets_are_named_by_the_server_whatever_side_and_role() {
        /// (local name, peer name, role) -> (local is the client, the flow's path)
        type Case = (&'static [u8], &'static [u8], u8, bool, &'static str);
        let cases: [Case; 7] = [
            // connect(): the peer (the server's accepted socket) has the listener's name.
            (
                b"",
                b"/run/pg/.s.PGSQL.5432\0",
                1,
                true,
                "/run/pg/.s.PGSQL.5432",
            ),
            // accept(): the socket shares the listener's name.
            (
                b"/run/pg/.s.PGSQL.5432",
                b"",
                2,
                false,
                "/run/pg/.s.PGSQL.5432",
            ),
            // Picked up on data (roles unknown): the named side is the server.
            (
                b"",
                b"/var/run/docker.sock",
                0,
                true,
                "/var/run/docker.sock",
            ),
            (
                b"/var/run/docker.sock",
                b"",
                0,
                false,
                "/var/run/docker.sock",
            ),
            // A client autobound by the kernel (abstract, five hex digits) is still the client.
            (b"\0a1b2c", b"\0/tmp/dbus-XYZ", 0, true, "@/tmp/dbus-XYZ"),
            // An abstract server name, seen from its own side.
            (b"\0l7tap", b"\x00001f3", 0, false, "@l7tap"),
            // socketpair(): no names; the lower side of nothing: server, unnamed.
            (b"", b"", 0, false, ""),
        ];
        for (i, (local, peer, role, client, path)) in cases.into_iter().enumerate() {
            let mut c = Converter::new(16, 0);
            let mut out = Vec::new();
            let sock = 0x1000 + i as u64 * 64;
            let (p, lens) = names(local, peer);
            feed(&mut c, &unix_event(sock, 6, 0, 0, &p, lens), &mut out);
            assert!(out.is_empty(), "{i}: a names event makes no segment");
            feed(
                &mut c,
                &unix_event(sock, 1, role, 0, b"Q", (0, 0)),
                &mut out,
            );
            assert_eq!(out.len(), 1, "{i}");
            let seg = &out[0];
            assert_eq!(seg.flow.l4, L4::Unix, "{i}");
            assert_eq!(seg.flow.path, path, "{i}");
            assert_eq!(seg.flow.socket_id, sock, "{i}");
            let want = if client {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            assert_eq!(
                seg.direction,
                want,
                "{i}: egress from the {}",
                if client { "client" } else { "server" }
            );
            assert_eq!(&seg.payload[..], b"Q", "{i}");
        }
    }

    #[test]
    fn unix_names_are_forgotten_at_close_and_bounded() {
        let mut c = Converter::new(4, 0);
        let mut out = Vec::new();
        let (p, lens) = names(b"/run/a.sock", b"");
        feed(&mut c, &unix_event(0x40, 6, 0, 0, &p, lens), &mut out);
        feed(&mut c, &unix_event(0x40, 1, 2, 1, b"x", (0, 0)), &mut out);
        assert_eq!(out[0].flow.path, "/run/a.sock");
        feed(&mut c, &unix_event(0x40, 3, 0, 0, b"", (0, 0)), &mut out);
        assert!(c.unix.is_empty(), "closed: its names are gone");
        // Names whose sockets never close (lost closes): at most max_conns kept, counted.
        for k in 0..10u64 {
            feed(
                &mut c,
                &unix_event(0x100 + k * 8, 6, 0, 0, &p, lens),
                &mut out,
            );
        }
        assert_eq!(c.unix.len(), 4);
        assert_eq!(c.stats().unix_paths_not_kept, 6);
        // A process's exit forgets its sockets' names, and only its own.
        let mut other = unix_event(0x900, 6, 0, 0, &p, lens);
        other[24..28].copy_from_slice(&8u32.to_le_bytes()); // pid 8
        c.unix.remove(&0x100); // (room for it)
        feed(&mut c, &other, &mut out);
        feed(&mut c, &unix_event(0, 4, 0, 0, b"", (0, 0)), &mut out);
        assert_eq!(c.unix.len(), 1);
        assert!(c.unix.contains_key(&0x900));
    }

    /// An event of thread `tid` on `sock` (a ciphertext connection to 10.0.0.2:443), or with
    /// `ssl` set, the unbound plaintext of that SSL (memory BIO).
    fn tls_event(
        tid: u32,
        sock: u64,
        ssl: u64,
        ts: u64,
        off: u64,
        dir: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        EventBuilder {
            ts_mono_ns: ts,
            sock_id: if ssl != 0 { 0 } else { sock },
            offset: if ssl != 0 { ssl } else { off },
            pid: tid,
            kind: 1,
            dir,
            flags: if ssl != 0 {
                flags::TLS | flags::TLS_UNBOUND
            } else {
                0
            },
            sotype: 1,
            role: if ssl != 0 { 0 } else { 1 },
            local: ([10, 0, 0, 1], 40000 + sock as u16),
            remote: ([10, 0, 0, 2], 443),
            comm: "python3",
            ..Default::default()
        }
        .bytes(payload)
    }

    const HELLO: &[u8] = &[0x16, 3, 1, 0, 60, 1, 0, 0, 56, 3, 3];
    const SERVER_HELLO: &[u8] = &[0x16, 3, 3, 0, 60, 2, 0, 0, 56, 3, 3];
    const RECORD: &[u8] = &[0x17, 3, 3, 0, 30, 9, 9, 9];

    /// The handshake on `sock` by thread `tid` (ClientHello out, ServerHello in): a ciphertext
    /// stream.
    fn handshake(c: &mut Converter, tid: u32, sock: u64, out: &mut Vec<Segment>) {
        feed(c, &tls_event(tid, sock, 0, 10, 0, 0, HELLO), out);
        feed(c, &tls_event(tid, sock, 0, 20, 0, 1, SERVER_HELLO), out);
    }

    #[test]
    fn memory_bio_plaintext_follows_its_threads_ciphertext() {
        let mut c = Converter::new(64, 0);
        let mut out = Vec::new();
        // The handshake on socket 0x100 (thread 5): a ciphertext stream.
        handshake(&mut c, 5, 0x100, &mut out);
        assert!(out.is_empty());
        // SSL_write into the BIO: waits for the thread's next send.
        feed(
            &mut c,
            &tls_event(5, 0, 0xA0, 30, 0, 0, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        assert!(out.is_empty(), "not bound yet");
        feed(&mut c, &tls_event(5, 0x100, 0, 40, 11, 0, RECORD), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(out[0].flow.socket_id, tls_id(0x100));
        assert_eq!(out[0].direction, Direction::ClientToServer);
        assert_eq!((out[0].offset, out[0].gap_before), (0, 0));
        assert_eq!(out[0].flow.server.port(), 443);
        // The answer's ciphertext arrives, then SSL_read takes its plaintext out of the BIO.
        out.clear();
        feed(&mut c, &tls_event(5, 0x100, 0, 50, 11, 1, RECORD), &mut out);
        feed(
            &mut c,
            &tls_event(5, 0, 0xA0, 60, 0, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].direction, Direction::ServerToClient);
        assert_eq!(out[0].flow.socket_id, tls_id(0x100));
        // Bound now: the next write goes straight to its connection, at the next offset.
        out.clear();
        feed(
            &mut c,
            &tls_event(5, 0, 0xA0, 70, 0, 0, b"GET /2 HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 18);
        assert_eq!(c.stats().tls_unbound_bound, 3);
        assert_eq!(c.stats().tls_unbound_dropped, 0);
    }

    #[test]
    fn a_tls_stream_placed_from_unbound_plaintext_keeps_its_own_offsets() {
        let mut c = Converter::new(64, 0);
        let mut out = Vec::new();
        handshake(&mut c, 5, 0x100, &mut out);
        // A first read served from what OpenSSL read ahead: no syscall, so unbound ...
        feed(
            &mut c,
            &tls_event(5, 0, 0xA0, 30, 0, 1, b"0123456789"),
            &mut out,
        );
        // ... then the kernel finds the socket itself (a nested syscall) and counts its
        // plaintext offsets from 0, without those 10 bytes.
        let mut bound = tls_event(5, 0x100, 0, 40, 0, 1, b"abc");
        bound[47] = flags::TLS;
        feed(&mut c, &bound, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].flow.socket_id, tls_id(0x100));
        assert_eq!((out[1].offset, out[1].gap_before), (10, 0));
        assert_eq!(c.stats().restarted, 0);
    }

    #[test]
    fn memory_bio_writes_of_two_connections_on_one_thread_go_to_their_own_sends() {
        let mut c = Converter::new(64, 0);
        let mut out = Vec::new();
        for sock in [0x100, 0x200] {
            handshake(&mut c, 5, sock, &mut out);
        }
        feed(&mut c, &tls_event(5, 0, 0xA0, 30, 0, 0, b"to A"), &mut out);
        feed(&mut c, &tls_event(5, 0, 0xB0, 31, 0, 0, b"to B"), &mut out);
        feed(&mut c, &tls_event(5, 0x100, 0, 40, 11, 0, RECORD), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (&out[0].payload[..], out[0].flow.socket_id),
            (&b"to A"[..], tls_id(0x100))
        );
        feed(&mut c, &tls_event(5, 0x200, 0, 41, 11, 0, RECORD), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (&out[1].payload[..], out[1].flow.socket_id),
            (&b"to B"[..], tls_id(0x200))
        );
    }

    #[test]
    fn memory_bio_plaintext_streams_count_against_the_connection_limit() {
        let mut c = Converter::new(2, 0);
        let mut out = Vec::new();
        handshake(&mut c, 5, 0x100, &mut out);
        handshake(&mut c, 6, 0x200, &mut out);
        feed(&mut c, &tls_event(5, 0, 0xA0, 30, 0, 0, b"GET"), &mut out);
        feed(&mut c, &tls_event(5, 0x100, 0, 40, 11, 0, RECORD), &mut out);
        assert_eq!(
            c.connections(),
            2,
            "a plaintext stream made room for itself"
        );
        assert_eq!(c.stats().evicted, 1);
    }

    #[test]
    fn memory_bio_plaintext_that_cannot_be_tied_is_counted() {
        let mut c = Converter::new(64, 0);
        let mut out = Vec::new();
        // A read on a thread that received no ciphertext, a write that waits past the limit.
        feed(
            &mut c,
            &tls_event(7, 0, 0xC0, 10, 0, 1, b"HTTP/1.1 200 OK\r\n\r\n"),
            &mut out,
        );
        feed(
            &mut c,
            &tls_event(7, 0, 0xC0, 20, 0, 0, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        feed(
            &mut c,
            &tls_event(8, 0, 0xD0, 20 + UNBOUND_WAIT_NS + 1, 0, 0, b"x"),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(
            c.stats().tls_unbound_dropped,
            2,
            "the read, and the stale write"
        );
        assert_eq!(c.pending_len, 1);
        // The limit on waiting writes.
        for i in 0..(MAX_UNBOUND_PENDING as u64 + 5) {
            feed(
                &mut c,
                &tls_event(9, 0, 0xE0, 30 + UNBOUND_WAIT_NS + i, 0, 0, b"y"),
                &mut out,
            );
        }
        assert_eq!(c.pending_len, MAX_UNBOUND_PENDING);
        assert_eq!(c.stats().tls_unbound_dropped, 2 + 6);
    }

    #[test]
    fn process_names_are_kept_once_and_cloned_for_free() {
        let a = comm_bytes(b"l7tap-test-name");
        let b = comm_bytes(b"l7tap-test-name");
        assert_eq!(&a[..], b"l7tap-test-name");
        assert_eq!(a.as_ptr(), b.as_ptr(), "one copy for the process");
        assert_eq!(a.clone().as_ptr(), a.as_ptr());
        assert_ne!(comm_bytes(b"other").as_ptr(), a.as_ptr());
    }

    #[test]
    fn client_socket_events_become_oriented_segments() {
        let mut c = Converter::new(16, 5);
        let mut out = Vec::new();
        feed(
            &mut c,
            &data(0x1000, 0, 0, 1, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        feed(
            &mut c,
            &data(0x1000, 0, 1, 1, b"HTTP/1.1 200 OK\r\n"),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].direction, Direction::ClientToServer);
        assert_eq!(out[1].direction, Direction::ServerToClient);
        assert_eq!(out[0].flow.client, "127.0.0.1:40000".parse().expect("addr"));
        assert_eq!(out[0].flow.server, "127.0.0.1:80".parse().expect("addr"));
        assert_eq!(out[0].flow.socket_id, 0x1000);
        assert_eq!(out[0].ts_ns, 1_005);
        let p = out[0].process.as_ref().expect("process");
        assert_eq!((p.pid, &p.comm[..]), (42, &b"curl"[..]));
    }

    #[test]
    fn truncation_and_lost_events_show_as_gaps() {
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        let mut e = EventBuilder {
            sock_id: 8,
            kind: 1,
            sotype: 1,
            role: 1,
            total_len: 100,
            local: ([127, 0, 0, 1], 40000),
            remote: ([127, 0, 0, 1], 80),
            ..Default::default()
        };
        feed(&mut c, &e.bytes(&[b'x'; 10]), &mut out); // 100 moved, 10 copied
        e.offset = 100;
        e.total_len = 0;
        feed(&mut c, &e.bytes(b"abc"), &mut out);
        e.offset = 203; // 100 bytes lost in the ring
        feed(&mut c, &e.bytes(b"def"), &mut out);
        // The first event's 90 unseen bytes are a gap at its own time (an empty segment
        // ending at offset 100); the ring loss is a gap before the bytes after it.
        assert_eq!(out.len(), 4);
        assert_eq!(
            (out[0].offset, out[0].gap_before, out[0].payload.len()),
            (0, 0, 10)
        );
        assert_eq!(
            (out[1].offset, out[1].gap_before, out[1].payload.len()),
            (100, 90, 0)
        );
        assert_eq!(out[1].ts_ns, out[0].ts_ns);
        assert_eq!((out[2].offset, out[2].gap_before), (100, 0));
        assert_eq!((out[3].offset, out[3].gap_before), (203, 100));
        assert_eq!(c.stats().gap_bytes, 190);
    }

    #[test]
    fn a_stream_that_starts_with_a_tls_handshake_is_counted_not_parsed() {
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        // A ClientHello record header (TLS 1.2 legacy version, 512-byte record).
        let hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        feed(&mut c, &data(9, 0, 0, 1, &hello), &mut out);
        feed(
            &mut c,
            &data(9, 0, 1, 1, &[0x16, 0x03, 0x03, 0x00, 0x7a, 0x02]),
            &mut out,
        );
        feed(
            &mut c,
            &data(9, 11, 0, 1, &[0x17, 0x03, 0x03, 0x00, 0x20]),
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(c.stats().tls_ciphertext_bytes, 11 + 6 + 5);
        // Its plaintext (from the OpenSSL probes) is a stream of its own, parsed as usual.
        let plain = EventBuilder {
            sock_id: 9,
            kind: 1,
            sotype: 1,
            role: 1,
            flags: flags::TLS,
            local: ([127, 0, 0, 1], 40000),
            remote: ([127, 0, 0, 1], 443),
            ..Default::default()
        };
        feed(&mut c, &plain.bytes(b"GET / HTTP/1.1\r\n\r\n"), &mut out);
        assert_eq!(
            out.iter().filter(|s| !s.payload.is_empty()).count(),
            1,
            "{out:?}"
        );
        // Plaintext protocols are not taken for TLS, nor is a 0x16 0x03 prefix later in a
        // stream or without a hello.
        for b in [
            &b"GET / HTTP/1.1"[..],
            b"*1\r\n$4\r\nPING\r\n",
            &[0x16, 0x03, 0x01, 0x00, 0x10, 0x0b],
        ] {
            assert!(!starts_tls(b), "{b:?}");
        }
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        feed(&mut c, &data(5, 0, 0, 1, b"PING"), &mut out);
        feed(&mut c, &data(5, 4, 0, 1, &hello), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(c.stats().tls_ciphertext_bytes, 0);
    }

    #[test]
    fn close_and_restart_end_the_flow() {
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        feed(&mut c, &data(8, 0, 0, 1, b"abcd"), &mut out);
        feed(&mut c, &data(8, 0, 0, 1, b"ab"), &mut out); // offset went back: new stream
        assert_eq!(c.stats().restarted, 1);
        assert!(out[1].end_of_flow);
        let close = EventBuilder {
            sock_id: 8,
            kind: 3,
            sotype: 1,
            ..Default::default()
        }
        .bytes(b"");
        feed(&mut c, &close, &mut out);
        assert!(out.last().expect("close").end_of_flow);
        assert_eq!(c.connections(), 0);
    }

    /// What a lifecycle event ends, found through the table's indexes: a close ends the
    /// socket's streams (its TLS plaintext twin too) and no other; an exit ends the streams
    /// its process last moved bytes on, including one it took over from another process, and
    /// not one another process took over from it.
    #[test]
    fn close_and_exit_end_exactly_their_streams() {
        let mut c = Converter::new(64, 0);
        let mut out = Vec::new();
        let ev = |sock: u64, kind: u8, pid: u32, flags: u8, payload: &[u8]| {
            EventBuilder {
                ts_mono_ns: 1_000,
                sock_id: sock,
                // (A later event continues the stream: one byte on.)
                offset: u64::from(pid == 2 && sock == 32 || pid == 1 && sock == 48),
                pid,
                kind,
                flags,
                sotype: 1,
                role: 1,
                local: ([127, 0, 0, 1], 40000),
                remote: ([127, 0, 0, 1], 443),
                comm: "client",
                ..Default::default()
            }
            .bytes(payload)
        };
        // Process 1: sockets 16 (with TLS plaintext) and 32; process 2: socket 48, then it
        // also moves bytes on 32 (inherited) and process 1 on 48.
        feed(
            &mut c,
            &ev(16, 1, 1, flags::TLS, b"GET / HTTP/1.1\r\n\r\n"),
            &mut out,
        );
        feed(&mut c, &ev(16, 1, 1, 0, b"x"), &mut out);
        feed(&mut c, &ev(32, 1, 1, 0, b"y"), &mut out);
        feed(&mut c, &ev(48, 1, 2, 0, b"z"), &mut out);
        let ended = |out: &mut Vec<Segment>| -> Vec<u64> {
            let mut ids: Vec<u64> = out
                .drain(..)
                .filter(|s| s.end_of_flow)
                .map(|s| s.flow.socket_id)
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(c.connections(), 4);
        ended(&mut out);
        feed(&mut c, &ev(32, 1, 2, 0, b"y"), &mut out);
        feed(&mut c, &ev(48, 1, 1, 0, b"z"), &mut out);
        assert_eq!(ended(&mut out), Vec::<u64>::new());
        // Close of 16: its stream and its TLS twin (id | 1).
        feed(&mut c, &ev(16, 3, 1, 0, b""), &mut out);
        assert_eq!(ended(&mut out), vec![16, 17]);
        // Exit of process 1: 48, which it moved bytes on last; not 32 (process 2's now).
        feed(&mut c, &ev(0, 4, 1, 0, b""), &mut out);
        assert_eq!(ended(&mut out), vec![48]);
        feed(&mut c, &ev(0, 4, 2, 0, b""), &mut out);
        assert_eq!(ended(&mut out), vec![32]);
        assert_eq!(c.connections(), 0);
        assert_eq!(c.stats().closed, 4);
    }

    #[test]
    fn table_is_bounded_and_garbage_is_counted() {
        let mut c = Converter::new(2, 0);
        let mut out = Vec::new();
        for s in 1..=5u64 {
            feed(&mut c, &data(s * 8, 0, 0, 1, b"x"), &mut out);
        }
        assert_eq!(c.connections(), 2);
        assert_eq!(c.stats().evicted, 3);
        feed(&mut c, &[1, 2, 3], &mut out);
        let mut bad = data(8, 0, 0, 1, b"xyz");
        bad.truncate(bad.len() - 1); // cap_len says 3, 2 present
        feed(&mut c, &bad, &mut out);
        assert_eq!(c.stats().decode_errors, 2);
    }

    #[test]
    fn random_and_damaged_events_never_panic_and_are_all_counted() {
        // Events with every header field random (kinds, directions, flags, socket types,
        // roles, offsets near u64::MAX, lengths that lie), and real events with bytes changed
        // or cut: decoded or counted as undecodable, never a panic; payloads stay in bounds.
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut c = Converter::new(64, -5);
        let mut out = Vec::new();
        let n = 20_000u64;
        for i in 0..n {
            let r = next();
            let payload: Vec<u8> = (0..(r % 300) as usize).map(|_| next() as u8).collect();
            let mut e = EventBuilder {
                ts_mono_ns: next(),
                sock_id: next() % 16,
                offset: if i % 3 == 0 { next() } else { next() % 4096 },
                pid: (next() % 4) as u32,
                total_len: (next() % 70_000) as u32,
                kind: (next() % 8) as u8,
                dir: (next() % 3) as u8,
                flags: next() as u8,
                sotype: (next() % 4) as u8,
                family: [0, 1, 10, 3][(next() % 4) as usize],
                role: (next() % 4) as u8,
                local: ([127, 0, 0, 1], next() as u16),
                remote: ([127, 0, 0, 1], next() as u16),
                comm: "fuzz",
            }
            .bytes(&payload);
            match next() % 4 {
                0 => {
                    let at = (next() as usize) % e.len();
                    e[at] = next() as u8;
                }
                1 => e.truncate((next() as usize) % (e.len() + 1)),
                _ => {}
            }
            out.clear();
            feed(&mut c, &e, &mut out);
            for seg in &out {
                assert!(seg.payload.len() <= payload.len().max(e.len()));
            }
        }
        assert_eq!(c.stats().events, n);
        assert!(c.stats().decode_errors > 0 && c.stats().segments > 0);
        assert!(c.connections() <= 64);
    }

    #[test]
    fn server_role_flips_orientation() {
        let mut c = Converter::new(16, 0);
        let mut out = Vec::new();
        let e = EventBuilder {
            sock_id: 16,
            kind: 1,
            dir: 1,
            sotype: 1,
            role: 2,
            local: ([127, 0, 0, 1], 8080),
            remote: ([127, 0, 0, 1], 50000),
            ..Default::default()
        };
        feed(&mut c, &e.bytes(b"GET /"), &mut out);
        assert_eq!(out[0].direction, Direction::ClientToServer);
        assert_eq!(out[0].flow.server.port(), 8080);
    }
}
