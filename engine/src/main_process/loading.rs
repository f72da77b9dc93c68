//! Where a state comes from other than single changes: at start, the state handed over by a
//! previous main process, or the saved state and the desired directory; later, the file a
//! `LoadState` command names. Saved and desired states are merged into the running one the same
//! way ([`merge_changes`]), through the State's own rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_schema::desired::Definition;
use weir_schema::{proto, Change, State};

use super::command_server;
use super::config::Config;
use super::error::MainError;
use super::listeners::Listeners;
use super::upgrade::{self, Handover};
use super::{log, persist};

/// What a main process starts from.
#[derive(Debug)]
pub struct Start {
    pub config: Config,
    pub state: State,
    /// Every listener of `state`, open (or inherited).
    pub listeners: Listeners,
    pub command: UnixListener,
    /// After an upgrade: where to tell the previous main process that this one serves.
    pub ready: Option<UnixStream>,
    /// The state version already saved (the `[state]` file is written when it is behind).
    pub saved_version: u64,
    /// After an upgrade: the TLS ticket keys in use, and the time left until they rotate.
    pub tickets: Option<(proto::TicketKeys, Duration)>,
}

/// Takes over from a previous main process (`handover`), or builds the state from the saved
/// state and the desired directory and opens its sockets.
pub fn start(config: Config, handover: Option<Handover>) -> Result<Start, MainError> {
    let Some(handover) = handover else {
        let mut listeners = Listeners::new(config.shared_listeners);
        let (state, origins) = initial_state(&config)?;
        listeners
            .open_each(state.listeners.values(), config.worker_count())
            .map_err(|(l, error)| MainError::Listen {
                name: l.name.clone(),
                address: l.address,
                origin: origins.of(&l.address),
                error,
            })?;
        let command = command_server::bind(&config.socket_path())?;
        return Ok(Start {
            config,
            state,
            listeners,
            command,
            ready: None,
            saved_version: 0,
            tickets: None,
        });
    };
    let mut listeners = Listeners::new(handover.config.shared_listeners);
    let mut adopted = handover.adopt().map_err(MainError::Handover)?;
    let tickets = match handover.ticket_keys_rotate_in_ms {
        Some(ms) => Some((
            upgrade::read_ticket_keys(&mut adopted.ready).map_err(MainError::Handover)?,
            Duration::from_millis(ms),
        )),
        None => None,
    };
    let state = persist::load(&adopted.state_file)?;
    let _ = std::fs::remove_file(&adopted.state_file);
    for (address, fds) in adopted.listeners {
        listeners.adopt(address, fds);
    }
    Ok(Start {
        config: handover.config,
        // The previous main process saved this very version.
        saved_version: state.version,
        state,
        listeners,
        command: command_server::adopt(adopted.command),
        ready: Some(adopted.ready),
        tickets,
    })
}

/// Where the listeners of the state at start came from, to name it when one cannot listen.
#[derive(Debug, Default)]
struct Origins {
    saved: Option<(PathBuf, BTreeSet<SocketAddr>)>,
    desired: Option<(PathBuf, BTreeMap<SocketAddr, Option<Definition>>)>,
}

impl Origins {
    /// Where `address`'s listener was defined: its desired file, line and column when the
    /// loader knows them, else the desired path or the saved state file it came from.
    fn of(&self, address: &SocketAddr) -> Option<String> {
        if let Some((path, listeners)) = &self.desired {
            match listeners.get(address) {
                Some(Some(definition)) => {
                    return Some(match definition.locate() {
                        Some(location) => format!("defined at {location}"),
                        None => format!("defined in {}", definition.file.display()),
                    });
                }
                Some(None) => return Some(format!("defined in {}", path.display())),
                None => {}
            }
        }
        let (path, listeners) = self.saved.as_ref()?;
        listeners
            .contains(address)
            .then(|| format!("from the saved state {}", path.display()))
    }
}

/// The state at start: the saved state (if configured and present), then `desired` merged in;
/// and where its listeners came from.
fn initial_state(config: &Config) -> Result<(State, Origins), MainError> {
    let mut state = State::new();
    let mut origins = Origins::default();
    if let Some(path) = config.state.path.as_ref().filter(|p| p.exists()) {
        state = persist::load(path)?;
        log::info(&format!(
            "loaded saved state version {} from {}",
            state.version,
            path.display()
        ));
        origins.saved = Some((path.clone(), state.listeners.keys().copied().collect()));
    }
    if let Some(dir) = &config.desired {
        let mut desired = weir_schema::desired::load(dir).map_err(|e| MainError::Desired {
            path: dir.clone(),
            errors: e.to_string(),
        })?;
        for warning in &desired.warnings {
            log::warn(warning);
        }
        for change in merge_changes(&state, &desired.state) {
            state
                .apply_change(&change, None)
                .map_err(|e| MainError::Desired {
                    path: dir.clone(),
                    errors: format!("{}: {e}", change.describe()),
                })?;
        }
        let listeners = desired
            .state
            .listeners
            .keys()
            .map(|a| (*a, desired.listener_definitions.remove(a)))
            .collect();
        origins.desired = Some((dir.clone(), listeners));
    }
    Ok((state, origins))
}

