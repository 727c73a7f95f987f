//! The per-worker flow table and the processor that turns segments into records.

use crate::counters::bump;
use crate::stream::FrameCtx;
use crate::{
    Config, Counters, Direction, DropReason, FlowBuildHasher, FlowKey, FramedMessage, L7Record,
    MessageRole, PairingMode, PairingQueue, Parser, ProcessInfo, ResponseStatus, Segment,
    StreamBuf, StreamEvent, L4,
};
use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the table knows about one connection.
struct FlowState {
    /// Roles are the other way round from the source's key.
    swapped: bool,
    /// Index of the parser in the registry, once inferred.
    slot: Option<usize>,
    /// The parser's per-flow state.
    parser_state: Box<dyn Any + Send>,
    streams: [StreamBuf; 2],
    pairing: PairingQueue,
    last_seen_ns: u64,
    inference_attempts: u32,
    consecutive_errors: u32,
    unparseable: bool,
    process: Option<ProcessInfo>,
    /// Bytes held per direction (source orientation) until inference can decide.
    held: [Held; 2],
}

/// A few bytes held before inference.
#[derive(Default)]
struct Held {
    bytes: Bytes,
    offset: u64,
    next_offset: u64,
    ts_ns: u64,
    gap_before: u64,
}

/// An inference this sure stops the search (see [`crate::Confidence`]).
const CERTAIN: u8 = 200;

/// Bytes held per direction before inference gives up on them (a check decides on this many).
const INFER_MIN_BYTES: usize = 16;

impl FlowState {
    fn new(ts_ns: u64) -> Self {
        FlowState {
            swapped: false,
            slot: None,
            parser_state: Box::new(()),
            streams: [StreamBuf::default(), StreamBuf::default()],
            pairing: PairingQueue::new(PairingMode::Sequential),
            last_seen_ns: ts_ns,
            inference_attempts: 0,
            consecutive_errors: 0,
            unparseable: false,
            process: None,
            held: [Held::default(), Held::default()],
        }
    }
}

/// The flows of one worker, bounded by [`Config::max_flows_per_worker`].
#[derive(Default)]
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowState, FlowBuildHasher>,
}

impl FlowTable {
    /// Flows currently tracked.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// One worker's pipeline: flow table, inference cache, framing, parsing and pairing.
///
/// It is single-threaded by design: the engine gives each worker its own processor and routes
/// every flow to one worker, so nothing here takes a lock.
pub struct FlowProcessor {
    table: FlowTable,
    ctx: Ctx,
    now_ns: u64,
    last_sweep_ns: u64,
    /// Requests expired by a sweep (boxed as they sit in the pairing queues).
    #[allow(clippy::vec_box)]
    scratch: Vec<Box<FramedMessage>>,
}

/// Everything but the table, so a flow borrowed from the table can be worked on in place.
struct Ctx {
    parsers: Arc<[Arc<dyn Parser>]>,
    /// Per server endpoint: which parser slot its flows speak.
    inference_cache: HashMap<(L4, SocketAddr), usize, FlowBuildHasher>,
    config: Config,
    counters: Arc<Counters>,
    /// Reused buffer of framing events.
    events: Vec<StreamEvent>,
    /// Emptied message boxes, reused for the next messages framed (at most
    /// [`SPARE_MESSAGE_BOXES`]): a message box per message was an allocation and a free.
    /// (Boxes on purpose: the boxes are what is reused.)
    #[allow(clippy::vec_box)]
    spare: Vec<Box<FramedMessage>>,
}

/// Emptied message boxes a processor keeps for reuse.
const SPARE_MESSAGE_BOXES: usize = 64;

impl FlowProcessor {
    /// A processor using `parsers` (in inference priority order) and counting into `counters`.
    pub fn new(parsers: Arc<[Arc<dyn Parser>]>, config: Config, counters: Arc<Counters>) -> Self {
        FlowProcessor {
            table: FlowTable::default(),
            ctx: Ctx {
                parsers,
                inference_cache: HashMap::default(),
                config,
                counters,
                events: Vec::new(),
                spare: Vec::new(),
            },
            now_ns: 0,
            last_sweep_ns: 0,
            scratch: Vec::new(),
        }
    }

    /// The counters this processor writes.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.ctx.counters
    }

