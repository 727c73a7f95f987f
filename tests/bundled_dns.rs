//! The bundled DNS capture (dig against dnsmasq on loopback, UDP and TCP, see
//! tests/captures/dns/record.sh), compared with what dig printed.
#![allow(clippy::panic, clippy::unwrap_used)] // tests fail loudly

mod common;

use common::{capture, replay, s};
use l7tap::{ResponseStatus, L4};

#[test]
fn dig_against_dnsmasq() {
    let (records, stats) = replay(&capture("dns/dns.pcap"));
    let printed = std::fs::read_to_string(capture("dns/dns.dig.txt")).unwrap();
    let mut checked = 0;
    for block in printed.split("> ").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let q: Vec<&str> = lines.next().unwrap().split(' ').collect(); // proto name type
        let header = lines.next().unwrap(); // ";; ->>HEADER<<- opcode: QUERY, status: X, id: N"
        let status = header
            .split("status: ")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let id: u64 = header.split("id: ").nth(1).unwrap().trim().parse().unwrap();
        // Answer lines: "name. TTL IN TYPE value"; rendered as DeepFlow does.
        let answers: Vec<String> = lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f[3] {
                    "A" | "AAAA" | "CNAME" | "NS" | "PTR" => {
                        format!("{}={} TTL={}", f[3], f[4].trim_end_matches('.'), f[1])
                    }
                    other => other.to_string(),
                }
            })
            .collect();
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
        let (code, class) = match status {
            "NOERROR" => (0, ResponseStatus::Ok),
            "NXDOMAIN" => (3, ResponseStatus::ClientError),
            other => panic!("{other}"),
        };
        assert_eq!(r.response_code, Some(code), "{at}");
        assert_eq!(r.response_status, class, "{at}");
        assert_eq!(s(&r.response_result), answers.join("; "), "{at}");
        assert!(!r.unpaired && r.rrt_ns > 0, "{at}");
        checked += 1;
    }
    assert_eq!(checked, 6);
}
