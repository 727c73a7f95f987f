//! The bundled DNS capture (dig against dnsmasq on loopback, UDP and TCP, see
//! tests/captures/dns/record.sh), compared with what dig printed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s, DigAnswer};
use l7tap::L4;

#[test]
fn dig_against_dnsmasq() {
    let (records, stats) = replay(&capture("dns/dns.pcap"));
    let printed = std::fs::read_to_string(capture("dns/dns.dig.txt")).unwrap();
    let mut checked = 0;
    for block in printed.split("> ").filter(|b| !b.trim().is_empty()) {
        let (first, rest) = block.split_once('\n').unwrap();
        let q: Vec<&str> = first.split(' ').collect(); // proto name type
        let dig = DigAnswer::parse(rest);
        let id = dig.id;
        let at = format!("{q:?}");
        let r = records
            .iter()
            .find(|r| r.request_id == Some(id))
            .unwrap_or_else(|| panic!("{at}: {stats:?}"));
        assert_eq!(
            r.flow.l4,
            if q[0] == "tcp" { L4::Tcp } else { L4::Udp },
            "{at}"
        );
        assert_eq!(s(&r.request_resource), q[1], "{at}");
        assert_eq!(s(&r.request_type), q[2], "{at}");
        let (code, class) = dig.code();
        assert_eq!(r.response_code, Some(code), "{at}");
        assert_eq!(r.response_status, class, "{at}");
        assert_eq!(s(&r.response_result), dig.answers.join("; "), "{at}");
        assert!(!r.unpaired && r.rrt_ns > 0, "{at}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}