    /// Flows currently tracked.
    pub fn flows(&self) -> usize {
        self.table.len()
    }

    /// Starts afresh after a panic was caught in [`process`](Self::process) or
    /// [`flush_all`](Self::flush_all): the state of every flow (and of the inference cache)
    /// may be half updated, so all of it is forgotten, counted as `internal_errors` and the
    /// flows as [`DropReason::FlowsResetAfterPanic`]. Their next bytes start new flows.
    pub fn reset_after_panic(&mut self) {
        let flows = self.table.len() as u64;
        self.table = FlowTable::default();
        self.ctx.inference_cache.clear();
        self.ctx.events.clear();
        self.ctx.spare.clear();
        self.scratch.clear();
        bump(&self.ctx.counters.internal_errors, 1);
        self.ctx
            .counters
            .count_drop(DropReason::FlowsResetAfterPanic, flows);
    }

    /// Processes one segment; records complete because of it are passed to `emit`.
    pub fn process(&mut self, seg: Segment, emit: &mut dyn FnMut(L7Record)) {
        let c = &self.ctx.counters;
        bump(&c.segments, 1);
        bump(&c.bytes, seg.payload.len() as u64);
        if seg.ts_ns > self.now_ns {
            self.now_ns = seg.ts_ns;
        }
        if self.now_ns.saturating_sub(self.last_sweep_ns) >= self.ctx.config.sweep_interval_ns {
            self.sweep(emit);
        }
        if self.table.flows.len() >= self.ctx.config.max_flows_per_worker.max(1)
            && !self.table.flows.contains_key(&seg.flow)
        {
            self.evict_oldest(emit);
        }
        let flow = self.table.flows.entry(seg.flow).or_insert_with(|| {
            bump(&self.ctx.counters.flows_created, 1);
            FlowState::new(seg.ts_ns)
        });
        flow.last_seen_ns = seg.ts_ns;
        if seg.process.is_some() && flow.process != seg.process {
            flow.process = seg.process.clone();
        }
        let (key, ts_ns, end_of_flow) = (seg.flow, seg.ts_ns, seg.end_of_flow);
        // (An empty payload with a gap: bytes the source knows were moved but could not
        // see, reported when they were moved.)
        if !seg.payload.is_empty() || seg.gap_before > 0 {
            self.ctx.on_payload(seg, flow, emit);
        }
        if end_of_flow {
            if let Some(flow) = self.table.flows.remove(&key) {
                bump(&self.ctx.counters.flows_closed, 1);
                self.ctx.close_flow(key, flow, ts_ns, emit);
            }
        }
    }

    /// Flushes timed-out requests and removes idle flows (capture time, see [`Config`]).
    pub fn sweep(&mut self, emit: &mut dyn FnMut(L7Record)) {
        self.last_sweep_ns = self.now_ns;
        let req_deadline = self
            .now_ns
            .saturating_sub(self.ctx.config.request_timeout_ns);
        let idle_deadline = self
            .now_ns
            .saturating_sub(self.ctx.config.flow_idle_timeout_ns);
        let mut idle = Vec::new();
        let mut expired = std::mem::take(&mut self.scratch);
        let keys: Vec<FlowKey> = self.table.flows.keys().copied().collect();
        for key in keys {
            let Some(mut flow) = self.table.flows.remove(&key) else {
                continue;
            };
            if flow.last_seen_ns < idle_deadline {
                idle.push((key, flow));
                continue;
            }
            if let Some(slot) = flow.slot {
                flow.pairing.expire(req_deadline, &mut expired);
                let rkey = if flow.swapped { key.reversed() } else { key };
                for q in expired.drain(..) {
                    let mut rec = self.ctx.build(rkey, &flow, slot, Some(q), None);
                    rec.response_status = ResponseStatus::Timeout;
                    self.ctx.emit_record(rec, emit);
                }
            }
            self.table.flows.insert(key, flow);
        }
        self.scratch = expired;
        for (key, flow) in idle {
            bump(&self.ctx.counters.flows_expired, 1);
            let now = self.now_ns;
            self.ctx.close_flow(key, flow, now, emit);
        }
    }

