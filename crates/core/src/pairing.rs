//! Request/response pairing.

use crate::FramedMessage;
use std::collections::VecDeque;

/// How a protocol's responses find their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingMode {
    /// Responses come in request order (HTTP/1 keep-alive and pipelining, Redis, MySQL).
    Sequential,
    /// Responses carry the id of their request (DNS id, Kafka correlation id, HTTP/2 stream).
    ById,
    /// Messages are records on their own (MQTT QoS 0 publishes, syslog-like protocols).
    OneWay,
    /// By id when the response carries one that a waiting request has, else in order
    /// (plugin-defined protocols: whether a record has a request id is up to the plugin).
    IdOrOrder,
}

/// A request waiting for its response.
pub type PendingRequest = Box<FramedMessage>;

/// The requests of one flow that wait for responses, bounded by `max_pending`.
#[derive(Debug)]
pub struct PairingQueue {
    mode: PairingMode,
    pending: VecDeque<PendingRequest>,
}

impl PairingQueue {
    /// An empty queue.
    pub fn new(mode: PairingMode) -> Self {
        PairingQueue {
            mode,
            pending: VecDeque::new(),
        }
    }

    /// How messages pair on this queue.
    pub fn mode(&self) -> PairingMode {
        self.mode
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when no request waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Queues a request. When `max_pending` are already waiting, the oldest is returned so the
    /// caller can flush it (and count the overflow).
    pub fn push_request(
        &mut self,
        req: PendingRequest,
        max_pending: usize,
    ) -> Option<PendingRequest> {
        let evicted = if self.pending.len() >= max_pending.max(1) {
            self.pending.pop_front()
        } else {
            None
        };
        self.pending.push_back(req);
        evicted
    }

    /// The request this response answers, if it is waiting.
    pub fn match_response(&mut self, resp: &FramedMessage) -> Option<PendingRequest> {
        match self.mode {
            PairingMode::Sequential => self.pending.pop_front(),
            PairingMode::ById => {
                let id = resp.request_id?;
                let pos = self.pending.iter().position(|r| r.request_id == Some(id))?;
                self.pending.remove(pos)
            }
            PairingMode::OneWay => None,
            PairingMode::IdOrOrder => {
                let by_id = resp
                    .request_id
                    .and_then(|id| self.pending.iter().position(|r| r.request_id == Some(id)));
                match by_id {
                    Some(pos) => self.pending.remove(pos),
                    None => self.pending.pop_front(),
                }
            }
        }
    }

    /// Removes the requests that started before `deadline_ns`.
    pub fn expire(&mut self, deadline_ns: u64, out: &mut Vec<PendingRequest>) {
        // Requests are queued in arrival order, so the old ones are at the front.
        while self
            .pending
            .front()
            .is_some_and(|r| r.start_ns < deadline_ns)
        {
            if let Some(r) = self.pending.pop_front() {
                out.push(r);
            }
        }
    }

    /// Removes every waiting request.
    pub fn drain(&mut self) -> impl Iterator<Item = PendingRequest> + '_ {
        self.pending.drain(..)
    }
}
