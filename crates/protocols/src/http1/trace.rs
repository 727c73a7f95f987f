//! Trace context propagation headers: W3C `traceparent`, Jaeger `uber-trace-id`, SkyWalking `sw8`.

use base64::Engine as _;
use std::borrow::Cow;

/// Which format a trace header is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceHeaderFormat {
    /// W3C Trace Context: `00-<trace-id 32 hex>-<parent-id 16 hex>-<flags>`.
    TraceParent,
    /// Jaeger: `<trace-id>:<span-id>:<parent-span-id>:<flags>`.
    Uber,
    /// SkyWalking v8: `1-<base64 trace-id>-<base64 segment-id>-<span-id>-...`; the span id is
    /// reported as `<segment-id>-<span-id>`, as DeepFlow does.
    Sw8,
}

/// A trace id and a span id, borrowed from the header when no decoding was needed.
pub type TraceIds<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// Extracts `(trace_id, span_id)` from a header value; `None` when malformed.
pub fn decode(format: TraceHeaderFormat, value: &[u8]) -> Option<TraceIds<'_>> {
    match format {
        TraceHeaderFormat::TraceParent => {
            let mut it = value.split(|&b| b == b'-');
            let _version = it.next()?;
            let trace = it.next()?;
            let span = it.next()?;
            let hex = |s: &[u8]| s.iter().all(|&b| crate::helpers::hex_val(b).is_some());
            if trace.len() != 32 || span.len() != 16 || !hex(trace) || !hex(span) {
                return None;
            }
            Some((Cow::Borrowed(trace), Cow::Borrowed(span)))
        }
        TraceHeaderFormat::Uber => {
            let mut it = value.split(|&b| b == b':');
            let trace = it.next().filter(|t| !t.is_empty())?;
            let span = it.next().filter(|s| !s.is_empty())?;
            Some((Cow::Borrowed(trace), Cow::Borrowed(span)))
        }
        TraceHeaderFormat::Sw8 => {
            let mut it = value.split(|&b| b == b'-');
            let _sample = it.next()?;
            let trace = b64(it.next()?)?;
            let segment = b64(it.next()?)?;
            let span = it.next()?;
            let mut span_id = segment;
            span_id.push(b'-');
            span_id.extend_from_slice(span);
            Some((Cow::Owned(trace), Cow::Owned(span_id)))
        }
    }
}

fn b64(s: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_spec_example() {
        // The example from the W3C Trace Context recommendation, section 3.2.
        let (t, s) = decode(
            TraceHeaderFormat::TraceParent,
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .expect("valid");
        assert_eq!(&*t, b"0af7651916cd43dd8448eb211c80319c");
        assert_eq!(&*s, b"b7ad6b7169203331");
        assert!(decode(
            TraceHeaderFormat::TraceParent,
            b"00-xyz-b7ad6b7169203331-01"
        )
        .is_none());
    }

    #[test]
    fn jaeger_example() {
        let (t, s) = decode(
            TraceHeaderFormat::Uber,
            b"5f8d9a1c2b3e4f60:a1b2c3d4e5f60718:0:1",
        )
        .expect("valid");
        assert_eq!(&*t, b"5f8d9a1c2b3e4f60");
        assert_eq!(&*s, b"a1b2c3d4e5f60718");
    }

    #[test]
    fn skywalking_example() {
        // From the SkyWalking cross-process propagation protocol v3 documentation.
        let v = b"1-MWYyZDRiZjQ3YmY3MTFlYWI3OTRhY2RlNDgwMDExMjI=-MWU3YzIwNGE3YmY3MTFlYWI4NThhY2RlNDgwMDExMjI=-0-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA=";
        let (t, s) = decode(TraceHeaderFormat::Sw8, v).expect("valid");
        assert_eq!(&*t, b"1f2d4bf47bf711eab794acde48001122");
        assert_eq!(&*s, b"1e7c204a7bf711eab858acde48001122-0");
    }
}