    fn evict_oldest(&mut self, emit: &mut dyn FnMut(L7Record)) {
        let oldest = self
            .table
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_seen_ns)
            .map(|(k, _)| *k);
        if let Some(key) = oldest {
            if let Some(flow) = self.table.flows.remove(&key) {
                self.ctx.counters.count_drop(DropReason::FlowTableFull, 1);
                let now = self.now_ns;
                self.ctx.close_flow(key, flow, now, emit);
            }
        }
    }

    /// Ends every flow (end of input): what is buffered is parsed as final, and waiting
    /// requests are flushed as unpaired.
    pub fn flush_all(&mut self, emit: &mut dyn FnMut(L7Record)) {
        let flows: Vec<(FlowKey, FlowState)> = self.table.flows.drain().collect();
        let now = self.now_ns;
        for (key, flow) in flows {
            self.ctx.close_flow(key, flow, now, emit);
        }
    }
}

impl Ctx {
    fn on_payload(&mut self, seg: Segment, flow: &mut FlowState, emit: &mut dyn FnMut(L7Record)) {
        if flow.unparseable {
            self.counters
                .count_drop(DropReason::UnparsedBytes, seg.payload.len() as u64);
            return;
        }
        if flow.slot.is_some() {
            let dir = if flow.swapped {
                seg.direction.flip()
            } else {
                seg.direction
            };
            self.frame(seg, dir, flow, emit);
            return;
        }
        if seg.payload.is_empty() {
            return; // a gap alone: nothing to infer from (the next bytes carry their offset)
        }
        // Not inferred yet. A check needs a few bytes to decide (a 1-byte write of "P" is not
        // yet "POST /"), so up to INFER_MIN_BYTES are held per direction until one can.
        let sd = seg.direction.index();
        let udp = seg.flow.l4 == L4::Udp;
        // Only needed if the other direction holds bytes too (then they go in with these).
        let process = if flow.held[1 - sd].bytes.is_empty() {
            None
        } else {
            seg.process.clone()
        };
        let held = &mut flow.held[sd];
        let continues =
            !held.bytes.is_empty() && !udp && seg.gap_before == 0 && held.next_offset == seg.offset;
        let (seg_dir, seg_offset, seg_len, key) =
            (seg.direction, seg.offset, seg.payload.len(), seg.flow);
        let mut start = seg;
        if continues {
            let mut b = BytesMut::with_capacity(held.bytes.len() + seg_len);
            b.extend_from_slice(&held.bytes);
            b.extend_from_slice(&start.payload);
            start.payload = b.freeze();
            start.offset = held.offset;
            start.ts_ns = held.ts_ns;
            start.gap_before = held.gap_before;
        } else if !held.bytes.is_empty() {
            self.counters
                .count_drop(DropReason::UnparsedBytes, held.bytes.len() as u64);
        }
        held.bytes = Bytes::new();
        let dir = if flow.swapped {
            seg_dir.flip()
        } else {
            seg_dir
        };
        match self.infer(&start.payload, key, flow, dir) {
            Some(dir) => {
                self.frame(start, dir, flow, emit);
                // Bytes the other direction held meanwhile go in too.
                let other = &mut flow.held[1 - sd];
                if !other.bytes.is_empty() {
                    let o = Segment {
                        flow: key,
                        direction: seg_dir.flip(),
                        ts_ns: other.ts_ns,
                        payload: std::mem::take(&mut other.bytes),
                        offset: other.offset,
                        gap_before: other.gap_before,
                        end_of_flow: false,
                        process,
                    };
                    self.frame(o, dir.flip(), flow, emit);
                }
            }
            None if start.payload.len() < INFER_MIN_BYTES && !udp => {
                let held = &mut flow.held[sd];
                held.next_offset = seg_offset.wrapping_add(seg_len as u64);
                held.offset = start.offset;
                held.ts_ns = start.ts_ns;
                held.gap_before = start.gap_before;
                held.bytes = start.payload;
            }
            None => {
                self.counters
                    .count_drop(DropReason::UnparsedBytes, start.payload.len() as u64);
                flow.inference_attempts += 1;
                if flow.inference_attempts >= self.config.max_inference_attempts {
                    flow.unparseable = true;
                    bump(&self.counters.flows_unparseable, 1);
                }
            }
        }
    }

