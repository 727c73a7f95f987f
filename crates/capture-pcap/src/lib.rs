//! l7tap-capture-pcap: pcap and pcapng files as a segment [`Source`].
//!
//! Reads classic pcap (both byte orders, micro- and nanosecond timestamps) and pcapng with
//! `pcap-file`; decodes Ethernet (with VLAN tags), Linux cooked v1/v2, raw IP and BSD loopback
//! frames, IPv4 and IPv6, with `etherparse`; reassembles TCP per direction ([`Reassembler`])
//! and hands UDP datagrams over whole.
//!
//! A damaged or cut file is an error naming the byte offset of the damage, returned after
//! everything before it has been delivered. It never panics on any input.
//!
//! It knows nothing about protocols, parsers or the engine: it only makes [`Segment`]s.
#![deny(missing_docs)]

pub mod link;
pub mod reassembly;

use bytes::Bytes;
use l7tap_core::{Segment, Source, SourceError, StatsSnapshot};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError};
use std::fs::File;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

pub use reassembly::{Reassembler, ReassemblyConfig, ReassemblyStats};

/// How much is read from the file at once.
const READ_CHUNK: usize = 1 << 20;
/// Largest single pcap record accepted (a corrupt length field must not make us allocate GiBs).
const MAX_RECORD: usize = 16 << 20;

/// Counters of the file reader (beyond reassembly).
#[derive(Debug, Clone, Default)]
pub struct ReaderStats {
    /// Frames read.
    pub packets: u64,
    /// Bytes of the file consumed.
    pub file_bytes: u64,
    /// Frames that were not IP.
    pub skipped_not_ip: u64,
    /// IP frames that were neither TCP nor UDP.
    pub skipped_not_tcp_udp: u64,
    /// IP fragments (not reassembled).
    pub skipped_fragments: u64,
    /// Frames with damaged or cut headers.
    pub skipped_malformed: u64,
    /// Frames of an unsupported link type.
    pub skipped_link_type: u64,
    /// Frames cut by the capture's snaplen (their payload is partial).
    pub incomplete_frames: u64,
}

/// A pcap or pcapng file (or any reader of one) as a [`Source`].
pub struct PcapSource {
    name: String,
    reader: Box<dyn Read + Send>,
    reassembler: Reassembler,
    stats: ReaderStats,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
}

