//! Plugin-defined protocols as a core [`Parser`]: `check_payload` claims a flow,
//! `parse_payload` turns each payload into records (section 4.1, 4.2 and 8.1).

use crate::abi;
use crate::dispatch::{Origin, NO_COMM};
use crate::result::PluginRecord;
use crate::PluginHost;
use bytes::Bytes;
use l7tap_core::{
    Direction, FlowKey, Inference, Message, MessageRole, PairingMode, ParseCtx, ParseError, Parsed,
    Parser, Protocol, ResponseStatus, L4,
};
use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

/// The parser that hands payloads of flows no built-in parser recognised to the plugins.
#[derive(Debug, Clone)]
pub struct WasmParser {
    host: PluginHost,
}

impl WasmParser {
    /// A parser asking the plugins of `host`.
    pub fn new(host: PluginHost) -> Self {
        WasmParser { host }
    }
}

/// What a flow learned from `check_payload`.
#[derive(Debug, Default)]
struct FlowProto {
    number: u8,
    name: Option<Arc<str>>,
}

fn err(reason: &'static str) -> ParseError {
    ParseError {
        protocol: "wasm",
        reason,
    }
}

fn origin(flow: &FlowKey, direction: Direction, ts_ns: u64) -> Origin<'_> {
    Origin {
        flow,
        direction,
        ts_ns,
        comm: &NO_COMM,
        from_ebpf: false,
    }
}

fn text(v: &Option<Bytes>) -> Cow<'static, [u8]> {
    Cow::Owned(v.as_ref().map(|b| b.to_vec()).unwrap_or_default())
}

/// Section 8.1: one plugin record as a message of the flow.
fn to_message(r: PluginRecord, direction: Direction, len: usize, body: &[u8]) -> Message<'static> {
    let mut m = Message {
        len,
        role: Some(if direction == Direction::ClientToServer {
            MessageRole::Request
        } else {
            MessageRole::Response
        }),
        request_id: r.request_id.map(u64::from),
        one_way: r.is_async == Some(true),
        body: Cow::Owned(body.to_vec()),
        ..Default::default()
    };
    if let Some(q) = &r.req {
        m.version = text(&q.version);
        m.request_type = text(&q.req_type);
        m.request_domain = text(&q.domain);
        m.request_resource = text(&q.resource);
        m.endpoint = text(&q.endpoint);
        m.body_len = r.req_len.map(u64::from);
    }
    if let Some(s) = &r.resp {
        m.status = match s.status {
            abi::status::OK => ResponseStatus::Ok,
            abi::status::TIMEOUT => ResponseStatus::Timeout,
            abi::status::SERVER_ERROR => ResponseStatus::ServerError,
            abi::status::CLIENT_ERROR => ResponseStatus::ClientError,
            _ => ResponseStatus::Unknown,
        };
        m.code = s.code;
        m.exception = text(&s.exception);
        m.result = text(&s.result);
        if m.request_type.is_empty() {
            m.request_type = text(&s.resp_type);
        }
        if m.endpoint.is_empty() {
            m.endpoint = text(&s.endpoint);
        }
        m.body_len = r.resp_len.map(u64::from);
    }
    if let Some(t) = &r.trace {
        m.trace_id = Cow::Owned(t.trace_ids.first().map_or_else(Vec::new, |b| b.to_vec()));
        m.span_id = text(&t.span_id);
        m.x_request_id = text(&t.x_request_id);
    }
    m
}

impl Parser for WasmParser {
    fn protocol(&self) -> Protocol {
        Protocol::Custom(Arc::from("wasm"))
    }

    fn protocol_of(&self, state: &(dyn Any + Send)) -> Protocol {
        match state
            .downcast_ref::<FlowProto>()
            .and_then(|p| p.name.clone())
        {
            Some(name) if !name.is_empty() => Protocol::Custom(name),
            _ => self.protocol(),
        }
    }

    fn supports(&self, _l4: L4) -> bool {
        true
    }

    fn check(&self, _payload: &[u8], _direction: Direction) -> Option<Inference> {
        None // needs the flow: see check_flow
    }

    fn check_flow(
        &self,
        payload: &[u8],
        direction: Direction,
        flow: &FlowKey,
    ) -> Option<Inference> {
        let (_, _, role) = self.host.check_payload(
            &origin(flow, direction, 0),
            &Bytes::copy_from_slice(payload),
        )?;
        // Below every built-in parser: plugins claim what nothing else recognised.
        Some(Inference {
            confidence: 50,
            role,
        })
    }

    fn pairing(&self) -> PairingMode {
        PairingMode::IdOrOrder
    }

    fn new_state(&self) -> Box<dyn Any + Send> {
        Box::new(FlowProto::default())
    }

    fn parse<'a>(&self, input: &'a [u8], ctx: &mut ParseCtx<'_>) -> Result<Parsed<'a>, ParseError> {
        let Some(state) = ctx.state.downcast_mut::<FlowProto>() else {
            return Err(err("flow state is not a plugin protocol's"));
        };
        // Plugins see each payload whole, as DeepFlow hands them syscall payloads.
        let payload = Bytes::copy_from_slice(input);
        let o = origin(&ctx.flow, ctx.direction, ctx.ts_ns);
        if state.number == 0 {
            // The flow's protocol number and name come from check_payload.
            let (n, name, _) = self
                .host
                .check_payload(&o, &payload)
                .ok_or_else(|| err("no plugin claims the flow"))?;
            state.number = n;
            state.name = Some(Arc::from(String::from_utf8_lossy(&name).as_ref()));
        }
        let records = self
            .host
            .parse_payload(&o, state.number, &payload)
            .ok_or_else(|| err("no plugin parsed the payload"))?;
        if records.is_empty() {
            return Ok(Parsed::Skip(input.len()));
        }
        let msgs = records
            .into_iter()
            .map(|r| to_message(r, ctx.direction, input.len(), input))
            .collect();
        Ok(Parsed::Messages(input.len(), msgs))
    }
}
