//! Flow identity and direction.

use bytes::Bytes;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Transport protocol of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    /// TCP: a byte stream per direction.
    Tcp,
    /// UDP: one message per datagram.
    Udp,
    /// A Unix-domain stream socket (live capture): a byte stream per direction, like TCP,
    /// between two processes of this host. It has no addresses or ports; its name is the
    /// flow's [`FlowKey::path`].
    Unix,
}

impl L4 {
    /// Lower-case name as used in JSON ("tcp" / "udp" / "unix"; OTel `network.transport`).
    pub fn as_str(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
            L4::Unix => "unix",
        }
    }

    /// A byte stream (TCP or a Unix stream socket): messages are framed from the bytes,
    /// not taken one per datagram.
    pub fn is_stream(self) -> bool {
        self != L4::Udp
    }
}

/// A connection, oriented client -> server.
///
/// Sources orient the key as well as they can (TCP SYN, then port heuristics); inference may
/// later discover that the roles are the other way round, and the flow table then swaps them.
#[derive(Debug, Clone, Copy, PartialOrd, Ord)]
pub struct FlowKey {
    /// Transport protocol.
    pub l4: L4,
    /// The side that opened the connection (sends requests).
    pub client: SocketAddr,
    /// The side that accepted the connection (sends responses).
    pub server: SocketAddr,
    /// 0 for traffic seen on the wire (pcap). A live source that sees traffic at a socket sets
    /// the socket's id, so that the two ends of one loopback connection, both on this host,
    /// are two flows (each seen by its own process) instead of one with every byte twice.
    pub socket_id: u64,
    /// [`L4::Unix`]: the server's socket path (`@name` for an abstract name, empty for an
    /// unnamed pair such as `socketpair(2)`); `client` and `server` are then unspecified.
    /// Empty for TCP and UDP. Names are kept once for the process's life (see
    /// [`intern_path`]), so the key stays `Copy`.
    pub path: &'static str,
}

impl FlowKey {
    /// A TCP flow key.
    pub fn tcp(client: SocketAddr, server: SocketAddr) -> Self {
        FlowKey {
            l4: L4::Tcp,
            client,
            server,
            socket_id: 0,
            path: "",
        }
    }

    /// A UDP flow key.
    pub fn udp(client: SocketAddr, server: SocketAddr) -> Self {
        FlowKey {
            l4: L4::Udp,
            client,
            server,
            socket_id: 0,
            path: "",
        }
    }

    /// The same connection with client and server exchanged.
    pub fn reversed(&self) -> Self {
        FlowKey {
            l4: self.l4,
            client: self.server,
            server: self.client,
            socket_id: self.socket_id,
            path: self.path,
        }
    }

    /// A hash that is the same for both orientations of the connection: used to pick a worker,
    /// so that a flow whose roles get swapped stays on the same shard.
    pub fn shard_hash(&self) -> u64 {
        let a = addr_hash(&self.client);
        let b = addr_hash(&self.server);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        // A cheap, well-mixing combination (splitmix64 finaliser).
        let mut x = lo ^ hi.rotate_left(29) ^ (self.l4 as u64) ^ self.socket_id;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl PartialEq for FlowKey {
    /// Field by field; the path by length first, so that the usual empty path (TCP, UDP) and
    /// an interned one compared with itself cost no `memcmp` call (a key is compared on every
    /// flow-table lookup).
    fn eq(&self, o: &Self) -> bool {
        self.socket_id == o.socket_id
            && self.l4 == o.l4
            && self.client == o.client
            && self.server == o.server
            && self.path.len() == o.path.len()
            && (self.path.is_empty() || std::ptr::eq(self.path, o.path) || self.path == o.path)
    }
}

impl Eq for FlowKey {}

impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // One word per key: cheap with [`FlowHasher`], still fine with any other hasher.
        state.write_u64(
            addr_hash(&self.client).rotate_left(21)
                ^ addr_hash(&self.server)
                ^ self.l4 as u64
                ^ self.socket_id.rotate_left(7),
        );
    }
}

/// A fast hasher for flow-keyed tables, keyed with a per-table random seed so that traffic
/// cannot be crafted to collide (the seed comes from std's `RandomState`).
#[derive(Debug, Clone, Copy)]
pub struct FlowHasher(u64);

impl std::hash::Hasher for FlowHasher {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        // Whole words, then the tail folded into one word with its length (no copy through a
        // buffer: keys derived with `#[derive(Hash)]`, such as socket addresses, arrive here
        // as many short writes, and a `memcpy` call per write cost more than the hash).
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.write_u64(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let w = tail
                .iter()
                .enumerate()
                .fold(0u64, |w, (i, b)| w | u64::from(*b) << (8 * i));
            self.write_u64(w ^ (tail.len() as u64) << 59);
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }
    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(23) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Builds [`FlowHasher`]s with a random seed.
#[derive(Debug, Clone, Copy)]
pub struct FlowBuildHasher(u64);

impl Default for FlowBuildHasher {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        FlowBuildHasher(
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
                | 1,
        )
    }
}

