//! Every supported link layer and both file formats, IPv4 and IPv6, VLAN tags: frames are
//! built with etherparse's PacketBuilder around a known HTTP exchange, written with pcap-file's
//! writers, and replayed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::s;
use etherparse::{PacketBuilder, VlanId};
use l7tap::pcap::PcapSource;
use l7tap::Engine;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::time::Duration;

const REQ: &[u8] = b"GET /v6/ok HTTP/1.1\r\nHost: link.test\r\n\r\n";
const RESP: &[u8] = b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n";

/// The exchange as IP packets: handshake, request, response, FINs.
fn ip_packets(v6: bool) -> Vec<Vec<u8>> {
    let (c, sv) = (40000u16, 8080u16);
    let b = |from_client: bool| {
        if v6 {
            let (a, z) = (
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            );
            if from_client {
                PacketBuilder::ipv6(a, z, 64)
            } else {
                PacketBuilder::ipv6(z, a, 64)
            }
        } else {
            let (a, z) = ([192, 0, 2, 1], [192, 0, 2, 2]);
            if from_client {
                PacketBuilder::ipv4(a, z, 64)
            } else {
                PacketBuilder::ipv4(z, a, 64)
            }
        }
    };
    let mut out = Vec::new();
    let mut push = |from_client: bool, seq: u32, flags: &str, ack: u32, payload: &[u8]| {
        let (sp, dp) = if from_client { (c, sv) } else { (sv, c) };
        let mut t = b(from_client).tcp(sp, dp, seq, 65535);
        if flags.contains('S') {
            t = t.syn();
        }
        if flags.contains('A') {
            t = t.ack(ack);
        }
        if flags.contains('F') {
            t = t.fin();
        }
        let mut v = Vec::new();
        t.write(&mut v, payload).unwrap();
        out.push(v);
    };
    push(true, 100, "S", 0, b"");
    push(false, 900, "SA", 101, b"");
    push(true, 101, "A", 901, REQ);
    push(false, 901, "A", 101 + REQ.len() as u32, RESP);
    push(
        true,
        101 + REQ.len() as u32,
        "FA",
        901 + RESP.len() as u32,
        b"",
    );
    push(
        false,
        901 + RESP.len() as u32,
        "FA",
        102 + REQ.len() as u32,
        b"",
    );
    out
}

/// Wraps an IP packet in the link layer.
fn frame(link: DataLink, ip: &[u8], v6: bool) -> Vec<u8> {
    let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut f = Vec::new();
    match link {
        DataLink::ETHERNET => {
            // Ethernet II + 802.1Q tag 42, rebuilt with etherparse from the IP packet.
            let (ip_hdr, rest) = etherparse::IpHeaders::from_slice(ip).unwrap();
            let tcp = etherparse::TcpHeader::from_slice(rest.payload).unwrap();
            let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .single_vlan(VlanId::try_new(42).unwrap())
                .ip(ip_hdr)
                .tcp_header(tcp.0);
            b.write(&mut f, tcp.1).unwrap();
        }
        DataLink::LINUX_SLL => {
            f.extend_from_slice(&[0, 0, 0x03, 0x04, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(ip);
        }
        DataLink::LINUX_SLL2 => {
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            f.extend_from_slice(ip);
        }
        DataLink::NULL => {
            let family: u32 = if v6 { 30 } else { 2 };
            f.extend_from_slice(&family.to_ne_bytes());
            f.extend_from_slice(ip);
        }
        _ => f.extend_from_slice(ip),
    }
    f
}

fn pcap_file(link: DataLink, v6: bool) -> Vec<u8> {
    let mut w = PcapWriter::with_header(
        Vec::new(),
        PcapHeader {
            datalink: link,
            ..Default::default()
        },
    )
    .unwrap();
    for (i, ip) in ip_packets(v6).iter().enumerate() {
        let data = frame(link, ip, v6);
        let ts = Duration::from_micros(1_000_000 + i as u64 * 250);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, &data))
            .unwrap();
    }
    w.into_writer()
}

fn pcapng_file(link: DataLink, v6: bool) -> Vec<u8> {
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: link,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    for (i, ip) in ip_packets(v6).iter().enumerate() {
        let data = frame(link, ip, v6);
        let block = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(1_000_000 + i as u64 * 250),
            original_len: data.len() as u32,
            data: Cow::Owned(data),
            options: vec![],
        };
        w.write_pcapng_block(block).unwrap();
    }
    w.into_inner()
}

fn replay(bytes: Vec<u8>) -> Vec<l7tap::L7Record> {
    let mut e = Engine::builder().workers(1).build().unwrap();
    let rx = e.records().unwrap();
    e.run(&mut PcapSource::from_reader(
        "built",
        std::io::Cursor::new(bytes),
    ))
    .unwrap();
    drop(e.finish());
    rx.iter().collect()
}

#[test]
fn every_link_layer_in_both_formats_and_both_ip_versions() {
    for link in [
        DataLink::ETHERNET,
        DataLink::LINUX_SLL,
        DataLink::LINUX_SLL2,
        DataLink::RAW,
        DataLink::NULL,
    ] {
        for v6 in [false, true] {
            for (fmt, file) in [
                ("pcap", pcap_file(link, v6)),
                ("pcapng", pcapng_file(link, v6)),
            ] {
                let at = format!("{link:?} {fmt} ipv6={v6}");
                let recs = replay(file);
                assert_eq!(recs.len(), 1, "{at}");
                let r = &recs[0];
                assert_eq!(s(&r.request_type), "GET", "{at}");
                assert_eq!(s(&r.request_resource), "/v6/ok", "{at}");
                assert_eq!(s(&r.request_domain), "link.test", "{at}");
                assert_eq!(r.response_code, Some(204), "{at}");
                assert_eq!(r.flow.client.port(), 40000, "{at}");
                assert_eq!(r.flow.server.port(), 8080, "{at}");
                assert_eq!(r.flow.server.is_ipv6(), v6, "{at}");
                assert_eq!(
                    r.rrt_ns, 250_000,
                    "{at}: request at +500 µs, response at +750 µs"
                );
                assert!(!r.unpaired, "{at}");
            }
        }
    }
}

#[test]
fn unsupported_link_type_is_a_clear_error() {
    let w = PcapWriter::with_header(
        Vec::new(),
        PcapHeader {
            datalink: DataLink::USB_LINUX,
            ..Default::default()
        },
    )
    .unwrap();
    let mut e = Engine::builder().workers(1).build().unwrap();
    let err = e
        .run(&mut PcapSource::from_reader(
            "usb.pcap",
            std::io::Cursor::new(w.into_writer()),
        ))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("link type USB_LINUX is not supported"),
        "{err}"
    );
}
