//! TCP reassembly per direction, UDP datagrams, and client/server orientation.
//!
//! Every connection keeps, per direction, the next expected sequence number and a bounded
//! out-of-order store. In-order bytes are delivered at once (zero extra copies beyond the one
//! out of the capture buffer); retransmitted and overlapping bytes are trimmed; a hole that
//! is never filled (store overflow, FIN, end of input) is skipped and reported to the core as
//! `gap_before`, so parsers resynchronise instead of reading garbage.

use crate::link::{Packet, Transport};
use bytes::Bytes;
use l7tap_core::{Direction, FlowKey, Segment, L4};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Limits of the reassembler.
#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Most connections tracked; beyond, the least recently seen is dropped (counted).
    pub max_connections: usize,
    /// Most out-of-order bytes held per direction before the hole is given up.
    pub max_out_of_order_bytes: usize,
    /// Most out-of-order segments held per direction.
    pub max_out_of_order_segments: usize,
    /// A connection unseen for this long (capture time) is forgotten.
    pub idle_timeout_ns: u64,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_connections: 262_144,
            max_out_of_order_bytes: 1 << 20,
            max_out_of_order_segments: 1024,
            idle_timeout_ns: 300 * 1_000_000_000,
        }
    }
}

/// Reassembly counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// TCP segments seen.
    pub tcp_segments: u64,
    /// UDP datagrams delivered.
    pub udp_datagrams: u64,
    /// Segments whose bytes were all delivered already.
    pub tcp_retransmissions: u64,
    /// Segments partly overlapping delivered bytes (trimmed).
    pub tcp_overlaps: u64,
    /// Segments that arrived ahead of a hole.
    pub tcp_out_of_order: u64,
    /// Holes given up.
    pub tcp_gaps: u64,
    /// Bytes in the holes given up.
    pub tcp_gap_bytes: u64,
    /// Out-of-order segments dropped because the store was full.
    pub tcp_out_of_order_overflow: u64,
    /// Connections created.
    pub connections: u64,
    /// Connections dropped because the table was full.
    pub connections_evicted: u64,
    /// Connections closed by FIN (both sides) or RST.
    pub connections_closed: u64,
}

#[derive(Debug, Default)]
struct DirState {
    /// Next expected sequence number, once known.
    next_seq: Option<u32>,
    /// Stream offset of `next_seq`.
    offset: u64,
    /// Out-of-order segments by stream offset.
    ooo: BTreeMap<u64, (Bytes, u64)>,
    ooo_bytes: usize,
    fin: bool,
}

#[derive(Debug)]
struct Conn {
    key: FlowKey,
    dirs: [DirState; 2],
    last_ts_ns: u64,
}

type ConnId = (L4, SocketAddr, SocketAddr);

fn conn_id(l4: L4, a: SocketAddr, b: SocketAddr) -> ConnId {
    if a <= b {
        (l4, a, b)
    } else {
        (l4, b, a)
    }
}

/// Guesses which side is the server when no SYN was seen: a privileged port against an
/// unprivileged one, then a non-ephemeral port against an ephemeral one, else the receiver of
/// the first packet (as DeepFlow's tests do). The core corrects it later if a parser sees a
/// response coming from the "client".
fn src_is_server(src: u16, dst: u16) -> bool {
    let privileged = |p: u16| p < 1024;
    let ephemeral = |p: u16| p >= 32768;
    if privileged(src) != privileged(dst) {
        return privileged(src);
    }
    if ephemeral(src) != ephemeral(dst) {
        return !ephemeral(src);
    }
    false
}

/// Turns decoded packets into [`Segment`]s.
#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblyConfig,
    conns: HashMap<ConnId, Conn, l7tap_core::FlowBuildHasher>,
    stats: ReassemblyStats,
    last_sweep_ns: u64,
}

impl Reassembler {
    /// A reassembler with these limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            ..Default::default()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Connections tracked.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Feeds one packet; segments it completes go to `emit`. The payload is copied once; use
    /// [`Reassembler::push_in`] when the frame is already a [`Bytes`].
    pub fn push(&mut self, pkt: &Packet<'_>, ts_ns: u64, emit: &mut dyn FnMut(Segment)) {
        let payload = Bytes::copy_from_slice(pkt.payload);
        self.push_payload(pkt, payload, ts_ns, emit);
    }

    /// Feeds a packet decoded from `frame`: the segments share the frame's memory (no copy).
    pub fn push_in(
        &mut self,
        pkt: &Packet<'_>,
        frame: &Bytes,
        ts_ns: u64,
        emit: &mut dyn FnMut(Segment),
    ) {
        let base = frame.as_ptr() as usize;
        let at = (pkt.payload.as_ptr() as usize).wrapping_sub(base);
        let payload = if pkt.payload.is_empty() {
            Bytes::new()
        } else if at <= frame.len() && pkt.payload.len() <= frame.len() - at {
            frame.slice(at..at + pkt.payload.len())
        } else {
            // Not decoded from this frame after all: copy rather than guess.
            Bytes::copy_from_slice(pkt.payload)
        };
        self.push_payload(pkt, payload, ts_ns, emit);
    }