impl std::hash::BuildHasher for FlowBuildHasher {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher(self.0)
    }
}

/// Socket paths [`intern_path`] keeps at most (each at most 108 bytes, the size of
/// `sun_path`: ~0.5 MB in all).
pub const MAX_INTERNED_PATHS: usize = 4096;

/// A Unix socket path as a `&'static str`, kept once for the process's life so that flow
/// keys that carry it stay `Copy`. `None` once [`MAX_INTERNED_PATHS`] different paths are
/// kept (the caller counts it); the empty path is always `Some("")`.
pub fn intern_path(path: &str) -> Option<&'static str> {
    use std::collections::HashSet;
    static KEPT: std::sync::Mutex<Option<HashSet<&'static str>>> = std::sync::Mutex::new(None);
    if path.is_empty() {
        return Some("");
    }
    // (Poisoning cannot leave the set inconsistent: an insert is the only change.)
    let mut guard = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let kept = guard.get_or_insert_with(HashSet::new);
    if let Some(s) = kept.get(path) {
        return Some(s);
    }
    if kept.len() >= MAX_INTERNED_PATHS {
        return None;
    }
    let s: &'static str = Box::leak(Box::from(path));
    kept.insert(s);
    Some(s)
}

/// A socket address folded into one word (input to [`FlowHasher`]-keyed tables).
pub fn addr_hash(a: &SocketAddr) -> u64 {
    let ip = match a.ip() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            (n as u64) ^ ((n >> 64) as u64).rotate_left(17)
        }
    };
    ip.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(a.port())
}

impl Default for FlowKey {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        FlowKey {
            l4: L4::Tcp,
            client: unspecified,
            server: unspecified,
            socket_id: 0,
            path: "",
        }
    }
}

/// Which way a segment travels on its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// From the client to the server (requests).
    #[default]
    ClientToServer,
    /// From the server to the client (responses).
    ServerToClient,
}

impl Direction {
    /// The other direction.
    pub fn flip(self) -> Self {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// 0 for client->server, 1 for server->client (index into per-direction arrays).
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// The process behind a socket, when the source knows it (eBPF capture does, pcap does not).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessInfo {
    /// Process id (thread group id).
    pub pid: u32,
    /// Thread id that made the syscall.
    pub tid: u32,
    /// Command name (at most 16 bytes in Linux).
    pub comm: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash, Hasher};

    fn h(seed: u64, v: &impl Hash) -> u64 {
        let mut s = FlowHasher(seed);
        v.hash(&mut s);
        s.finish()
    }

    #[test]
    fn distinct_socket_address_keys_do_not_collide() {
        // 256 hosts x 200 ports, IPv4 and IPv6, as the pcap reassembler keys them.
        let mut seen = std::collections::HashSet::new();
        for host in 0..=255u8 {
            for port in 40_000..40_200u16 {
                let v4 = SocketAddr::from(([10, 0, 0, host], port));
                let v6 = SocketAddr::from(([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(host)], port));
                let server = SocketAddr::from(([10, 0, 0, 1], 80));
                assert!(seen.insert(h(7, &(L4::Tcp, v4, server))));
                assert!(seen.insert(h(7, &(L4::Tcp, v6, server))));
            }
        }
        // The protocol is part of the key.
        let a = SocketAddr::from(([10, 0, 0, 1], 53));
        assert_ne!(h(7, &(L4::Udp, a)), h(7, &(L4::Tcp, a)));
    }

    #[test]
    fn a_tail_counts_its_length() {
        let bytes = |b: &[u8]| {
            let mut s = FlowHasher(3);
            s.write(b);
            s.finish()
        };
        assert_ne!(bytes(&[0]), bytes(&[0, 0]));
        assert_ne!(
            bytes(&[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            bytes(&[1, 2, 3, 4, 5, 6, 7, 8])
        );
        // Seeded: two tables hash the same key differently.
        let (x, y) = (FlowBuildHasher::default(), FlowBuildHasher::default());
        assert_ne!(x.hash_one(a_key()), y.hash_one(a_key()));
    }

    fn a_key() -> FlowKey {
        FlowKey::tcp(
            SocketAddr::from(([10, 0, 0, 2], 40_000)),
            SocketAddr::from(([10, 0, 0, 1], 80)),
        )
    }
}