    /// Frames, parses and pairs one segment of an inferred flow.
    fn frame(
        &mut self,
        seg: Segment,
        dir: Direction,
        flow: &mut FlowState,
        emit: &mut dyn FnMut(L7Record),
    ) {
        let Some(slot) = flow.slot else { return };
        let key = if flow.swapped {
            seg.flow.reversed()
        } else {
            seg.flow
        };
        let datagram = seg.flow.l4 == L4::Udp;
        if !seg.payload.is_empty() {
            flow.streams[dir.flip().index()].peer_spoke();
        }
        self.with_stream(dir, slot, key, flow, emit, seg.ts_ns, |sb, cx, out| {
            sb.push(
                seg.payload,
                seg.offset,
                seg.gap_before,
                seg.ts_ns,
                datagram,
                cx,
                out,
            )
        });
    }

    /// Runs `op` on the stream buffer of `dir` with its framing context, then pairs and
    /// emits the messages it produced.
    #[allow(clippy::too_many_arguments)]
    fn with_stream(
        &mut self,
        dir: Direction,
        slot: usize,
        key: FlowKey,
        flow: &mut FlowState,
        emit: &mut dyn FnMut(L7Record),
        ts_ns: u64,
        op: impl FnOnce(&mut StreamBuf, &mut FrameCtx<'_, '_>, &mut dyn FnMut(StreamEvent)),
    ) {
        let Some(parser) = self.parsers.get(slot) else {
            return;
        };
        // Reuse the event buffer; a nested call (forced request) gets a fresh one.
        let mut events = std::mem::take(&mut self.events);
        {
            let mut cx = FrameCtx {
                flow: key,
                ts_ns,
                parser: parser.as_ref(),
                state: flow.parser_state.as_mut(),
                direction: dir,
                max_message_bytes: self.config.max_message_bytes,
                counters: &self.counters,
                spare: &mut self.spare,
            };
            op(&mut flow.streams[dir.index()], &mut cx, &mut |e| {
                events.push(e)
            });
        }
        for ev in events.drain(..) {
            self.on_event(ev, dir, slot, key, flow, emit);
        }
        self.events = events;
    }

    /// Picks the parser for a flow from its first bytes. Returns the (possibly corrected)
    /// direction of those bytes, or `None` when no parser recognises them.
    fn infer(
        &mut self,
        payload: &[u8],
        key: FlowKey,
        flow: &mut FlowState,
        dir: Direction,
    ) -> Option<Direction> {
        let l4 = key.l4;
        let server = if flow.swapped { key.client } else { key.server };
        let oriented = if flow.swapped { key.reversed() } else { key };
        let cached = self.inference_cache.get(&(l4, server)).copied();
        let mut best: Option<(usize, crate::Inference)> = None;
        if let Some(slot) = cached {
            if let Some(p) = self.parsers.get(slot) {
                bump(&self.counters.inference_cache_hits, 1);
                // Still ask the cached parser, only to learn the message's role.
                let inf = p
                    .check_flow(payload, dir, &oriented)
                    .unwrap_or(crate::Inference {
                        confidence: 0,
                        role: if dir == Direction::ClientToServer {
                            MessageRole::Request
                        } else {
                            MessageRole::Response
                        },
                    });
                best = Some((slot, inf));
            }
        }
        if best.is_none() {
            for (slot, p) in self.parsers.iter().enumerate() {
                if !p.supports(l4) {
                    continue;
                }
                if let Some(inf) = p.check_flow(payload, dir, &oriented) {
                    if best
                        .as_ref()
                        .is_none_or(|(_, b)| inf.confidence > b.confidence)
                    {
                        best = Some((slot, inf));
                    }
                    // A certain match ends the search: later parsers (plugins last) are not
                    // asked about flows a built-in parser recognises.
                    if inf.confidence >= CERTAIN {
                        break;
                    }
                }
            }
        }
        let (slot, inf) = best?;
        let mut dir = dir;
        let seen_role = if dir == Direction::ClientToServer {
            MessageRole::Request
        } else {
            MessageRole::Response
        };
        if inf.role != seen_role {
            flow.swapped = !flow.swapped;
            dir = dir.flip();
            bump(&self.counters.flows_swapped, 1);
        }
        let parser = &self.parsers[slot];
        flow.slot = Some(slot);
        flow.parser_state = parser.new_state();
        flow.pairing = PairingQueue::new(parser.pairing());
        bump(&self.counters.flows_inferred, 1);
        if cached.is_none() {
            let server = if flow.swapped { key.client } else { key.server };
            if self.inference_cache.len() >= self.config.inference_cache_entries.max(1) {
                self.counters.count_drop(
                    DropReason::InferenceCacheFull,
                    self.inference_cache.len() as u64,
                );
                self.inference_cache.clear();
            }
            self.inference_cache.insert((l4, server), slot);
        }
        Some(dir)
    }

