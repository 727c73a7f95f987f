//! Reassembly of out-of-order, duplicated, overlapping and missing segments.

use super::*;
use crate::link::{Packet, Transport};

const C: &str = "10.0.0.1:40000";
const S: &str = "10.0.0.2:80";

fn tcp<'a>(from_client: bool, seq: u32, flags: &str, payload: &'a [u8]) -> Packet<'a> {
    let (src, dst) = if from_client { (C, S) } else { (S, C) };
    Packet {
        src: src.parse().expect("addr"),
        dst: dst.parse().expect("addr"),
        transport: Transport::Tcp {
            seq,
            syn: flags.contains('S'),
            ack: flags.contains('A'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
        },
        payload,
        incomplete: false,
    }
}

/// Feeds packets, returns (concatenated client->server bytes, segments, close seen).
fn run(r: &mut Reassembler, pkts: &[Packet<'_>]) -> (Vec<u8>, Vec<Segment>) {
    let mut segs = Vec::new();
    for (i, p) in pkts.iter().enumerate() {
        r.push(p, i as u64, &mut |s| segs.push(s));
    }
    r.finish(u64::MAX, &mut |s| segs.push(s));
    let bytes = segs
        .iter()
        .filter(|s| s.direction == Direction::ClientToServer)
        .flat_map(|s| s.payload.to_vec())
        .collect();
    (bytes, segs)
}

#[test]
fn in_order_with_handshake_orients_by_syn() {
    let mut r = Reassembler::default();
    // The SYN comes from the high port: the client is whoever sends the SYN.
    let (bytes, segs) = run(
        &mut r,
        &[
            tcp(true, 100, "S", b""),
            tcp(false, 500, "SA", b""),
            tcp(true, 101, "A", b"hello "),
            tcp(true, 107, "A", b"world"),
        ],
    );
    assert_eq!(bytes, b"hello world");
    assert_eq!(segs[0].flow.client, C.parse().expect("addr"));
    assert_eq!(segs[0].offset, 0);
    assert_eq!(segs[1].offset, 6);
    assert!(segs.iter().all(|s| s.gap_before == 0));
}

#[test]
fn out_of_order_is_reordered() {
    let mut r = Reassembler::default();
    let (bytes, segs) = run(
        &mut r,
        &[
            tcp(true, 1000, "A", b"aaaa"),
            tcp(true, 1008, "A", b"cccc"),
            tcp(true, 1012, "A", b"dd"),
            tcp(true, 1004, "A", b"bbbb"),
        ],
    );
    assert_eq!(bytes, b"aaaabbbbccccdd");
    let offsets: Vec<u64> = segs.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, vec![0, 4, 8, 12]);
    assert_eq!(r.stats().tcp_out_of_order, 2);
    assert_eq!(r.stats().tcp_gaps, 0);
}

#[test]
fn duplicates_and_overlaps_are_trimmed() {
    let mut r = Reassembler::default();
    let (bytes, _) = run(
        &mut r,
        &[
            tcp(true, 1, "A", b"abcd"),
            tcp(true, 1, "A", b"abcd"),   // full retransmission
            tcp(true, 3, "A", b"cdefgh"), // overlaps 2 bytes
            tcp(true, 9, "A", b"ij"),
            tcp(true, 8, "A", b"hij"), // overlaps everything delivered
        ],
    );
    assert_eq!(bytes, b"abcdefghij");
    assert_eq!(r.stats().tcp_retransmissions, 2);
    assert_eq!(r.stats().tcp_overlaps, 1);
}

#[test]
fn overlapping_out_of_order_segments() {
    let mut r = Reassembler::default();
    let (bytes, _) = run(
        &mut r,
        &[
            tcp(true, 0, "A", b"01"),
            tcp(true, 6, "A", b"6789"),
            tcp(true, 4, "A", b"4567"),
            tcp(true, 2, "A", b"23"),
        ],
    );
    assert_eq!(bytes, b"0123456789");
}

