//! The DeepFlow plugin ABI's host -> guest layouts (wasm-abi.md sections 2 and 5).
//!
//! Everything that crosses the boundary is big-endian; strings are `str16` (u16 length, bytes).

use bytes::Bytes;
use std::net::{IpAddr, SocketAddr};

/// Hook bitmap bit (of the 128-bit big-endian word) enabling `on_http_req`.
pub const HOOK_HTTP_REQ: u128 = 1 << 127;
/// Hook bitmap bit enabling `on_http_resp`.
pub const HOOK_HTTP_RESP: u128 = 1 << 126;
/// Hook bitmap bit enabling `on_custom_message`.
pub const HOOK_CUSTOM_MESSAGE: u128 = 1 << 125;
/// Hook bitmap bit enabling `check_payload` and `parse_payload`.
pub const HOOK_PAYLOAD_PARSE: u128 = 1;

/// DeepFlow's L7 protocol numbers for the native protocols the hooks name.
pub mod l7_proto {
    /// HTTP/1.
    pub const HTTP1: u8 = 20;
    /// HTTP/2.
    pub const HTTP2: u8 = 21;
    /// gRPC.
    pub const GRPC: u8 = 41;
    /// A plugin-defined protocol.
    pub const CUSTOM: u8 = 127;
}

/// `ebpf_type` value for data that came from packet capture.
pub const EBPF_TYPE_NONE: u8 = 255;
/// `ebpf_type` value for syscall tracepoint data.
pub const EBPF_TYPE_TRACEPOINT: u8 = 0;

/// Response status codes as the ABI numbers them.
pub mod status {
    /// Ok.
    pub const OK: u8 = 0;
    /// Timeout.
    pub const TIMEOUT: u8 = 2;
    /// Server error.
    pub const SERVER_ERROR: u8 = 3;
    /// Client error.
    pub const CLIENT_ERROR: u8 = 4;
    /// Unknown.
    pub const UNKNOWN: u8 = 5;
}

/// The custom-message hook word (section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CustomHook {
    /// Deliver every custom message.
    pub hook_all: bool,
    /// 0 ProtocolParse, 1 SessionFilter, 2 Sampling.
    pub hook_point: u16,
    /// For ProtocolParse: the native protocol number.
    pub type_code: u32,
}

impl CustomHook {
    /// Decodes the u64 word.
    pub fn from_word(w: u64) -> Self {
        CustomHook {
            hook_all: (w >> 48) != 0,
            hook_point: (w >> 32) as u16,
            type_code: w as u32,
        }
    }

    /// Whether a message of this hook point and type code is delivered.
    pub fn wants(&self, hook_point: u16, type_code: u32) -> bool {
        self.hook_all || (self.hook_point == hook_point && self.type_code == type_code)
    }
}

/// The base context of a hook call (section 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseCtx {
    /// Source of the payload (client for requests).
    pub src: SocketAddr,
    /// Destination of the payload.
    pub dst: SocketAddr,
    /// 6 TCP, 17 UDP.
    pub l4_protocol: u8,
    /// Per hook: 0, the custom protocol number, or the native protocol number.
    pub l7_protocol: u8,
    /// Where the data came from (255 = packet capture).
    pub ebpf_type: u8,
    /// Timestamp in microseconds.
    pub time_us: u64,
    /// 0 client->server, 1 server->client.
    pub direction: u8,
    /// Process name (empty when unknown); at most 255 bytes are sent.
    pub proc_name: Bytes,
    /// Flow id.
    pub flow_id: u64,
    /// Payload size the guest should expect at most (never 0).
    pub buf_size: u16,
}

/// The 4 or 16 bytes of `ip` in the context's family.
fn ip_bytes(ip: IpAddr, v6: bool) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match (ip, v6) {
        (IpAddr::V4(a), false) => out[..4].copy_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => out = a.to_ipv6_mapped().octets(),
        (IpAddr::V6(a), true) => out = a.octets(),
        // A v6 address in a v4 context: the mapped form's last four bytes, else zeros.
        (IpAddr::V6(a), false) => {
            if let Some(v) = a.to_ipv4_mapped() {
                out[..4].copy_from_slice(&v.octets());
            }
        }
    }
    (out, if v6 { 16 } else { 4 })
}

/// Appends to a fixed buffer (the base context has a known maximum size).
struct Fixed<'a> {
    buf: &'a mut [u8; BaseCtx::MAX_ENCODED],
    n: usize,
}

impl Fixed<'_> {
    fn put(&mut self, b: &[u8]) {
        // Sizes are bounded by construction (MAX_ENCODED); `get_mut` keeps it panic-free.
        if let Some(dst) = self.buf.get_mut(self.n..self.n + b.len()) {
            dst.copy_from_slice(b);
            self.n += b.len();
        }
    }
}

impl BaseCtx {
    /// Largest encoding: IPv6 with a 255-byte process name.
    pub const MAX_ENCODED: usize = 60 + 255;