    fn on_event(
        &mut self,
        ev: StreamEvent,
        dir: Direction,
        slot: usize,
        key: FlowKey,
        flow: &mut FlowState,
        emit: &mut dyn FnMut(L7Record),
    ) {
        match ev {
            StreamEvent::Error(_) => {
                self.counters.parse_error(slot);
                flow.consecutive_errors += 1;
                if flow.consecutive_errors >= self.config.max_parse_errors_per_flow {
                    flow.unparseable = true;
                    bump(&self.counters.flows_unparseable, 1);
                }
            }
            StreamEvent::Message(m) => {
                flow.consecutive_errors = 0;
                bump(&self.counters.messages, 1);
                let role = m.role.unwrap_or(if dir == Direction::ClientToServer {
                    MessageRole::Request
                } else {
                    MessageRole::Response
                });
                match role {
                    MessageRole::Request => {
                        if m.one_way || flow.pairing.mode() == PairingMode::OneWay {
                            let rec = self.build(key, flow, slot, Some(m), None);
                            self.emit_record(rec, emit);
                        } else if let Some(old) = flow
                            .pairing
                            .push_request(m, self.config.max_pending_requests)
                        {
                            self.counters.count_drop(DropReason::PairingQueueFull, 1);
                            let mut rec = self.build(key, flow, slot, Some(old), None);
                            rec.unpaired = true;
                            self.emit_record(rec, emit);
                        }
                    }
                    MessageRole::Response if m.one_way => {
                        // An answer that is not to this side's requests (e.g. an MQTT PUBACK
                        // for a publish the server sent): a record of its own.
                        let rec = self.build(key, flow, slot, None, Some(m));
                        self.emit_record(rec, emit);
                    }
                    MessageRole::Response => {
                        let mut req = flow.pairing.match_response(&m);
                        let req_dir = dir.flip();
                        if req.is_none()
                            && flow.pairing.mode() == PairingMode::Sequential
                            && flow.streams[req_dir.index()].has_partial()
                        {
                            // The server answered, so the request it answers is as complete
                            // as it will get (its tail was lost or is still to come).
                            self.force_request(req_dir, slot, key, flow, m.start_ns, emit);
                            req = flow.pairing.match_response(&m);
                        }
                        let mut rec = if req.is_some() || flow.pairing.mode() != PairingMode::OneWay
                        {
                            let paired = req.is_some();
                            let mut r = self.build(key, flow, slot, req, Some(m));
                            r.unpaired = !paired;
                            r
                        } else {
                            self.build(key, flow, slot, None, Some(m))
                        };
                        if flow.pairing.mode() == PairingMode::OneWay {
                            rec.unpaired = false;
                        }
                        self.emit_record(rec, emit);
                    }
                }
            }
        }
    }

    fn force_request(
        &mut self,
        req_dir: Direction,
        slot: usize,
        key: FlowKey,
        flow: &mut FlowState,
        ts_ns: u64,
        emit: &mut dyn FnMut(L7Record),
    ) {
        self.with_stream(req_dir, slot, key, flow, emit, ts_ns, |sb, cx, out| {
            sb.force_finish(ts_ns, cx, out)
        });
    }

    fn build(
        &mut self,
        key: FlowKey,
        flow: &FlowState,
        slot: usize,
        req: Option<Box<FramedMessage>>,
        resp: Option<Box<FramedMessage>>,
    ) -> L7Record {
        let protocol = self
            .parsers
            .get(slot)
            .map(|p| p.protocol_of(&*flow.parser_state))
            .unwrap_or_default();
        let mut r = L7Record {
            flow: key,
            process: flow.process.clone(),
            protocol,
            ..Default::default()
        };
        match (&req, &resp) {
            (Some(q), Some(s)) => {
                r.start_ns = q.start_ns;
                r.end_ns = s.end_ns.max(q.end_ns);
                r.rrt_ns = s.end_ns.saturating_sub(q.start_ns);
            }
            (Some(m), None) | (None, Some(m)) => {
                r.start_ns = m.start_ns;
                r.end_ns = m.end_ns;
            }
            (None, None) => {}
        }
        if let Some(mut q) = req {
            fill_request(&mut r, &mut q);
            self.recycle(q);
        }
        if let Some(mut s) = resp {
            fill_response(&mut r, &mut s);
            self.recycle(s);
        }
        r
    }

