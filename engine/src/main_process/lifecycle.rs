//! Where the main process is in its life: running, stopping softly, handing over to a new
//! main process on upgrade, handed over. Changes are accepted only while running.
//!
//! The phase decides; the core acts (closing sockets, stopping workers), so this module
//! holds no sockets and no workers, only what each phase must remember: the client waiting for
//! its SoftStop or UpgradeMain answer, the deadline of the drain, and the state file handed to
//! a new main process (removed when the upgrade ends, whether it worked or not).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::input::ClientId;
use super::log;
use super::upgrade::StateFile;

/// The client request a phase answers when it ends: (client, request id).
pub type Reply = (ClientId, String);

/// Where the process is in its life.
#[derive(Debug)]
enum Phase {
    Running,
    /// SoftStop / SIGTERM: workers finish in-flight requests, bounded by `deadline`.
    Stopping {
        deadline: Instant,
        reply: Option<Reply>,
    },
    /// A new main process is starting; the command socket is no longer accepted here. The
    /// state file handed to it is removed when this phase ends, whatever the outcome.
    Upgrading {
        reply: Reply,
        state_file: Option<StateFile>,
    },
    /// The new main process serves; old workers drain, then this process exits.
    HandedOver {
        deadline: Instant,
    },
}

/// The phase, and the two ends of a life: readiness reported to a previous main process, and
/// the decision to exit.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
    /// Set on a main process started by an upgrade: where to report readiness.
    ready: Option<UnixStream>,
    exit: bool,
    started: Instant,
}

impl Lifecycle {
    /// A life that starts now; `ready` is the previous main process's end, after an upgrade.
    pub fn new(ready: Option<UnixStream>) -> Lifecycle {
        Lifecycle {
            phase: Phase::Running,
            ready,
            exit: false,
            started: Instant::now(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Running)
    }

    /// A new main process owns the command socket now (this one must not remove its file).
    pub fn handed_over(&self) -> bool {
        matches!(self.phase, Phase::HandedOver { .. })
    }

    /// Why changes are refused right now, if they are.
    pub fn closed_for_changes(&self) -> Option<&'static str> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping { .. } => Some("the proxy is stopping"),
            Phase::Upgrading { .. } | Phase::HandedOver { .. } => Some(
                "the proxy is upgrading; reconnect to the command socket to reach the new main process",
            ),
        }
    }

    /// Every worker has applied the state: tells a previous main process, if there is one,
    /// that it may hand over.
    pub fn report_ready(&mut self) {
        if let Some(mut ready) = self.ready.take() {
            if let Err(e) = ready.write_all(b"1") {
                log::warn(&format!(
                    "cannot report readiness to the previous main process: {e}"
                ));
            }
        }
    }

    /// Starts a soft stop ending at `deadline`. Only from running: otherwise the reply is
    /// given back, to be refused.
    pub fn stop(&mut self, deadline: Instant, reply: Option<Reply>) -> Result<(), Option<Reply>> {
        if !self.is_running() {
            return Err(reply);
        }
        self.phase = Phase::Stopping { deadline, reply };
        Ok(())
    }

    /// A new main process was started with `state_file`; `reply` is answered when it serves
    /// or fails.
    pub fn upgrading(&mut self, reply: Reply, state_file: StateFile) {
        self.phase = Phase::Upgrading {
            reply,
            state_file: Some(state_file),
        };
    }

    /// The new main process serves: this one drains until `deadline`. Returns the client
    /// waiting for the upgrade, if one was.
    pub fn upgrade_ready(&mut self, deadline: Instant) -> Option<Reply> {
        let Phase::Upgrading { reply, .. } = &self.phase else {
            return None;
        };
        let reply = reply.clone();
        self.phase = Phase::HandedOver { deadline };
        Some(reply)
    }

    /// The new main process failed: this one runs on. Returns the client waiting for the
    /// upgrade, if one was.
    pub fn upgrade_failed(&mut self) -> Option<Reply> {
        let Phase::Upgrading { reply, .. } = &self.phase else {
            return None;
        };
        let reply = reply.clone();
        self.phase = Phase::Running;
        Some(reply)
    }

    /// Ends a stop or a hand-over once every worker is gone or the deadline passed. Returns
    /// the client whose SoftStop is now done, to be answered.
    pub fn tick(&mut self, now: Instant, all_gone: bool) -> Option<Reply> {
        match &mut self.phase {
            Phase::Stopping { deadline, reply } if all_gone || *deadline <= now => {
                self.exit = true;
                reply.take()
            }
            Phase::HandedOver { deadline } if all_gone || *deadline <= now => {
                self.exit = true;
                None
            }
            _ => None,
        }
    }

    /// Stops at the end of this turn of the loop (a hard stop). A new main process still
    /// starting keeps its state file, which it removes once read.
    pub fn exit_now(&mut self) {
        self.exit = true;
        if let Phase::Upgrading { state_file, .. } = &mut self.phase {
            if let Some(file) = state_file.take() {
                file.keep();
            }
        }
    }

    pub fn exit_due(&self) -> bool {
        self.exit
    }
}