    fn push_payload(
        &mut self,
        pkt: &Packet<'_>,
        payload: Bytes,
        ts_ns: u64,
        emit: &mut dyn FnMut(Segment),
    ) {
        if ts_ns.saturating_sub(self.last_sweep_ns) >= 1_000_000_000 {
            self.sweep(ts_ns, emit);
        }
        match pkt.transport {
            Transport::Udp => self.push_udp(pkt, payload, ts_ns, emit),
            Transport::Tcp {
                seq,
                syn,
                ack,
                fin,
                rst,
            } => self.push_tcp(pkt, payload, ts_ns, seq, syn, ack, fin, rst, emit),
        }
    }

    fn conn(
        &mut self,
        l4: L4,
        pkt: &Packet<'_>,
        ts_ns: u64,
        client_is_src: Option<bool>,
    ) -> (ConnId, Direction) {
        let id = conn_id(l4, pkt.src, pkt.dst);
        if !self.conns.contains_key(&id) {
            if self.conns.len() >= self.config.max_connections.max(1) {
                if let Some(old) = self
                    .conns
                    .iter()
                    .min_by_key(|(_, c)| c.last_ts_ns)
                    .map(|(k, _)| *k)
                {
                    self.conns.remove(&old);
                    self.stats.connections_evicted += 1;
                }
            }
            let src_client =
                client_is_src.unwrap_or_else(|| !src_is_server(pkt.src.port(), pkt.dst.port()));
            let key = if src_client {
                FlowKey {
                    l4,
                    client: pkt.src,
                    server: pkt.dst,
                    socket_id: 0,
                    path: "",
                }
            } else {
                FlowKey {
                    l4,
                    client: pkt.dst,
                    server: pkt.src,
                    socket_id: 0,
                    path: "",
                }
            };
            self.stats.connections += 1;
            self.conns.insert(
                id,
                Conn {
                    key,
                    dirs: [DirState::default(), DirState::default()],
                    last_ts_ns: ts_ns,
                },
            );
        }
        let dir = match self.conns.get_mut(&id) {
            Some(c) => {
                c.last_ts_ns = ts_ns;
                if c.key.client == pkt.src {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                }
            }
            None => Direction::ClientToServer,
        };
        (id, dir)
    }

    fn push_udp(
        &mut self,
        pkt: &Packet<'_>,
        payload: Bytes,
        ts_ns: u64,
        emit: &mut dyn FnMut(Segment),
    ) {
        if pkt.payload.is_empty() {
            return;
        }
        let (id, dir) = self.conn(L4::Udp, pkt, ts_ns, None);
        let Some(c) = self.conns.get(&id) else { return };
        self.stats.udp_datagrams += 1;
        emit(Segment::data(c.key, dir, ts_ns, 0, payload));
    }

