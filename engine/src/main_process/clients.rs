//! The command clients as the core sees them: where each one's answers go, which ones follow
//! events, and the event log a subscriber resumes from.
//!
//! Sending never blocks the core: each client has a writer thread behind an unbounded
//! channel (see `command_server`), bounded by its write timeout.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;

use weir_schema::proto::{self, response::Content};

use super::events::{EventLog, DEFAULT_CAPACITY};
use super::input::{Activity, ClientId};

#[derive(Debug)]
struct Client {
    answers: Sender<proto::Response>,
    writer: Option<JoinHandle<()>>,
    activity: Arc<Activity>,
}

/// Connected clients, subscribers and the event log.
#[derive(Debug)]
pub struct Clients {
    connected: HashMap<ClientId, Client>,
    subscribers: BTreeSet<ClientId>,
    events: EventLog,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            connected: HashMap::new(),
            subscribers: BTreeSet::new(),
            events: EventLog::new(DEFAULT_CAPACITY),
        }
    }
}

impl Clients {
    pub fn connected(
        &mut self,
        client: ClientId,
        answers: Sender<proto::Response>,
        writer: JoinHandle<()>,
        activity: Arc<Activity>,
    ) {
        self.connected.insert(
            client,
            Client {
                answers,
                writer: Some(writer),
                activity,
            },
        );
    }

    pub fn gone(&mut self, client: ClientId) {
        self.connected.remove(&client);
        self.subscribers.remove(&client);
    }

    /// Sends `response` to `client`, if it is still connected.
    pub fn answer(&self, client: ClientId, response: proto::Response) {
        if let Some(c) = self.connected.get(&client) {
            if !response.id.is_empty() && response.is_final() {
                c.activity.answered();
            }
            let _ = c.answers.send(response);
        }
    }

    /// Subscribes `client` to events, first replaying the retained ones after `from`.
    pub fn subscribe(&mut self, client: ClientId, id: &str, from: Option<u64>, version: u64) {
        // Before its answer: a subscriber is never idle, not even between the two.
        if let Some(c) = self.connected.get(&client) {
            c.activity.subscribed();
        }
        let (replay, gap) = match from {
            Some(seq) => self.events.since(seq),
            None => (Vec::new(), false),
        };
        let message = if gap {
            format!(
                "subscribed; some events after {} were no longer retained",
                from.unwrap_or(0)
            )
        } else {
            format!("subscribed at sequence {}", self.events.last_sequence())
        };
        self.answer(client, ok_with(id, message, version));
        for e in replay {
            self.answer(client, event_response(e, version));
        }
        self.subscribers.insert(client);
    }

    /// Logs an event and sends it to every subscriber.
    pub fn emit(&mut self, e: proto::Event, version: u64) {
        let e = self.events.push(e);
        for client in &self.subscribers {
            if let Some(c) = self.connected.get(client) {
                let _ = c.answers.send(event_response(e.clone(), version));
            }
        }
    }

    /// Disconnects everyone, letting each writer send what is queued first (each is bounded
    /// by its write timeout).
    pub fn close(&mut self) {
        self.subscribers.clear();
        let writers: Vec<JoinHandle<()>> = self
            .connected
            .drain()
            .filter_map(|(_, mut c)| c.writer.take())
            .collect();
        for writer in writers {
            let _ = writer.join();
        }
    }
}

fn event_response(e: proto::Event, version: u64) -> proto::Response {
    proto::Response::ok("", version).with_content(Content::Event(e))
}

/// A final OK with a message for people.
pub fn ok_with(id: &str, message: impl Into<String>, version: u64) -> proto::Response {
    let mut answer = proto::Response::ok(id, version);
    answer.message = message.into();
    answer
}