#[test]
fn missing_segment_becomes_a_gap_at_fin() {
    let mut r = Reassembler::default();
    let (bytes, segs) = run(
        &mut r,
        &[
            tcp(true, 0, "A", b"head"),
            tcp(true, 10, "A", b"tail"),
            tcp(true, 14, "FA", b""),
        ],
    );
    assert_eq!(bytes, b"headtail");
    let tail = segs
        .iter()
        .find(|s| s.payload.as_ref() == b"tail")
        .expect("tail delivered");
    assert_eq!(tail.gap_before, 6);
    assert_eq!(tail.offset, 10);
    assert_eq!(r.stats().tcp_gaps, 1);
    assert_eq!(r.stats().tcp_gap_bytes, 6);
}

#[test]
fn missing_segment_given_up_when_the_store_is_full() {
    let mut r = Reassembler::new(ReassemblyConfig {
        max_out_of_order_bytes: 8,
        ..Default::default()
    });
    let (bytes, segs) = run(
        &mut r,
        &[
            tcp(true, 0, "A", b"aa"),
            tcp(true, 4, "A", b"cccc"),
            tcp(true, 8, "A", b"dddd"),
            tcp(true, 12, "A", b"ee"),
        ],
    );
    assert_eq!(bytes, b"aaccccddddee");
    assert_eq!(r.stats().tcp_out_of_order_overflow, 1);
    assert_eq!(segs.iter().map(|s| s.gap_before).sum::<u64>(), 2);
}

#[test]
fn sequence_numbers_wrap() {
    let mut r = Reassembler::default();
    let start = u32::MAX - 2;
    let (bytes, segs) = run(
        &mut r,
        &[
            tcp(true, start, "A", b"xyz"),
            tcp(true, start.wrapping_add(3), "A", b"123"),
        ],
    );
    assert_eq!(bytes, b"xyz123");
    assert_eq!(segs[1].offset, 3);
}

#[test]
fn fin_from_both_sides_closes_and_rst_closes() {
    let mut r = Reassembler::default();
    let (_, segs) = run(
        &mut r,
        &[
            tcp(true, 0, "A", b"q"),
            tcp(false, 0, "A", b"r"),
            tcp(true, 1, "FA", b""),
            tcp(false, 1, "FA", b""),
        ],
    );
    assert!(segs.last().is_some_and(|s| s.end_of_flow));
    assert_eq!(r.connections(), 0);
    let mut r = Reassembler::default();
    let (_, segs) = run(&mut r, &[tcp(true, 0, "A", b"q"), tcp(false, 0, "R", b"")]);
    assert!(segs.last().is_some_and(|s| s.end_of_flow));
    assert_eq!(r.stats().connections_closed, 1);
}

#[test]
fn connection_table_is_bounded() {
    let mut r = Reassembler::new(ReassemblyConfig {
        max_connections: 4,
        ..Default::default()
    });
    let mut segs = 0;
    for i in 0..10u16 {
        let src: SocketAddr = format!("10.0.0.1:{}", 40000 + i).parse().expect("addr");
        let p = Packet {
            src,
            ..tcp(true, 0, "A", b"x")
        };
        r.push(&p, u64::from(i), &mut |_| segs += 1);
    }
    assert_eq!(segs, 10, "every payload delivered");
    assert_eq!(r.connections(), 4);
    assert_eq!(r.stats().connections_evicted, 6);
}

#[test]
fn without_syn_the_privileged_port_is_the_server() {
    let mut r = Reassembler::default();
    // First packet goes server -> client.
    let (_, segs) = run(&mut r, &[tcp(false, 0, "A", b"HTTP/1.1 200 OK\r\n\r\n")]);
    assert_eq!(segs[0].flow.server, S.parse().expect("addr"));
    assert_eq!(segs[0].direction, Direction::ServerToClient);
}
