//! `weir upgrade` as the old main process lives it: start the new binary with the state and
//! the listening sockets, answer the client once the new one serves, then drain the old
//! workers; or take the command socket back if the new one never came up.

use super::*;

impl Core {
    pub(super) fn begin_upgrade(&mut self, client: ClientId, id: String) {
        if !self.life.is_running() {
            return self.fail(client, &id, "the proxy is already stopping or upgrading");
        }
        self.command.stop_accepting();
        let started = upgrade::start(
            &self.state,
            &self.config,
            self.fleet.len(),
            &self.command,
            &self.listeners,
            self.tickets.as_ref().map(|t| t.handed_over(Instant::now())),
        );
        match started {
            Ok((pid, state_file)) => {
                log::info(&format!("upgrade: new main process pid {pid} is starting"));
                self.life.upgrading((client, id), state_file);
            }
            Err(e) => {
                self.command.resume_accepting();
                self.fail(client, &id, e);
            }
        }
    }

    pub(super) fn on_upgrade_ready(&mut self, pid: u32) {
        let deadline = Instant::now() + self.config.stop_timeout();
        let Some((client, id)) = self.life.upgrade_ready(deadline) else {
            return;
        };
        log::info(&format!(
            "upgrade: main process {pid} serves; draining the old workers"
        ));
        self.answer(
            client,
            ok_with(
                &id,
                format!("upgraded: the new main process is pid {pid}"),
                self.state.version,
            ),
        );
        // The new main process and its workers hold the sockets now; it takes the admin
        // address over once this one lets go of it.
        self.admin = None;
        self.listeners.close_all();
        self.fleet.soft_stop_all();
    }

    pub(super) fn on_upgrade_failed(&mut self, reason: &str) {
        let Some((client, id)) = self.life.upgrade_failed() else {
            return;
        };
        log::error(&format!("upgrade failed: {reason}"));
        self.command.resume_accepting();
        self.fail(client, &id, format!("upgrade failed: {reason}"));
    }
}
