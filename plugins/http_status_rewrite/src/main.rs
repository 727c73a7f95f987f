//! http_status_rewrite: the seed's first case. A service answers HTTP 2xx but says in its
//! JSON body that the operation failed (`{"OPT_STATUS": "FAILED", ...}`). This plugin reads
//! the response body and rewrites the record to code 500 / server error, keeps the body as
//! the result text and adds the attribute `op_stat` with the body's status.

use l7tap_sdk::{http_body, json_str_field, payload, Action, Hooks, HttpRespCtx, Plugin, Record, Response, Status};

struct StatusRewrite;

impl Plugin for StatusRewrite {
    fn hooks(&self) -> Hooks {
        Hooks::HTTP_RESP
    }

    fn on_http_resp(&mut self, ctx: &HttpRespCtx) -> Action {
        if !(200..300).contains(&ctx.status_code) {
            return Action::Next;
        }
        let message = match payload(&ctx.base) {
            Some(p) => p,
            None => return Action::Next,
        };
        let raw = http_body(&message);
        let body = String::from_utf8_lossy(&raw);
        match json_str_field(&body, "OPT_STATUS") {
            Some(op) if op != "SUCCESS" => Action::Result(vec![Record::response(Response {
                status: Status::ServerError,
                code: Some(500),
                result: Some(body.to_string()),
                exception: None,
            })
            .attr("op_stat", &op)]),
            _ => Action::Next,
        }
    }
}

l7tap_sdk::export_plugin!(StatusRewrite);