    /// Keeps an emptied message box: the next message is framed into it (no allocation).
    fn recycle(&mut self, m: Box<FramedMessage>) {
        if self.spare.len() < SPARE_MESSAGE_BOXES {
            self.spare.push(m);
        }
    }

    fn emit_record(&self, rec: L7Record, emit: &mut dyn FnMut(L7Record)) {
        let c = &self.counters;
        bump(&c.records, 1);
        if rec.response_status == ResponseStatus::Timeout {
            bump(&c.records_timeout, 1);
        } else if rec.unpaired {
            bump(&c.records_unpaired, 1);
        } else {
            bump(&c.records_paired, 1);
        }
        emit(rec);
    }

    /// Ends a flow: parses what is left as final, flushes unanswered requests as unpaired.
    fn close_flow(
        &mut self,
        key: FlowKey,
        mut flow: FlowState,
        ts_ns: u64,
        emit: &mut dyn FnMut(L7Record),
    ) {
        let Some(slot) = flow.slot else { return };
        let rkey = if flow.swapped { key.reversed() } else { key };
        for dir in [Direction::ClientToServer, Direction::ServerToClient] {
            self.with_stream(dir, slot, rkey, &mut flow, emit, ts_ns, |sb, cx, out| {
                sb.finish(ts_ns, cx, out)
            });
        }
        let left: Vec<_> = flow.pairing.drain().collect();
        for q in left {
            let mut rec = self.build(rkey, &flow, slot, Some(q), None);
            rec.unpaired = true;
            self.emit_record(rec, emit);
        }
    }
}

/// The request's fields into the record; the message is left empty (its box is reused).
fn fill_request(r: &mut L7Record, q: &mut FramedMessage) {
    use std::mem::take;
    r.version = take(&mut q.version);
    r.request_type = take(&mut q.request_type);
    r.request_domain = take(&mut q.request_domain);
    r.request_resource = take(&mut q.request_resource);
    r.endpoint = take(&mut q.endpoint);
    r.request_id = q.request_id;
    r.req_len = q.body_len;
    r.trace_id = take(&mut q.trace_id);
    r.span_id = take(&mut q.span_id);
    r.x_request_id = take(&mut q.x_request_id);
    r.content_type = take(&mut q.content_type);
    r.truncated |= q.truncated;
    r.request_body = take(&mut q.body);
    r.request_payload = take(&mut q.raw);
}

/// The response's fields into the record; the message is left empty (its box is reused).
fn fill_response(r: &mut L7Record, s: &mut FramedMessage) {
    use std::mem::take;
    // Request-side values win; the response fills what the request did not carry.
    or_take(&mut r.version, take(&mut s.version));
    or_take(&mut r.request_type, take(&mut s.request_type));
    or_take(&mut r.request_resource, take(&mut s.request_resource));
    or_take(&mut r.endpoint, take(&mut s.endpoint));
    or_take(&mut r.trace_id, take(&mut s.trace_id));
    or_take(&mut r.span_id, take(&mut s.span_id));
    or_take(&mut r.x_request_id, take(&mut s.x_request_id));
    if r.request_id.is_none() {
        r.request_id = s.request_id;
    }
    r.response_status = s.status;
    r.response_code = s.code;
    r.response_exception = take(&mut s.exception);
    r.response_result = take(&mut s.result);
    r.resp_len = s.body_len;
    if !s.content_type.is_empty() {
        r.content_type = take(&mut s.content_type);
    }
    r.truncated |= s.truncated;
    r.response_body = take(&mut s.body);
    r.response_payload = take(&mut s.raw);
}

fn or_take(dst: &mut Bytes, src: Bytes) {
    if dst.is_empty() {
        *dst = src;
    }
}