    /// The encoding: 36 + n bytes for IPv4, 60 + n for IPv6 (the family is the source's; the
    /// destination is written in the same family).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = [0u8; BaseCtx::MAX_ENCODED];
        self.encode_to(&mut buf).to_vec()
    }

    /// The encoding, written into `buf` without allocating (the hook-call path).
    pub fn encode_to<'a>(&self, buf: &'a mut [u8; BaseCtx::MAX_ENCODED]) -> &'a [u8] {
        let v6 = self.src.is_ipv6();
        let name = &self.proc_name[..self.proc_name.len().min(255)];
        let mut w = Fixed { buf, n: 0 };
        w.put(&[if v6 { 6 } else { 4 }]);
        let (src, n) = ip_bytes(self.src.ip(), v6);
        w.put(&src[..n]);
        let (dst, n) = ip_bytes(self.dst.ip(), v6);
        w.put(&dst[..n]);
        w.put(&self.src.port().to_be_bytes());
        w.put(&self.dst.port().to_be_bytes());
        w.put(&[self.l4_protocol, self.l7_protocol, self.ebpf_type]);
        w.put(&self.time_us.to_be_bytes());
        w.put(&[self.direction, name.len() as u8]);
        w.put(name);
        w.put(&self.flow_id.to_be_bytes());
        w.put(&self.buf_size.max(1).to_be_bytes());
        let n = w.n;
        &w.buf[..n]
    }
}

/// Appends a str16 (strings longer than 65535 bytes are cut).
pub fn put_str16(b: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
    b.extend_from_slice(s);
}

/// HTTP request info (section 5.3): path, host, user agent, referer.
pub fn encode_http_req(path: &[u8], host: &[u8], user_agent: &[u8], referer: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + path.len() + host.len() + user_agent.len() + referer.len());
    for s in [path, host, user_agent, referer] {
        put_str16(&mut b, s);
    }
    b
}

/// HTTP response info (section 5.4). The endpoint is added only when the guest's buffer has
/// room for it (old SDKs pass a 3-byte buffer and must get exactly 3 bytes).
pub fn encode_http_resp(
    status_code: u16,
    status: u8,
    endpoint: &[u8],
    guest_buf_len: usize,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + endpoint.len());
    b.extend_from_slice(&status_code.to_be_bytes());
    b.push(status);
    if guest_buf_len >= 5 + endpoint.len().min(u16::MAX as usize) {
        put_str16(&mut b, endpoint);
    }
    b
}

/// Custom message info (section 5.5).
pub fn encode_custom_message(hook_point: u16, type_code: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(10 + body.len());
    b.extend_from_slice(&hook_point.to_be_bytes());
    b.extend_from_slice(&type_code.to_be_bytes());
    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
    b.extend_from_slice(body);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(src: &str, dst: &str, name: &[u8]) -> BaseCtx {
        BaseCtx {
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            l4_protocol: 6,
            l7_protocol: 20,
            ebpf_type: EBPF_TYPE_NONE,
            time_us: 0x0102_0304_0506_0708,
            direction: 1,
            proc_name: Bytes::copy_from_slice(name),
            flow_id: 0x1122_3344_5566_7788,
            buf_size: 1024,
        }
    }

    #[test]
    fn base_ipv4_offsets_match_the_spec() {
        let b = ctx("10.0.0.1:8080", "10.0.0.2:443", b"nginx").encode();
        assert_eq!(b.len(), 36 + 5);
        assert_eq!(b[0], 4);
        assert_eq!(&b[1..5], &[10, 0, 0, 1]);
        assert_eq!(&b[5..9], &[10, 0, 0, 2]);
        assert_eq!(&b[9..11], &8080u16.to_be_bytes()); // ports at 9/11
        assert_eq!(&b[11..13], &443u16.to_be_bytes());
        assert_eq!(b[13], 6); // l4 at 13
        assert_eq!(b[14], 20); // l7 at 14
        assert_eq!(b[15], 255); // ebpf at 15
        assert_eq!(&b[16..24], &0x0102_0304_0506_0708u64.to_be_bytes()); // time 16..24
        assert_eq!(b[24], 1); // direction at 24
        assert_eq!(b[25], 5); // name length at 25
        assert_eq!(&b[26..31], b"nginx");
        assert_eq!(&b[31..39], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&b[39..41], &1024u16.to_be_bytes());
    }

    #[test]
    fn base_ipv6_is_60_plus_name() {
        let b = ctx("[fd00::1]:1", "[fd00::2]:2", b"").encode();
        assert_eq!(b.len(), 60);
        assert_eq!(b[0], 6);
        assert_eq!(b[1], 0xfd);
        assert_eq!(b[16], 1);
        assert_eq!(b[32], 2);
    }

    #[test]
    fn http_layouts() {
        let r = encode_http_req(b"/a", b"h", b"", b"r");
        assert_eq!(r, vec![0, 2, b'/', b'a', 0, 1, b'h', 0, 0, 0, 1, b'r']);
        assert_eq!(
            encode_http_resp(500, status::SERVER_ERROR, b"/ep", 3),
            vec![1, 244, 3]
        );
        assert_eq!(
            encode_http_resp(200, status::OK, b"/ep", 64),
            vec![0, 200, 0, 0, 3, b'/', b'e', b'p']
        );
        assert_eq!(
            encode_custom_message(0, 106, b"xy"),
            vec![0, 0, 0, 0, 0, 106, 0, 0, 0, 2, b'x', b'y']
        );
    }

    #[test]
    fn custom_hook_word() {
        let h = CustomHook::from_word(0xff << 48);
        assert!(h.hook_all && h.wants(1, 2));
        let h = CustomHook::from_word((1u64 << 32) | 106);
        assert!(!h.hook_all && h.wants(1, 106) && !h.wants(0, 106));
    }
}
