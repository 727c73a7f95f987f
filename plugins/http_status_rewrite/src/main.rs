//! http_status_rewrite: the seed's first case. A service answers HTTP 2xx but says in its
//! JSON body that the operation failed (`{"OPT_STATUS": "FAILED", ...}`). This plugin reads
//! the response body and rewrites the record to code 500 / server error, keeps the body as
//! the result text and adds the attribute `op_stat` with the body's status.

use l7tap_sdk::{http_body, json_str_field, text, with_payload, Action, Hooks, HttpRespCtx, Plugin, Record, Response, Status};

struct StatusRewrite;

impl Plugin for StatusRewrite {
    fn hooks(&self) -> Hooks {
        Hooks::HTTP_RESP
    }

    fn on_http_resp(&mut self, ctx: &HttpRespCtx) -> Action {
        if !(200..300).contains(&ctx.status_code) {
            return Action::Next;
        }
        // The message is lent from the SDK's buffer: only the result text is copied out.
        with_payload(&ctx.base, |message| {
            let body = http_body(message);
            match json_str_field(&body[..], "OPT_STATUS") {
                Some(op) if op != "SUCCESS" => Action::Result(vec![Record::response(Response {
                    status: Status::ServerError,
                    code: Some(500),
                    result: Some(text(&body)),
                    exception: None,
                })
                .attr("op_stat", &op)]),
                _ => Action::Next,
            }
        })
        .unwrap_or(Action::Next)
    }
}

l7tap_sdk::export_plugin!(StatusRewrite);
