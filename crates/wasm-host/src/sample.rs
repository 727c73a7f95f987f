//! Running one hook on a sample payload (`l7tap plugin check --sample`).

use crate::dispatch::{Origin, NO_COMM};
use crate::PluginHost;
use bytes::Bytes;
use l7tap_core::{Direction, FlowKey, L7Record, Protocol, ResponseStatus};

/// Which hook a sample goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleHook {
    /// `on_http_req`: the sample is a request message.
    HttpReq,
    /// `on_http_resp`: the sample is a response message.
    HttpResp,
    /// `check_payload` then `parse_payload`: the sample is a client->server payload.
    Payload,
}

/// Runs the hook on the sample (flow 127.0.0.1:40000 -> 127.0.0.1:8080) and describes what
/// the plugins did.
pub fn run(host: &PluginHost, hook: SampleHook, sample: Bytes) -> String {
    let flow = FlowKey::tcp(
        std::net::SocketAddr::from(([127, 0, 0, 1], 40000)),
        std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
    );
    match hook {
        SampleHook::HttpReq | SampleHook::HttpResp => {
            let mut rec = L7Record {
                flow,
                protocol: Protocol::Http1,
                ..Default::default()
            };
            if hook == SampleHook::HttpReq {
                rec.request_payload = sample;
            } else {
                let code = sample
                    .get(9..12)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(|c| c.parse().ok());
                rec.response_code = code;
                rec.response_status = match code {
                    Some(400..=499) => ResponseStatus::ClientError,
                    Some(500..=599) => ResponseStatus::ServerError,
                    Some(_) => ResponseStatus::Ok,
                    None => ResponseStatus::Unknown,
                };
                rec.response_payload = sample;
            }
            let changed = host.on_http_record(&mut rec);
            if changed {
                format!(
                    "result: changed by {:?}: code={:?} status={} result={:?} exception={:?} attributes={:?}",
                    rec.plugins,
                    rec.response_code,
                    rec.response_status.as_str(),
                    String::from_utf8_lossy(&rec.response_result),
                    String::from_utf8_lossy(&rec.response_exception),
                    rec.attributes.iter().map(|a| (String::from_utf8_lossy(&a.key).into_owned(), String::from_utf8_lossy(&a.value).into_owned())).collect::<Vec<_>>()
                )
            } else {
                "result: no plugin changed the record".to_string()
            }
        }
        SampleHook::Payload => {
            let o = Origin {
                flow: &flow,
                direction: Direction::ClientToServer,
                ts_ns: 0,
                comm: &NO_COMM,
                from_ebpf: false,
            };
            match host.check_payload(&o, &sample) {
                None => "check_payload: not claimed by any plugin".to_string(),
                Some((proto, name, role)) => {
                    let parsed = host.parse_payload(&o, proto, &sample);
                    format!(
                        "check_payload: protocol {proto} {:?} ({role:?}); parse_payload: {}",
                        String::from_utf8_lossy(&name),
                        match parsed {
                            None => "no plugin parsed it".to_string(),
                            Some(r) => format!("{} record(s): {r:?}", r.len()),
                        }
                    )
                }
            }
        }
    }
}