impl PcapSource {
    /// Opens a capture file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SourceError> {
        let p = path.as_ref();
        let name = p.display().to_string();
        let f = File::open(p).map_err(|e| SourceError::Io {
            path: name.clone(),
            source: e,
        })?;
        Ok(Self::from_reader(name, f))
    }

    /// Reads a capture from any reader; `name` is used in errors.
    pub fn from_reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        PcapSource {
            name: name.into(),
            reader: Box::new(reader),
            reassembler: Reassembler::new(ReassemblyConfig::default()),
            stats: ReaderStats::default(),
            progress: None,
        }
    }

    /// Sets the reassembly limits.
    pub fn with_reassembly(mut self, config: ReassemblyConfig) -> Self {
        self.reassembler = Reassembler::new(config);
        self
    }

    /// Calls `f` with the number of file bytes consumed so far, about once per MiB.
    pub fn with_progress(mut self, f: impl FnMut(u64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// Reader counters.
    pub fn reader_stats(&self) -> &ReaderStats {
        &self.stats
    }

    /// Reassembly counters.
    pub fn reassembly_stats(&self) -> &ReassemblyStats {
        self.reassembler.stats()
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> SourceError {
        SourceError::Corrupt {
            path: self.name.clone(),
            offset,
            reason: reason.into(),
        }
    }

    fn on_frame(
        &mut self,
        link: DataLink,
        ts_ns: u64,
        data: &Bytes,
        emit: &mut dyn FnMut(Segment) -> bool,
    ) -> bool {
        self.stats.packets += 1;
        match link::decode(link, data) {
            Ok(pkt) => {
                if pkt.incomplete {
                    self.stats.incomplete_frames += 1;
                }
                let mut go_on = true;
                // Segments are slices of the frame: its one copy out of the file is the last.
                self.reassembler.push_in(&pkt, data, ts_ns, &mut |s| {
                    if go_on {
                        go_on = emit(s);
                    }
                });
                go_on
            }
            Err(why) => {
                let c = match why {
                    link::Skipped::NotIp => &mut self.stats.skipped_not_ip,
                    link::Skipped::NotTcpUdp => &mut self.stats.skipped_not_tcp_udp,
                    link::Skipped::Fragment => &mut self.stats.skipped_fragments,
                    link::Skipped::Malformed => &mut self.stats.skipped_malformed,
                    link::Skipped::UnsupportedLink => &mut self.stats.skipped_link_type,
                };
                *c += 1;
                true
            }
        }
    }
}

/// A frame read from the file: link type (None: unknown interface), timestamp, bytes.
type Frame = (Option<DataLink>, u64, Bytes);

/// A growing window over the file: `buf[start..]` is unread.
struct Window {
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Window {
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    fn unread(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more; false at end of file.
    fn fill(&mut self, r: &mut dyn Read) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match r.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }
}

fn ts_ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// pcap-file is not ours: a panic inside it on hostile input becomes a corrupt-file error.
fn guarded<T>(f: impl FnOnce() -> Result<T, PcapError>) -> Result<T, PcapError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(PcapError::InvalidField(
        "parser failure on damaged input",
    )))
}

impl PcapSource {
    fn io(&self, e: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.name.clone(),
            source: e,
        }
    }

    fn run_pcap(
        &mut self,
        w: &mut Window,
        emit: &mut dyn FnMut(Segment) -> bool,
    ) -> Result<(), SourceError> {
        let (link, parser) = loop {
            match guarded(|| PcapParser::new(w.unread()).map(|(rem, p)| (rem.len(), p))) {
                Ok((rem, p)) => {
                    w.start = w.buf.len() - rem;
                    break (p.header().datalink, p);
                }
                Err(PcapError::IncompleteBuffer) if !w.eof => {
                    if !w.fill(&mut self.reader).map_err(|e| self.io(e))? {
                        return Err(self.corrupt(w.offset(), "file ends inside the pcap header"));
                    }
                }
                Err(e) => return Err(self.corrupt(w.offset(), e.to_string())),
            }
        };
        if !link::supported(link) {
            return Err(SourceError::Unsupported {
                path: self.name.clone(),
                reason: format!("link type {link:?} is not supported"),
            });
        }
        // A record header is 16 bytes with its captured length at bytes 8..12.
        self.drive(w, emit, 8, "file ends inside a packet record", |buf| {
            let (rem, p) = parser.next_packet(buf)?;
            Ok((
                rem.len(),
                Some((
                    Some(link),
                    ts_ns(p.timestamp),
                    Bytes::copy_from_slice(&p.data),
                )),
            ))
        })
    }

    fn run_pcapng(
        &mut self,
        w: &mut Window,
        emit: &mut dyn FnMut(Segment) -> bool,
    ) -> Result<(), SourceError> {
        let mut parser = loop {
            match guarded(|| PcapNgParser::new(w.unread()).map(|(rem, p)| (rem.len(), p))) {
                Ok((rem, p)) => {
                    w.start = w.buf.len() - rem;
                    break p;
                }
                Err(PcapError::IncompleteBuffer) if !w.eof => {
                    if !w.fill(&mut self.reader).map_err(|e| self.io(e))? {
                        return Err(self.corrupt(w.offset(), "file ends inside the section header"));
                    }
                }
                Err(e) => return Err(self.corrupt(w.offset(), e.to_string())),
            }
        };
        // A block starts with its type, then its total length at bytes 4..8.
        self.drive(w, emit, 4, "file ends inside a block", |buf| {
            let (rem, block) = parser.next_block(buf)?;
            let frame = match &block {
                Block::EnhancedPacket(p) => {
                    let link = parser.packet_interface(p).map(|i| i.linktype);
                    Some((link, ts_ns(p.timestamp), Bytes::copy_from_slice(&p.data)))
                }
                Block::SimplePacket(p) => {
                    let link = parser.interfaces().first().map(|i| i.linktype);
                    Some((link, 0, Bytes::copy_from_slice(&p.data)))
                }
                Block::Packet(p) => {
                    let link = parser
                        .interfaces()
                        .get(usize::from(p.interface_id))
                        .map(|i| i.linktype);
                    // Obsolete block: timestamps in microseconds.
                    Some((
                        link,
                        p.timestamp.saturating_mul(1000),
                        Bytes::copy_from_slice(&p.data),
                    ))
                }
                _ => None,
            };
            Ok((rem.len(), frame))
        })
    }

    /// The read loop shared by both formats: `next` reads one record or block from the unread
    /// bytes and returns how many bytes remain and the frame it held, if any. `len_at` is where
    /// the record's 32-bit length field sits (checked so a corrupt length cannot make the
    /// window grow without bound).
    fn drive(
        &mut self,
        w: &mut Window,
        emit: &mut dyn FnMut(Segment) -> bool,
        len_at: usize,
        cut_reason: &str,
        mut next: impl FnMut(&[u8]) -> Result<(usize, Option<Frame>), PcapError>,
    ) -> Result<(), SourceError> {
        let mut last_progress = 0u64;
        loop {
            match guarded(|| next(w.unread())) {
                Ok((rem, frame)) => {
                    w.start = w.buf.len() - rem;
                    match frame {
                        Some((Some(link), ts, data))
                            if link::supported(link) && !self.on_frame(link, ts, &data, emit) =>
                        {
                            return Err(SourceError::Stopped);
                        }
                        Some((Some(link), _, _)) if link::supported(link) => {}
                        Some((Some(_), _, _)) => {
                            self.stats.packets += 1;
                            self.stats.skipped_link_type += 1;
                        }
                        Some((None, _, _)) => {
                            return Err(self.fail(
                                w,
                                emit,
                                "packet refers to an interface that was not described",
                            ));
                        }
                        None => {}
                    }
                }
                Err(PcapError::IncompleteBuffer) => {
                    if let Some(f) = w.unread().get(len_at..len_at + 4) {
                        let le = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
                        let be = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                        if le.min(be) as usize > MAX_RECORD {
                            return Err(self.fail(w, emit, "record length is implausibly large"));
                        }
                    }
                    if !w.fill(&mut self.reader).map_err(|e| self.io(e))? {
                        if w.unread().is_empty() {
                            break;
                        }
                        return Err(self.fail(w, emit, cut_reason));
                    }
                }
                Err(e) => return Err(self.fail(w, emit, &e.to_string())),
            }
            self.stats.file_bytes = w.offset();
            if w.offset() - last_progress >= READ_CHUNK as u64 {
                last_progress = w.offset();
                if let Some(p) = self.progress.as_mut() {
                    p(last_progress);
                }
            }
        }
        self.finish(emit);
        Ok(())
    }

    /// Delivers what was read before the damage, then describes the damage.
    fn fail(
        &mut self,
        w: &Window,
        emit: &mut dyn FnMut(Segment) -> bool,
        reason: &str,
    ) -> SourceError {
        let off = w.offset();
        self.finish(emit);
        self.corrupt(off, reason)
    }

    fn finish(&mut self, emit: &mut dyn FnMut(Segment) -> bool) {
        let mut go_on = true;
        self.reassembler.finish(u64::MAX, &mut |s| {
            if go_on {
                go_on = emit(s);
            }
        });
    }
}

