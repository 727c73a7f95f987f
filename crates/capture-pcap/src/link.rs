//! Link layers and IP/TCP/UDP headers, decoded with etherparse.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use pcap_file::DataLink;
use std::net::{IpAddr, SocketAddr};

/// The transport part of a packet that l7tap cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP segment.
    Tcp {
        /// Sequence number of the first payload byte (or of the SYN/FIN).
        seq: u32,
        /// SYN flag.
        syn: bool,
        /// ACK flag.
        ack: bool,
        /// FIN flag.
        fin: bool,
        /// RST flag.
        rst: bool,
    },
    /// A UDP datagram.
    Udp,
}

/// A decoded packet: addresses, transport and the L4 payload (borrowed).
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// TCP or UDP details.
    pub transport: Transport,
    /// The L4 payload as captured.
    pub payload: &'a [u8],
    /// The capture cut the packet short (snaplen, damaged length fields).
    pub incomplete: bool,
}

/// Why a frame carries nothing l7tap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Not IPv4/IPv6 (ARP, LLDP, ...).
    NotIp,
    /// IP but neither TCP nor UDP (ICMP, ...).
    NotTcpUdp,
    /// An IP fragment (not reassembled).
    Fragment,
    /// Headers are damaged or cut.
    Malformed,
    /// The link type is not supported.
    UnsupportedLink,
}

/// Whether `link` is a link type this crate decodes.
pub fn supported(link: DataLink) -> bool {
    matches!(
        link,
        DataLink::ETHERNET
            | DataLink::LINUX_SLL
            | DataLink::LINUX_SLL2
            | DataLink::RAW
            | DataLink::IPV4
            | DataLink::IPV6
            | DataLink::NULL
            | DataLink::LOOP
    )
}

/// Decodes one frame of link type `link`.
pub fn decode(link: DataLink, frame: &[u8]) -> Result<Packet<'_>, Skipped> {
    let sliced = match link {
        DataLink::ETHERNET => {
            LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skipped::Malformed)?
        }
        // Linux cooked v1: 16-byte header, protocol (EtherType) in its last two bytes.
        DataLink::LINUX_SLL => {
            let proto = frame.get(14..16).ok_or(Skipped::Malformed)?;
            let body = frame.get(16..).ok_or(Skipped::Malformed)?;
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                body,
            )
        }
        // Linux cooked v2: 20-byte header, protocol (EtherType) in its first two bytes.
        DataLink::LINUX_SLL2 => {
            let proto = frame.get(0..2).ok_or(Skipped::Malformed)?;
            let body = frame.get(20..).ok_or(Skipped::Malformed)?;
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                body,
            )
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            LaxSlicedPacket::from_ip(frame).map_err(|_| Skipped::Malformed)?
        }
        // BSD loopback: a 4-byte address family, then the IP packet (its version says which).
        DataLink::NULL | DataLink::LOOP => {
            LaxSlicedPacket::from_ip(frame.get(4..).ok_or(Skipped::Malformed)?)
                .map_err(|_| Skipped::Malformed)?
        }
        _ => return Err(Skipped::UnsupportedLink),
    };
    let (src_ip, dst_ip, fragmented, incomplete): (IpAddr, IpAddr, bool, bool) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v4.is_payload_fragmented(),
                v4.payload().incomplete,
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v6.is_payload_fragmented(),
                v6.payload().incomplete,
            )
        }
        Some(LaxNetSlice::Arp(_)) | None => {
            return Err(
                if sliced.stop_err.is_some() && sliced.net.is_none() && sliced.link.is_some() {
                    Skipped::NotIp
                } else if sliced.stop_err.is_some() {
                    Skipped::Malformed
                } else {
                    Skipped::NotIp
                },
            )
        }
    };
    if fragmented {
        return Err(Skipped::Fragment);
    }
    match sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => Ok(Packet {
            src: SocketAddr::new(src_ip, tcp.source_port()),
            dst: SocketAddr::new(dst_ip, tcp.destination_port()),
            transport: Transport::Tcp {
                seq: tcp.sequence_number(),
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            },
            payload: tcp.payload(),
            incomplete,
        }),
        Some(TransportSlice::Udp(udp)) => Ok(Packet {
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            transport: Transport::Udp,
            payload: udp.payload(),
            incomplete,
        }),
        Some(_) => Err(Skipped::NotTcpUdp),
        None => Err(if sliced.stop_err.is_some() {
            Skipped::Malformed
        } else {
            Skipped::NotTcpUdp
        }),
    }
}