/// The changes a `LoadState` of `path` makes to `current`, all checked on a copy first, so a
/// file that does not fit is refused whole.
pub fn changes_to_load(current: &State, path: &Path) -> Result<Vec<Change>, String> {
    let loaded = persist::load(path).map_err(|e| e.to_string())?;
    let changes = merge_changes(current, &loaded);
    let mut trial = current.clone();
    for change in &changes {
        trial.apply_change(change, None).map_err(|e| {
            format!(
                "{} does not fit the running state: {}: {e}",
                path.display(),
                change.describe()
            )
        })?;
    }
    Ok(changes)
}

/// The changes that add `incoming`'s resources to `current`: identical resources are skipped,
/// a listener, cluster or backend whose settings differ, or a frontend whose owner differs,
/// becomes an update (which the State may still refuse, e.g. a backend whose address changed).
pub fn merge_changes(current: &State, incoming: &State) -> Vec<Change> {
    incoming
        .to_changes()
        .into_iter()
        .filter_map(|change| match change {
            Change::AddListener(l) => match current.listeners.get(&l.address) {
                None => Some(Change::AddListener(l)),
                Some(old) if *old == l => None,
                Some(_) => Some(Change::UpdateListener(l)),
            },
            Change::AddCluster(c) => match current.clusters.get(&c.id) {
                None => Some(Change::AddCluster(c)),
                Some(old) if *old == c => None,
                Some(_) => Some(Change::UpdateCluster(c)),
            },
            Change::AddBackend(b) => match current.backends.get(&b.key) {
                None => Some(Change::AddBackend(b)),
                Some(old) if *old == b => None,
                Some(_) => Some(Change::UpdateBackend(b)),
            },
            Change::AddCertificate(c) => (!current.certificates.contains_key(&c.fingerprint))
                .then_some(Change::AddCertificate(c)),
            Change::AddFrontend(f) => match current.frontends.get_key_value(&f) {
                None => Some(Change::AddFrontend(f)),
                Some((old, _)) if old.owner == f.owner => None,
                Some(_) => Some(Change::UpdateFrontend(f)),
            },
            other => Some(other),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;
    use weir_schema::{Cluster, ClusterId};

    #[test]
    fn merging_skips_what_is_there_and_updates_what_changed() {
        let mut current = State::new();
        current
            .apply_change(&Change::AddCluster(Cluster::new("a")), None)
            .unwrap();
        let mut incoming = State::new();
        let mut changed = Cluster::new("a");
        changed.connect_timeout = Some(Duration::from_secs(1));
        incoming
            .apply_change(&Change::AddCluster(changed.clone()), None)
            .unwrap();
        incoming
            .apply_change(&Change::AddCluster(Cluster::new("b")), None)
            .unwrap();
        let changes = merge_changes(&current, &incoming);
        assert_eq!(
            changes,
            [
                Change::UpdateCluster(changed),
                Change::AddCluster(Cluster::new("b"))
            ]
        );
        assert!(merge_changes(&incoming, &incoming).is_empty());
        let _ = ClusterId("unused".into());
    }

    #[test]
    fn merging_a_frontend_with_another_owner_updates_it() {
        let route = weir_schema::Frontend {
            listener: "127.0.0.1:8080".parse().unwrap(),
            hostname: Some("shop.test".into()),
            path: "/".into(),
            cluster: ClusterId("a".into()),
            certificate: None,
            options: Default::default(),
            owner: None,
        };
        let with = |f: &weir_schema::Frontend| {
            let mut s = State::new();
            for change in [
                Change::AddListener(weir_schema::Listener {
                    address: f.listener,
                    protocol: weir_schema::Protocol::Http,
                    name: "web".into(),
                    settings: Default::default(),
                    owner: None,
                }),
                Change::AddCluster(Cluster::new("a")),
                Change::AddFrontend(f.clone()),
            ] {
                s.apply_change(&change, None).unwrap();
            }
            s
        };
        let owned = weir_schema::Frontend {
            owner: Some(weir_schema::Owner("platform".into())),
            ..route.clone()
        };
        let current = with(&route);
        let changes = merge_changes(&current, &with(&owned));
        assert_eq!(changes, [Change::UpdateFrontend(owned.clone())]);
        let Change::UpdateFrontend(f) = &changes[0] else {
            unreachable!()
        };
        assert_eq!(f.owner, owned.owner, "the saved owner, not only the route");
        assert!(merge_changes(&current, &current).is_empty());
    }
}
