//! The watch loop's [`Proxy`] over a command socket: plans with [`crate::plan::plan`], renders
//! with [`crate::render::text`], and applies with the reconciler's executor, which rolls back
//! on failure. The connection is re-opened after any error, so a proxy restarted under the
//! watch is picked up again on the next change or drift tick.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_schema::{Fingerprint, State};

use super::{ApplyFailure, Planned, Proxy};
use crate::apply::{self, ApplyError, Quiet};
use crate::client::{Client, ClientError};
use crate::plan::{self, Plan};
use crate::render::{self, TextOptions};

/// How long a query (status, state) may wait for its answer. Applies wait as long as their
/// drains need: the executor bounds those.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// See the module documentation.
#[derive(Debug)]
pub struct SocketProxy {
    path: PathBuf,
    client: Option<Client>,
}

impl SocketProxy {
    /// Connects once to check the proxy is there; later calls reconnect as needed.
    pub fn connect(path: &Path) -> Result<SocketProxy, ClientError> {
        let client = Client::connect(path)?;
        Ok(SocketProxy {
            path: path.to_owned(),
            client: Some(client),
        })
    }

    /// Runs `f` on a connected client; an error drops the connection so the next call
    /// reconnects.
    fn with_client<T>(
        &mut self,
        timeout: Option<Duration>,
        f: impl FnOnce(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        // The proxy closes a connection left idle (`timeouts.command_idle_ms`): start afresh.
        if self.client.as_ref().is_some_and(Client::peer_closed) {
            self.client = None;
        }
        let client = match &mut self.client {
            Some(client) => client,
            empty => empty.insert(Client::connect(&self.path)?),
        };
        client
            .set_read_timeout(timeout)
            .map_err(|e| ClientError::Frame(e.into()))?;
        let result = f(client);
        if result.is_err() {
            self.client = None;
        }
        result
    }
}

impl Proxy for SocketProxy {
    type Plan = Plan;

    fn fingerprint(&mut self) -> Result<Fingerprint, String> {
        let status = self
            .with_client(Some(QUERY_TIMEOUT), |c| c.status())
            .map_err(|e| e.to_string())?;
        Fingerprint::from_hex(&status.state_fingerprint).ok_or_else(|| {
            format!(
                "the proxy reported a malformed state fingerprint {:?}",
                status.state_fingerprint
            )
        })
    }

    fn state(&mut self) -> Result<State, String> {
        self.with_client(Some(QUERY_TIMEOUT), |c| c.query_state())
            .map_err(|e| e.to_string())
    }

    fn plan(&self, live: &State, desired: &State) -> Planned<Plan> {
        let plan = plan::plan(live, desired, &[]);
        Planned {
            is_empty: plan.is_empty(),
            summary: plan.summary().to_string(),
            text: if plan.is_empty() {
                String::new()
            } else {
                render::text(&plan, &TextOptions::default())
            },
            plan,
        }
    }

    fn apply(&mut self, plan: &Plan) -> Result<(), ApplyFailure> {
        let outcome = self.with_client(None, |c| match apply::apply(c, plan, &mut Quiet) {
            Ok(_) => Ok(Ok(())),
            // A lost connection is worth a reconnect; every other failure is the plan's. The
            // loop reports the outcome as a whole, so the per-step events are not observed.
            Err(ApplyError::Client(e)) => Err(e),
            Err(e) => Ok(Err(e)),
        });
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApplyFailure {
                rolled_back: matches!(e, ApplyError::RolledBack { .. } | ApplyError::Stale { .. }),
                message: e.to_string(),
            }),
            Err(e) => Err(ApplyFailure {
                message: e.to_string(),
                rolled_back: false,
            }),
        }
    }
}