impl Source for PcapSource {
    fn run(&mut self, emit: &mut dyn FnMut(Segment) -> bool) -> Result<(), SourceError> {
        let mut w = Window {
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
        };
        while w.unread().len() < 4 {
            if !w.fill(&mut self.reader).map_err(|e| self.io(e))? {
                return Err(self.corrupt(0, "file too short to be a capture"));
            }
        }
        let magic = [w.buf[0], w.buf[1], w.buf[2], w.buf[3]];
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => self.run_pcapng(&mut w, emit),
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => self.run_pcap(&mut w, emit),
            _ => Err(SourceError::Unsupported {
                path: self.name.clone(),
                reason: format!(
                    "not a pcap or pcapng file (magic {:02x}{:02x}{:02x}{:02x})",
                    magic[0], magic[1], magic[2], magic[3]
                ),
            }),
        }
    }

    fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        let r = self.reassembler.stats();
        let v = [
            ("pcap_packets", s.packets),
            ("pcap_file_bytes", s.file_bytes),
            ("pcap_skipped_not_ip", s.skipped_not_ip),
            ("pcap_skipped_not_tcp_udp", s.skipped_not_tcp_udp),
            ("pcap_skipped_ip_fragments", s.skipped_fragments),
            ("pcap_skipped_malformed", s.skipped_malformed),
            ("pcap_skipped_link_type", s.skipped_link_type),
            ("pcap_incomplete_frames", s.incomplete_frames),
            ("tcp_segments", r.tcp_segments),
            ("udp_datagrams", r.udp_datagrams),
            ("tcp_retransmissions", r.tcp_retransmissions),
            ("tcp_overlaps", r.tcp_overlaps),
            ("tcp_out_of_order", r.tcp_out_of_order),
            ("tcp_gaps", r.tcp_gaps),
            ("tcp_gap_bytes", r.tcp_gap_bytes),
            ("tcp_out_of_order_overflow", r.tcp_out_of_order_overflow),
            ("connections", r.connections),
            ("connections_evicted", r.connections_evicted),
            ("connections_closed", r.connections_closed),
        ];
        StatsSnapshot(v.iter().map(|(n, v)| (n.to_string(), *v)).collect())
    }
}