    #[allow(clippy::too_many_arguments)]
    fn push_tcp(
        &mut self,
        pkt: &Packet<'_>,
        payload: Bytes,
        ts_ns: u64,
        seq: u32,
        syn: bool,
        ack: bool,
        fin: bool,
        rst: bool,
        emit: &mut dyn FnMut(Segment),
    ) {
        self.stats.tcp_segments += 1;
        if !syn
            && pkt.payload.is_empty()
            && !self.conns.contains_key(&conn_id(L4::Tcp, pkt.src, pkt.dst))
        {
            // A bare ACK/FIN/RST of a connection we do not track (already closed, or seen
            // before its data) carries nothing to deliver.
            return;
        }
        let hint = if syn { Some(!ack) } else { None };
        let (id, dir) = self.conn(L4::Tcp, pkt, ts_ns, hint);
        let cfg = self.config.clone();
        let stats = &mut self.stats;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let key = c.key;
        let d = &mut c.dirs[dir.index()];
        if syn {
            // The SYN consumes one sequence number; data starts after it.
            if d.next_seq.is_none() {
                d.next_seq = Some(seq.wrapping_add(1));
            }
        } else if d.next_seq.is_none() && (!pkt.payload.is_empty() || fin) {
            d.next_seq = Some(seq);
        }
        let payload_seq = if syn { seq.wrapping_add(1) } else { seq };
        if !pkt.payload.is_empty() {
            deliver(d, key, dir, payload_seq, payload, ts_ns, &cfg, stats, emit);
        }
        if fin {
            d.fin = true;
            // Nothing more will fill the holes of this direction.
            flush_holes(d, key, dir, ts_ns, stats, emit);
        }
        let closed = rst || c.dirs.iter().all(|d| d.fin);
        if closed {
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                flush_holes(&mut c.dirs[dir.index()], key, dir, ts_ns, stats, emit);
            }
            self.stats.connections_closed += 1;
            self.conns.remove(&id);
            emit(Segment::close(key, ts_ns));
        }
    }

    /// Forgets idle connections (after delivering what they hold).
    fn sweep(&mut self, now_ns: u64, emit: &mut dyn FnMut(Segment)) {
        self.last_sweep_ns = now_ns;
        let deadline = now_ns.saturating_sub(self.config.idle_timeout_ns);
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.last_ts_ns < deadline)
            .map(|(k, _)| *k)
            .collect();
        for id in idle {
            if let Some(mut c) = self.conns.remove(&id) {
                for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                    flush_holes(
                        &mut c.dirs[dir.index()],
                        c.key,
                        dir,
                        now_ns,
                        &mut self.stats,
                        emit,
                    );
                }
                emit(Segment::close(c.key, now_ns));
            }
        }
    }

    /// End of input: delivers what waits behind holes. Flows stay open; the engine ends them.
    pub fn finish(&mut self, ts_ns: u64, emit: &mut dyn FnMut(Segment)) {
        for c in self.conns.values_mut() {
            for dir in [Direction::ClientToServer, Direction::ServerToClient] {
                flush_holes(
                    &mut c.dirs[dir.index()],
                    c.key,
                    dir,
                    ts_ns,
                    &mut self.stats,
                    emit,
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn deliver(
    d: &mut DirState,
    key: FlowKey,
    dir: Direction,
    seq: u32,
    payload: Bytes,
    ts_ns: u64,
    cfg: &ReassemblyConfig,
    stats: &mut ReassemblyStats,
    emit: &mut dyn FnMut(Segment),
) {
    let Some(next) = d.next_seq else { return };
    // Signed distance from the next expected byte; sequence numbers wrap at 2^32.
    let dist = i64::from(seq.wrapping_sub(next) as i32);
    let len = payload.len() as i64;
    if dist + len <= 0 {
        stats.tcp_retransmissions += 1;
        return;
    }
    if dist <= 0 {
        let skip = (-dist) as usize;
        if skip > 0 {
            stats.tcp_overlaps += 1;
        }
        let data = payload.slice(skip..);
        let n = data.len();
        emit(Segment::data(key, dir, ts_ns, d.offset, data));
        d.offset += n as u64;
        d.next_seq = Some(next.wrapping_add(n as u32));
        drain_in_order(d, key, dir, stats, emit);
        return;
    }
    // Ahead of a hole: keep it until the hole fills, within bounds.
    stats.tcp_out_of_order += 1;
    let at = d.offset + dist as u64;
    if d.ooo_bytes + payload.len() > cfg.max_out_of_order_bytes
        || d.ooo.len() >= cfg.max_out_of_order_segments
    {
        // The hole will not be filled in time: give it up, deliver what is held, then this.
        stats.tcp_out_of_order_overflow += 1;
        store(d, at, payload, ts_ns);
        flush_holes(d, key, dir, ts_ns, stats, emit);
        return;
    }
    store(d, at, payload, ts_ns);
}

fn store(d: &mut DirState, at: u64, payload: Bytes, ts_ns: u64) {
    let keep = match d.ooo.get(&at) {
        Some((old, _)) => payload.len() > old.len(),
        None => true,
    };
    if keep {
        let n = payload.len();
        if let Some((old, _)) = d.ooo.insert(at, (payload, ts_ns)) {
            d.ooo_bytes -= old.len();
        }
        d.ooo_bytes += n;
    }
}

/// Delivers the stored segments that now continue the stream.
fn drain_in_order(
    d: &mut DirState,
    key: FlowKey,
    dir: Direction,
    stats: &mut ReassemblyStats,
    emit: &mut dyn FnMut(Segment),
) {
    while let Some(entry) = d.ooo.first_entry() {
        let at = *entry.key();
        if at > d.offset {
            break;
        }
        let (data, ts) = entry.remove();
        d.ooo_bytes -= data.len();
        let end = at + data.len() as u64;
        if end <= d.offset {
            stats.tcp_retransmissions += 1;
            continue;
        }
        let skip = (d.offset - at) as usize;
        let data = data.slice(skip..);
        emit(Segment::data(key, dir, ts, d.offset, data.clone()));
        d.offset += data.len() as u64;
        d.next_seq = d.next_seq.map(|n| n.wrapping_add(data.len() as u32));
    }
}

/// Gives up the holes of a direction: delivers every stored segment in order, reporting each
/// hole as `gap_before`.
fn flush_holes(
    d: &mut DirState,
    key: FlowKey,
    dir: Direction,
    ts_ns: u64,
    stats: &mut ReassemblyStats,
    emit: &mut dyn FnMut(Segment),
) {
    let _ = ts_ns;
    while let Some(&at) = d.ooo.keys().next() {
        if at > d.offset {
            let gap = at - d.offset;
            stats.tcp_gaps += 1;
            stats.tcp_gap_bytes += gap;
            d.next_seq = d.next_seq.map(|n| n.wrapping_add(gap as u32));
            d.offset = at;
            let Some((data, ts)) = d.ooo.remove(&at) else {
                break;
            };
            d.ooo_bytes -= data.len();
            let mut seg = Segment::data(key, dir, ts, d.offset, data.clone());
            seg.gap_before = gap;
            emit(seg);
            d.offset += data.len() as u64;
            d.next_seq = d.next_seq.map(|n| n.wrapping_add(data.len() as u32));
        }
        drain_in_order(d, key, dir, stats, emit);
    }
}

#[cfg(test)]
mod tests;
