//! grpc_business_id: the seed's second case. The order service carries a business id in
//! field 1235 of its request message and a message in field 1235 of its reply. For calls of
//! `/order.OrderService/Get`, this plugin decodes the request's field 1235 into the record's
//! `trace_id` and the attribute `business_id`, and the reply's field 1235 into the attribute
//! `msg`. The host hands gRPC hooks the stream's DATA (length-prefixed messages), whole.

use l7tap_sdk::{grpc_message, payload, protobuf_bytes_field, Action, Hooks, HttpReqCtx, HttpRespCtx, Plugin, Record, Trace};

/// The gRPC method whose messages carry the business fields.
const METHOD: &str = "/order.OrderService/Get";
/// The protobuf field number of `business_id` (request) and `msg` (reply).
const FIELD: u64 = 1235;

struct BusinessId;

/// Field 1235 of the first gRPC message in the hook's payload, as text.
fn field_1235(base: &l7tap_sdk::Base) -> Option<String> {
    let data = payload(base)?;
    let msg = grpc_message(&data)?;
    let value = protobuf_bytes_field(msg, FIELD)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

impl Plugin for BusinessId {
    fn hooks(&self) -> Hooks {
        Hooks(Hooks::HTTP_REQ.0 | Hooks::HTTP_RESP.0)
    }

    fn on_http_req(&mut self, ctx: &HttpReqCtx) -> Action {
        if ctx.path != METHOD {
            return Action::Next;
        }
        match field_1235(&ctx.base) {
            Some(id) => Action::Result(vec![Record {
                trace: Some(Trace {
                    trace_id: Some(id.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .attr("business_id", &id)]),
            None => Action::Next,
        }
    }

    fn on_http_resp(&mut self, ctx: &HttpRespCtx) -> Action {
        if ctx.endpoint != METHOD {
            return Action::Next;
        }
        match field_1235(&ctx.base) {
            Some(msg) => Action::Result(vec![Record::default().attr("msg", &msg)]),
            None => Action::Next,
        }
    }
}

l7tap_sdk::export_plugin!(BusinessId);
