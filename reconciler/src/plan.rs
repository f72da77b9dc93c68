//! Plans: a diff ordered into make-before-break steps.
//!
//! DESIGN.md's ten phases are a data table here ([`ORDER`]): every (kind, operation) pair has
//! one phase, and a plan is the diff's primitive steps sorted by phase. Adding comes before
//! removing, so a route that exists before and after a plan is never missing in between: new
//! frontends (phase 5) land before old ones go (phase 6), and a backend is drained (phase 8)
//! only once the routes that replace it are in.
//!
//! Two replacements cannot add the new value first, because the identity that changes is not
//! part of the key: a listener whose protocol changes keeps its address, and a backend whose
//! address changes keeps its (cluster, id). [`RECREATE`] says where those are re-created:
//!
//! - a listener in phase 1: its frontends are removed, then the listener, then the new one is
//!   added; its new frontends come in phase 5. Its routes are down in between, and the plan
//!   says so in a note.
//! - a backend in phase 8, before any plain removal (so its cluster's other backends are still
//!   there): the old one is drained, then the new one added. When it is the only backend its
//!   cluster would have at that moment, a stand-in backend with the new address is added in
//!   phase 3 and drained after, so the cluster never goes without a backend.
//!
//! Planning is pure: two states in, data out. It is linear in the number of resources plus a
//! sort, so 30,000 resources plan in milliseconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use weir_schema::model::Resource;
use weir_schema::{
    Backend, BackendId, BackendKey, Change, ClusterId, Fingerprint, Frontend, State,
};

use crate::address::{Address, Kind, Names};
use crate::diff::{diff_with, Action, ResourceChange};

/// The ten phases of a plan, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    ListenersAdd = 1,
    ClustersAdd = 2,
    BackendsAdd = 3,
    CertificatesAdd = 4,
    FrontendsAdd = 5,
    FrontendsRemove = 6,
    CertificatesRemove = 7,
    BackendsRemove = 8,
    ClustersRemove = 9,
    ListenersRemove = 10,
}

impl Phase {
    pub const ALL: [Phase; 10] = [
        Phase::ListenersAdd,
        Phase::ClustersAdd,
        Phase::BackendsAdd,
        Phase::CertificatesAdd,
        Phase::FrontendsAdd,
        Phase::FrontendsRemove,
        Phase::CertificatesRemove,
        Phase::BackendsRemove,
        Phase::ClustersRemove,
        Phase::ListenersRemove,
    ];

    /// 1 to 10.
    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(n: u8) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.number() == n)
    }

    pub fn title(self) -> &'static str {
        match self {
            Phase::ListenersAdd => "listeners add/update",
            Phase::ClustersAdd => "clusters add/update",
            Phase::BackendsAdd => "backends add/update",
            Phase::CertificatesAdd => "certificates add",
            Phase::FrontendsAdd => "frontends add",
            Phase::FrontendsRemove => "frontends remove",
            Phase::CertificatesRemove => "certificates remove",
            Phase::BackendsRemove => "backends remove (drain)",
            Phase::ClustersRemove => "clusters remove",
            Phase::ListenersRemove => "listeners remove",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "phase {}: {}", self.number(), self.title())
    }
}

/// What one step's request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Add,
    Update,
    Remove,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Update => "update",
            Op::Remove => "remove",
        }
    }
}

/// The make-before-break order, as data: the phase of every (kind, operation). A certificate's
/// and a frontend's update change only their owner (their identity is the rest), so each runs
/// with its kind's adds.
pub const ORDER: [(Kind, Op, Phase); 15] = [
    (Kind::Listener, Op::Add, Phase::ListenersAdd),
    (Kind::Listener, Op::Update, Phase::ListenersAdd),
    (Kind::Cluster, Op::Add, Phase::ClustersAdd),
    (Kind::Cluster, Op::Update, Phase::ClustersAdd),
    (Kind::Backend, Op::Add, Phase::BackendsAdd),
    (Kind::Backend, Op::Update, Phase::BackendsAdd),
    (Kind::Certificate, Op::Add, Phase::CertificatesAdd),
    (Kind::Certificate, Op::Update, Phase::CertificatesAdd),
    (Kind::Frontend, Op::Add, Phase::FrontendsAdd),
    (Kind::Frontend, Op::Update, Phase::FrontendsAdd),
    (Kind::Frontend, Op::Remove, Phase::FrontendsRemove),
    (Kind::Certificate, Op::Remove, Phase::CertificatesRemove),
    (Kind::Backend, Op::Remove, Phase::BackendsRemove),
    (Kind::Cluster, Op::Remove, Phase::ClustersRemove),
    (Kind::Listener, Op::Remove, Phase::ListenersRemove),
];

/// Where a resource replaced under the same identity is removed and re-created (see the
/// module docs). Kinds not listed are never replaced in place (their identity is their value).
pub const RECREATE: [(Kind, Phase); 2] = [
    (Kind::Listener, Phase::ListenersAdd),
    (Kind::Backend, Phase::BackendsRemove),
];

fn phase_of(kind: Kind, op: Op) -> Phase {
    ORDER
        .iter()
        .find(|(k, o, _)| *k == kind && *o == op)
        .map(|(_, _, p)| *p)
        // The table has every pair (a test checks it); were one missing, the add phase of its
        // kind is the safe place.
        .unwrap_or_else(|| phase_of(kind, Op::Add))
}

fn recreate_phase(kind: Kind) -> Phase {
    RECREATE
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| phase_of(kind, Op::Add))
}

/// One request of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub op: Op,
    pub address: Address,
    pub change: Change,
    /// What happens to the resource this step is part of; `Replace` for each step of a
    /// re-creation (rendered `-/+`).
    pub part_of: Action,
    /// Why this step is there, when it is not obvious (a stand-in backend, say).
    pub note: Option<String>,
}

impl Step {
    /// Whether this step drains a backend (and so waits for its connections to finish).
    pub fn is_drain(&self) -> bool {
        matches!(self.change, Change::RemoveBackend { .. })
    }
}

/// How many resources a plan adds, changes in place and removes (a replacement counts as one
/// add and one remove, as in Terraform).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to remove.",
            self.add, self.change, self.remove
        )
    }
}

/// An ordered plan, with the live state it was computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub(crate) from_fingerprint: Fingerprint,
    pub(crate) from_version: u64,
    pub(crate) to_fingerprint: Option<Fingerprint>,
    pub(crate) changes: Vec<ResourceChange>,
    pub(crate) steps: Vec<Step>,
    pub(crate) notes: Vec<String>,
    pub(crate) names: Names,
    pub(crate) targets: Vec<Address>,
    pub(crate) drain_timeout: Option<Duration>,
}

impl Plan {
    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Add => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.remove += 1;
                }
                Action::Remove => s.remove += 1,
            }
        }
        s
    }

    /// The fingerprint of the live state this plan was computed from; applying it elsewhere
    /// is refused.
    pub fn from_fingerprint(&self) -> Fingerprint {
        self.from_fingerprint
    }

    /// The version of the live state this plan was computed from.
    pub fn from_version(&self) -> u64 {
        self.from_version
    }

    /// The fingerprint the state has once the plan is applied; `None` for a targeted plan,
    /// which leaves the rest of the desired state out.
    pub fn to_fingerprint(&self) -> Option<Fingerprint> {
        self.to_fingerprint
    }

    /// The resources that change, in diff order.
    pub fn changes(&self) -> &[ResourceChange] {
        &self.changes
    }

    /// The requests, in the order they are applied.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Remarks a reviewer should read (a listener whose routes go down while it is replaced).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn targets(&self) -> &[Address] {
        &self.targets
    }

    pub fn drain_timeout(&self) -> Option<Duration> {
        self.drain_timeout
    }

    /// Sets how long each backend removal may drain before the proxy gives up on it; `None`
    /// uses the proxy's default.
    pub fn set_drain_timeout(&mut self, timeout: Option<Duration>) {
        self.drain_timeout = timeout;
        for step in &mut self.steps {
            if let Change::RemoveBackend { drain_timeout, .. } = &mut step.change {
                *drain_timeout = timeout;
            }
        }
    }
}

/// Plans the changes that turn `live` into `desired`. With `targets`, only the named
/// resources change, with what they depend on (see [`select`]).
pub fn plan(live: &State, desired: &State, targets: &[Address]) -> Plan {
    let names = Names::of(live, desired);
    let mut changes = diff_with(live, desired, &names);
    if !targets.is_empty() {
        let keep = select(&changes, targets);
        changes = changes
            .into_iter()
            .zip(keep)
            .filter_map(|(c, k)| k.then_some(c))
            .collect();
    }
    let mut notes = Vec::new();
    let steps = order(live, desired, &changes, &names, &mut notes);
    Plan {
        from_fingerprint: live.fingerprint(),
        from_version: live.version,
        to_fingerprint: targets.is_empty().then(|| desired.fingerprint()),
        changes,
        steps,
        notes,
        names,
        targets: targets.to_vec(),
        drain_timeout: None,
    }
}

fn add_change(r: &Resource) -> Change {
    match r {
        Resource::Listener(l) => Change::AddListener(l.clone()),
        Resource::Cluster(c) => Change::AddCluster(c.clone()),
        Resource::Backend(b) => Change::AddBackend(b.clone()),
        Resource::Certificate(c) => Change::AddCertificate(c.clone()),
        Resource::Frontend(f) => Change::AddFrontend(f.clone()),
    }
}

fn update_change(r: &Resource) -> Change {
    match r {
        Resource::Listener(l) => Change::UpdateListener(l.clone()),
        Resource::Cluster(c) => Change::UpdateCluster(c.clone()),
        Resource::Backend(b) => Change::UpdateBackend(b.clone()),
        // Only its owner changes: the certificate replaces itself.
        Resource::Certificate(c) => Change::ReplaceCertificate {
            old: c.fingerprint,
            new: c.clone(),
        },
        // Only its owner changes too.
        Resource::Frontend(f) => Change::UpdateFrontend(f.clone()),
    }
}

fn remove_change(r: &Resource) -> Change {
    match r {
        Resource::Listener(l) => Change::RemoveListener(l.address),
        Resource::Cluster(c) => Change::RemoveCluster(c.id.clone()),
        Resource::Backend(b) => Change::RemoveBackend {
            key: b.key.clone(),
            drain_timeout: None,
        },
        Resource::Certificate(c) => Change::RemoveCertificate(c.fingerprint),
        Resource::Frontend(f) => Change::RemoveFrontend(f.clone()),
    }
}

/// Steps collected per phase, plus the phase-8 re-creations that run before plain removals.
#[derive(Default)]
struct Buckets {
    phases: [Vec<Step>; 10],
    recreate_backends: Vec<Step>,
    /// Phase-5 adds with the position the frontend has in the desired state, so the newest
    /// desired route is also added last (the newest matching route wins).
    frontend_adds: Vec<(u64, Step)>,
}

impl Buckets {
    fn push(&mut self, step: Step) {
        self.phases[usize::from(step.phase.number() - 1)].push(step);
    }

    fn into_steps(mut self) -> Vec<Step> {
        self.frontend_adds.sort_by_key(|(seq, _)| *seq);
        let mut out = Vec::new();
        for (i, bucket) in self.phases.into_iter().enumerate() {
            let phase = Phase::ALL[i];
            if phase == Phase::FrontendsAdd {
                out.extend(self.frontend_adds.drain(..).map(|(_, s)| s));
            }
            if phase == Phase::BackendsRemove {
                out.append(&mut self.recreate_backends);
            }
            out.extend(bucket);
        }
        out
    }
}

fn step(phase: Phase, op: Op, address: &Address, change: Change, part_of: Action) -> Step {
    Step {
        phase,
        op,
        address: address.clone(),
        change,
        part_of,
        note: None,
    }
}

/// Orders resource changes into steps.
fn order(
    live: &State,
    desired: &State,
    changes: &[ResourceChange],
    names: &Names,
    notes: &mut Vec<String>,
) -> Vec<Step> {
    let replaced_listeners: BTreeSet<SocketAddr> = changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .filter_map(|c| match &c.after {
            Some(Resource::Listener(l)) => Some(l.address),
            _ => None,
        })
        .collect();
    // Clusters that gain a backend in this plan: they are not left empty while one of their
    // backends is re-created.
    let gaining: BTreeSet<&ClusterId> = changes
        .iter()
        .filter(|c| c.action == Action::Add)
        .filter_map(|c| match &c.after {
            Some(Resource::Backend(b)) => Some(&b.key.cluster),
            _ => None,
        })
        .collect();

    let mut buckets = Buckets::default();
    for change in changes {
        let kind = change.address.kind;
        let address = &change.address;
        match (change.action, &change.before, &change.after) {
            (Action::Add, _, Some(after)) => {
                let s = step(
                    phase_of(kind, Op::Add),
                    Op::Add,
                    address,
                    add_change(after),
                    Action::Add,
                );
                match after {
                    Resource::Frontend(f) => {
                        let seq = desired.frontends.get(f).copied().unwrap_or(u64::MAX);
                        buckets.frontend_adds.push((seq, s));
                    }
                    _ => buckets.push(s),
                }
            }
            (Action::Update, _, Some(after)) => buckets.push(step(
                phase_of(kind, Op::Update),
                Op::Update,
                address,
                update_change(after),
                Action::Update,
            )),
            (Action::Remove, Some(before), _) => {
                // Frontends of a re-created listener go with it, in phase 1.
                if let Resource::Frontend(f) = before {
                    if replaced_listeners.contains(&f.listener) {
                        continue;
                    }
                }
                buckets.push(step(
                    phase_of(kind, Op::Remove),
                    Op::Remove,
                    address,
                    remove_change(before),
                    Action::Remove,
                ));
            }
            (Action::Replace, Some(before), Some(after)) => match (before, after) {
                (Resource::Listener(old), Resource::Listener(new)) => {
                    recreate_listener(live, names, address, old, new, &mut buckets, notes)
                }
                (Resource::Backend(old), Resource::Backend(new)) => {
                    let others = live.backends_of(&old.key.cluster).any(|b| b.key != old.key)
                        || gaining.contains(&old.key.cluster);
                    recreate_backend(live, desired, address, old, new, others, &mut buckets)
                }
                // Any other kind replaced: add the new value, remove the old one later.
                (before, after) => {
                    buckets.push(step(
                        phase_of(kind, Op::Add),
                        Op::Add,
                        address,
                        add_change(after),
                        Action::Replace,
                    ));
                    buckets.push(step(
                        phase_of(kind, Op::Remove),
                        Op::Remove,
                        address,
                        remove_change(before),
                        Action::Replace,
                    ));
                }
            },
            // A change without the values its action needs cannot come out of the diff.
            _ => {}
        }
    }
    buckets.into_steps()
}

/// A listener whose protocol changes: its frontends, then itself, are removed and it is added
/// again; its new frontends are added in phase 5 with every other route.
fn recreate_listener(
    live: &State,
    names: &Names,
    address: &Address,
    old: &weir_schema::Listener,
    new: &weir_schema::Listener,
    buckets: &mut Buckets,
    notes: &mut Vec<String>,
) {
    let phase = recreate_phase(Kind::Listener);
    let frontends = frontends_on(live, old.address);
    for f in &frontends {
        let mut s = step(
            phase,
            Op::Remove,
            &names.frontend(f),
            Change::RemoveFrontend((*f).clone()),
            Action::Remove,
        );
        s.note = Some(format!("before {address} is re-created"));
        buckets.push(s);
    }
    buckets.push(step(
        phase,
        Op::Remove,
        address,
        Change::RemoveListener(old.address),
        Action::Replace,
    ));
    buckets.push(step(
        phase,
        Op::Add,
        address,
        Change::AddListener(new.clone()),
        Action::Replace,
    ));
    notes.push(format!(
        "{address} ({}) changes protocol {} -> {} and is re-created at the same address: \
         its {} frontend(s) are removed first, and its routes are down until its new \
         frontends are added in phase 5.",
        old.address,
        old.protocol,
        new.protocol,
        frontends.len()
    ));
}

/// The live frontends of one listener (frontends sort by listener first).
fn frontends_on(live: &State, listener: SocketAddr) -> Vec<&Frontend> {
    let first = Frontend {
        listener,
        hostname: None,
        path: String::new(),
        cluster: ClusterId(String::new()),
        certificate: None,
        options: Default::default(),
        owner: None,
    };
    live.frontends
        .range(first..)
        .map(|(f, _)| f)
        .take_while(|f| f.listener == listener)
        .collect()
}

/// A backend whose address changes: drained and re-added in phase 8, with a stand-in when its
/// cluster would otherwise have no backend in between.
fn recreate_backend(
    live: &State,
    desired: &State,
    address: &Address,
    old: &Backend,
    new: &Backend,
    cluster_has_others: bool,
    buckets: &mut Buckets,
) {
    let phase = recreate_phase(Kind::Backend);
    let stand_in = (!cluster_has_others).then(|| {
        let mut n = 1;
        loop {
            let suffix = if n == 1 { String::new() } else { n.to_string() };
            let key = BackendKey {
                cluster: old.key.cluster.clone(),
                id: BackendId(format!("{}~new{suffix}", old.key.id)),
            };
            if !live.backends.contains_key(&key) && !desired.backends.contains_key(&key) {
                break Backend { key, ..new.clone() };
            }
            n += 1;
        }
    });
    let stand_in_address = stand_in
        .as_ref()
        .map(|b| Address::new(Kind::Backend, b.key.to_string()));
    if let (Some(b), Some(a)) = (&stand_in, &stand_in_address) {
        let mut s = step(
            phase_of(Kind::Backend, Op::Add),
            Op::Add,
            a,
            Change::AddBackend(b.clone()),
            Action::Replace,
        );
        s.note = Some(format!(
            "stand-in at the new address while {address} is re-created"
        ));
        buckets.push(s);
    }
    buckets.recreate_backends.push(step(
        phase,
        Op::Remove,
        address,
        Change::RemoveBackend {
            key: old.key.clone(),
            drain_timeout: None,
        },
        Action::Replace,
    ));
    buckets.recreate_backends.push(step(
        phase,
        Op::Add,
        address,
        Change::AddBackend(new.clone()),
        Action::Replace,
    ));
    if let (Some(b), Some(a)) = (stand_in, stand_in_address) {
        let mut s = step(
            phase,
            Op::Remove,
            &a,
            Change::RemoveBackend {
                key: b.key,
                drain_timeout: None,
            },
            Action::Replace,
        );
        s.note = Some(format!("stand-in no longer needed: {address} is back"));
        buckets.recreate_backends.push(s);
    }
}

/// Which changes a targeted plan keeps: those the targets name, and, transitively, what they
/// need. Adding or updating a resource needs what it refers to (a frontend its listener,
/// cluster, certificate and that cluster's backends; a backend its cluster). Removing a
/// resource needs what refers to it removed first (a cluster's backends and frontends, a
/// listener's or certificate's frontends). A re-created listener takes all its frontends.
pub fn select(changes: &[ResourceChange], targets: &[Address]) -> Vec<bool> {
    // Where each resource's change is, by identity.
    let mut listeners: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    let mut clusters: BTreeMap<&ClusterId, usize> = BTreeMap::new();
    let mut certificates: BTreeMap<Fingerprint, usize> = BTreeMap::new();
    let mut backends_of: BTreeMap<&ClusterId, Vec<usize>> = BTreeMap::new();
    let mut frontends_by: BTreeMap<Dep, Vec<usize>> = BTreeMap::new();
    for (i, c) in changes.iter().enumerate() {
        for r in c.before.iter().chain(c.after.iter()) {
            match r {
                Resource::Listener(l) => {
                    listeners.insert(l.address, i);
                }
                Resource::Cluster(cl) => {
                    clusters.insert(&cl.id, i);
                }
                Resource::Certificate(cert) => {
                    certificates.insert(cert.fingerprint, i);
                }
                Resource::Backend(b) => backends_of.entry(&b.key.cluster).or_default().push(i),
                Resource::Frontend(f) => {
                    frontends_by
                        .entry(Dep::Listener(f.listener))
                        .or_default()
                        .push(i);
                    frontends_by
                        .entry(Dep::Cluster(f.cluster.0.clone()))
                        .or_default()
                        .push(i);
                    if let Some(fp) = f.certificate {
                        frontends_by
                            .entry(Dep::Certificate(fp))
                            .or_default()
                            .push(i);
                    }
                }
            }
        }
    }

    let mut keep = vec![false; changes.len()];
    let mut work: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let socket = match c.after.as_ref().or(c.before.as_ref()) {
                Some(Resource::Listener(l)) => Some(l.address),
                _ => None,
            };
            targets.iter().any(|t| t.selects(&c.address, socket))
        })
        .map(|(i, _)| i)
        .collect();
    let empty = Vec::new();
    while let Some(i) = work.pop() {
        if std::mem::replace(&mut keep[i], true) {
            continue;
        }
        let c = &changes[i];
        let mut needs: Vec<usize> = Vec::new();
        let removes = |v: &Vec<usize>| -> Vec<usize> {
            v.iter()
                .copied()
                .filter(|j| changes[*j].before.is_some())
                .collect()
        };
        // A dependency is needed when it is created by the plan (an in-place update of
        // something that exists already is not needed for a reference to it to work).
        let created = |j: &&usize| matches!(changes[**j].action, Action::Add | Action::Replace);
        if let Some(after) = &c.after {
            match after {
                Resource::Frontend(f) => {
                    needs.extend(listeners.get(&f.listener).filter(created));
                    needs.extend(clusters.get(&f.cluster).filter(created));
                    if let Some(fp) = f.certificate {
                        needs.extend(certificates.get(&fp).filter(created));
                    }
                    needs.extend(
                        backends_of
                            .get(&f.cluster)
                            .unwrap_or(&empty)
                            .iter()
                            .filter(created),
                    );
                }
                Resource::Backend(b) => needs.extend(clusters.get(&b.key.cluster).filter(created)),
                Resource::Listener(l) if c.action == Action::Replace => needs.extend(
                    frontends_by
                        .get(&Dep::Listener(l.address))
                        .unwrap_or(&empty),
                ),
                _ => {}
            }
        }
        if c.action == Action::Remove {
            if let Some(before) = &c.before {
                match before {
                    Resource::Listener(l) => needs.extend(removes(
                        frontends_by
                            .get(&Dep::Listener(l.address))
                            .unwrap_or(&empty),
                    )),
                    Resource::Cluster(cl) => {
                        needs.extend(removes(backends_of.get(&cl.id).unwrap_or(&empty)));
                        needs.extend(removes(
                            frontends_by
                                .get(&Dep::Cluster(cl.id.0.clone()))
                                .unwrap_or(&empty),
                        ));
                    }
                    Resource::Certificate(cert) => needs.extend(removes(
                        frontends_by
                            .get(&Dep::Certificate(cert.fingerprint))
                            .unwrap_or(&empty),
                    )),
                    _ => {}
                }
            }
        }
        work.extend(needs.into_iter().filter(|j| !keep[*j]));
    }
    keep
}

/// What a frontend refers to, for the target closure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Dep {
    Listener(SocketAddr),
    Cluster(String),
    Certificate(Fingerprint),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use weir_schema::{Listener, ListenerSettings, Protocol};

    const WEB: &str = "127.0.0.1:18001";

    fn backend(id: &str, port: u16) -> Backend {
        Backend {
            key: BackendKey {
                cluster: ClusterId("shop".into()),
                id: BackendId(id.into()),
            },
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            weight: 100,
            backup: false,
            owner: None,
        }
    }

    /// A listener, the cluster `shop` routed from it, and `backends` in that cluster.
    fn state(backends: &[Backend]) -> State {
        let mut changes = vec![
            Change::AddListener(Listener {
                address: WEB.parse().unwrap(),
                protocol: Protocol::Http,
                name: "web".into(),
                settings: ListenerSettings::default(),
                owner: None,
            }),
            Change::AddCluster(weir_schema::Cluster::new("shop")),
        ];
        changes.extend(backends.iter().cloned().map(Change::AddBackend));
        changes.push(Change::AddFrontend(Frontend {
            listener: WEB.parse().unwrap(),
            hostname: Some("shop.test".into()),
            path: "/".into(),
            cluster: ClusterId("shop".into()),
            certificate: None,
            options: Default::default(),
            owner: None,
        }));
        let mut s = State::new();
        for c in changes {
            s.apply_change(&c, None).unwrap();
        }
        s
    }

    fn drain(b: &Backend) -> Change {
        Change::RemoveBackend {
            key: b.key.clone(),
            drain_timeout: None,
        }
    }

    /// Each step as (phase number, request).
    fn steps(p: &Plan) -> Vec<(u8, Change)> {
        p.steps()
            .iter()
            .map(|s| (s.phase.number(), s.change.clone()))
            .collect()
    }

    /// Applies every step to `live`, checking each; the state reached.
    fn replay(live: &State, p: &Plan) -> State {
        let mut s = live.clone();
        for step in p.steps() {
            s.apply_change(&step.change, None).unwrap();
        }
        s
    }

    #[test]
    fn a_sole_backend_moving_gets_a_stand_in_at_its_new_address() {
        let (old, new) = (backend("blue", 19001), backend("blue", 19002));
        let live = state(std::slice::from_ref(&old));
        let desired = state(std::slice::from_ref(&new));
        let p = plan(&live, &desired, &[]);
        let stand_in = backend("blue~new", 19002);
        assert_eq!(
            steps(&p),
            vec![
                (3, Change::AddBackend(stand_in.clone())),
                (8, drain(&old)),
                (8, Change::AddBackend(new)),
                (8, drain(&stand_in)),
            ]
        );
        assert!(p.steps().iter().all(|s| s.part_of == Action::Replace));
        assert_eq!(replay(&live, &p).fingerprint(), desired.fingerprint());
    }

    #[test]
    fn a_backend_moving_beside_others_needs_no_stand_in() {
        let green = backend("green", 19005);
        let (old, new) = (backend("blue", 19001), backend("blue", 19002));
        let live = state(&[old.clone(), green.clone()]);
        let desired = state(&[new.clone(), green]);
        let p = plan(&live, &desired, &[]);
        assert_eq!(
            steps(&p),
            vec![(8, drain(&old)), (8, Change::AddBackend(new))]
        );
    }

    #[test]
    fn a_backend_moving_while_its_cluster_gains_one_needs_no_stand_in() {
        let green = backend("green", 19005);
        let (old, new) = (backend("blue", 19001), backend("blue", 19002));
        let live = state(std::slice::from_ref(&old));
        let desired = state(&[new.clone(), green.clone()]);
        let p = plan(&live, &desired, &[]);
        assert_eq!(
            steps(&p),
            vec![
                (3, Change::AddBackend(green)),
                (8, drain(&old)),
                (8, Change::AddBackend(new)),
            ]
        );
    }

    #[test]
    fn a_stand_in_takes_a_name_neither_state_uses() {
        // Targeted at `blue`, the plan leaves out the desired `blue~new`, so `blue` is alone
        // while it moves and its stand-in needs a name that is free on both sides.
        let (old, new) = (backend("blue", 19001), backend("blue", 19002));
        let live = state(std::slice::from_ref(&old));
        let desired = state(&[new.clone(), backend("blue~new", 19003)]);
        let target = Address::new(Kind::Backend, "shop/blue");
        let p = plan(&live, &desired, &[target]);
        let stand_in = backend("blue~new2", 19002);
        assert_eq!(
            steps(&p),
            vec![
                (3, Change::AddBackend(stand_in.clone())),
                (8, drain(&old)),
                (8, Change::AddBackend(new)),
                (8, drain(&stand_in)),
            ]
        );
        replay(&live, &p);
    }

    #[test]
    fn an_owner_alone_changes_in_place_in_its_kinds_add_phase() {
        let live = state(&[backend("blue", 19001)]);
        let mut desired = live.clone();
        let owner = Some(weir_schema::Owner("platform".into()));
        let route = desired.frontends_in_order()[0].clone();
        let owned = Frontend {
            owner: owner.clone(),
            ..route
        };
        desired
            .apply_change(&Change::UpdateFrontend(owned.clone()), None)
            .unwrap();
        let p = plan(&live, &desired, &[]);
        assert_eq!(steps(&p), vec![(5, Change::UpdateFrontend(owned))]);
        assert_eq!(p.steps()[0].op, Op::Update);
        assert_eq!(p.steps()[0].part_of, Action::Update);
        let done = replay(&live, &p);
        assert_eq!(done.fingerprint(), desired.fingerprint());
        assert_eq!(done.frontends_in_order()[0].owner, owner);
    }

    fn listener(address: &str, protocol: Protocol) -> Listener {
        Listener {
            address: address.parse().unwrap(),
            protocol,
            name: address.into(),
            settings: ListenerSettings::default(),
            owner: None,
        }
    }

    fn route(listener: &str, host: &str) -> Frontend {
        Frontend {
            listener: listener.parse().unwrap(),
            hostname: Some(host.into()),
            path: "/".into(),
            cluster: ClusterId("shop".into()),
            certificate: None,
            options: Default::default(),
            owner: None,
        }
    }

    #[test]
    fn a_plan_records_where_it_starts_and_where_it_ends() {
        let mut live = state(&[backend("blue", 19001)]);
        live.apply_change(&Change::AddBackend(backend("old", 19009)), None)
            .unwrap();
        let desired = state(&[backend("blue", 19001), backend("new", 19002)]);
        let p = plan(&live, &desired, &[]);
        assert!(!p.is_empty());
        assert_eq!(p.from_version(), live.version);
        assert_eq!(p.from_fingerprint(), live.fingerprint());
        assert_eq!(p.to_fingerprint(), Some(desired.fingerprint()));
        assert_eq!(p.changes().len(), 2, "one add, one remove");
        assert_eq!(p.names(), &Names::of(&live, &desired));
        assert_eq!(p.targets(), &[] as &[Address]);
        assert!(p.notes().is_empty());
        // Targeted: the end state is not the desired one, so there is no end fingerprint.
        let target = Address::new(Kind::Backend, "shop/new");
        let t = plan(&live, &desired, std::slice::from_ref(&target));
        assert_eq!(t.targets(), std::slice::from_ref(&target));
        assert_eq!(t.to_fingerprint(), None);
        assert_eq!(
            steps(&t),
            vec![(3, Change::AddBackend(backend("new", 19002)))]
        );
        // In sync: nothing to do.
        let same = plan(&desired, &desired, &[]);
        assert!(same.is_empty());
        assert!(same.changes().is_empty());
    }

    #[test]
    fn a_removed_app_goes_in_reverse_dependency_order() {
        let blue = backend("blue", 19001);
        let live = state(std::slice::from_ref(&blue));
        let p = plan(&live, &State::new(), &[]);
        let web: SocketAddr = WEB.parse().unwrap();
        assert_eq!(
            steps(&p),
            vec![
                (6, Change::RemoveFrontend(route(WEB, "shop.test"))),
                (8, drain(&blue)),
                (9, Change::RemoveCluster(ClusterId("shop".into()))),
                (10, Change::RemoveListener(web)),
            ]
        );
        assert!(p.steps().iter().all(|s| s.op == Op::Remove));
        assert_eq!(replay(&live, &p).fingerprint(), State::new().fingerprint());
    }

    #[test]
    fn new_routes_are_added_in_their_desired_order_not_by_identity() {
        // The newest matching route wins, so the add order is part of the routing: a desired
        // state that added z before a must end with z older than a.
        let live = state(&[backend("blue", 19001)]);
        let mut desired = live.clone();
        let (z, a) = (route(WEB, "z.test"), route(WEB, "a.test"));
        for f in [&z, &a] {
            desired
                .apply_change(&Change::AddFrontend(f.clone()), None)
                .unwrap();
        }
        let p = plan(&live, &desired, &[]);
        assert_eq!(
            steps(&p),
            vec![(5, Change::AddFrontend(z)), (5, Change::AddFrontend(a))]
        );
        let done = replay(&live, &p);
        assert_eq!(done.frontends_in_order(), desired.frontends_in_order());
    }

    #[test]
    fn a_drain_timeout_reaches_every_drain_and_only_them() {
        let live = state(&[backend("blue", 19001), backend("old", 19009)]);
        let desired = state(&[backend("blue", 19001), backend("new", 19002)]);
        let mut p = plan(&live, &desired, &[]);
        assert_eq!(p.drain_timeout(), None);
        let timeout = Some(Duration::from_secs(7));
        p.set_drain_timeout(timeout);
        assert_eq!(p.drain_timeout(), timeout);
        let drains: Vec<&Step> = p.steps().iter().filter(|s| s.is_drain()).collect();
        assert_eq!(drains.len(), 1);
        assert_eq!(
            drains[0].change,
            Change::RemoveBackend {
                key: backend("old", 19009).key,
                drain_timeout: timeout
            }
        );
        let others: Vec<&Step> = p.steps().iter().filter(|s| !s.is_drain()).collect();
        assert_eq!(
            others.iter().map(|s| &s.change).collect::<Vec<_>>(),
            [&Change::AddBackend(backend("new", 19002))]
        );
    }

    #[test]
    fn a_listener_changing_protocol_takes_only_its_own_frontends_down() {
        // Three listeners; the middle one changes protocol. Frontends sort by listener first,
        // so its routes sit between the other two's.
        const LOW: &str = "127.0.0.1:18000";
        const HIGH: &str = "127.0.0.1:18002";
        let build = |protocol: Protocol, routes: &[Frontend]| {
            let mut s = State::new();
            let mut changes = vec![
                Change::AddListener(listener(LOW, Protocol::Http)),
                Change::AddListener(listener(WEB, protocol)),
                Change::AddListener(listener(HIGH, Protocol::Http)),
                Change::AddCluster(weir_schema::Cluster::new("shop")),
            ];
            changes.extend(routes.iter().cloned().map(Change::AddFrontend));
            for c in changes {
                s.apply_change(&c, None).unwrap();
            }
            s
        };
        let (low, high) = (route(LOW, "low.test"), route(HIGH, "high.test"));
        let (a, b) = (route(WEB, "a.test"), route(WEB, "b.test"));
        let live = build(
            Protocol::Http,
            &[low.clone(), a.clone(), b.clone(), high.clone()],
        );
        let tcp = Frontend {
            hostname: None,
            ..route(WEB, "")
        };
        let desired = build(Protocol::Tcp, &[low, tcp.clone(), high]);
        let p = plan(&live, &desired, &[]);
        assert_eq!(
            steps(&p),
            vec![
                (1, Change::RemoveFrontend(a)),
                (1, Change::RemoveFrontend(b)),
                (1, Change::RemoveListener(WEB.parse().unwrap())),
                (1, Change::AddListener(listener(WEB, Protocol::Tcp))),
                (5, Change::AddFrontend(tcp)),
            ]
        );
        assert_eq!(p.notes().len(), 1);
        let note = &p.notes()[0];
        assert!(note.contains("changes protocol http -> tcp"), "{note}");
        assert!(
            note.contains("its 2 frontend(s) are removed first"),
            "{note}"
        );
        assert_eq!(
            p.steps()[0].note.as_deref(),
            Some("before listener.127.0.0.1:18001 is re-created")
        );
        assert_eq!(replay(&live, &p).fingerprint(), desired.fingerprint());
    }

    #[test]
    fn operations_and_phases_read_as_words() {
        let ops = [Op::Add, Op::Update, Op::Remove].map(Op::as_str);
        assert_eq!(ops, ["add", "update", "remove"]);
        let titles = Phase::ALL.map(Phase::title);
        assert_eq!(
            titles,
            [
                "listeners add/update",
                "clusters add/update",
                "backends add/update",
                "certificates add",
                "frontends add",
                "frontends remove",
                "certificates remove",
                "backends remove (drain)",
                "clusters remove",
                "listeners remove",
            ]
        );
    }

    #[test]
    fn every_kind_and_operation_has_one_phase() {
        for kind in Kind::ALL {
            for op in [Op::Add, Op::Update, Op::Remove] {
                let found = ORDER.iter().filter(|(k, o, _)| *k == kind && *o == op);
                assert_eq!(found.count(), 1, "{kind:?} {op:?}");
            }
        }
        // Adds run before removes: every add or update phase comes before every remove phase.
        let phases = |remove: bool| {
            ORDER
                .iter()
                .filter(move |(_, o, _)| (*o == Op::Remove) == remove)
                .map(|(_, _, p)| *p)
        };
        assert!(phases(false).max() < phases(true).min());
    }

    #[test]
    fn phases_are_numbered_in_the_order_they_run() {
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            let n = u8::try_from(i + 1).unwrap();
            assert_eq!(phase.number(), n);
            assert_eq!(Phase::from_number(n), Some(phase));
        }
        assert_eq!(Phase::from_number(0), None);
        assert_eq!(Phase::from_number(11), None);
        assert_eq!(Phase::FrontendsAdd.to_string(), "phase 5: frontends add");
    }

    #[test]
    fn a_replacement_counts_as_one_add_and_one_remove() {
        let (old, new) = (backend("blue", 19001), backend("blue", 19002));
        let mut heavy = backend("green", 19005);
        heavy.weight = 300;
        let live = state(&[old, backend("green", 19005), backend("gone", 19006)]);
        let desired = state(&[new, heavy, backend("added", 19007)]);
        let p = plan(&live, &desired, &[]);
        assert_eq!(
            p.summary(),
            Summary {
                add: 2,
                change: 1,
                remove: 2
            }
        );
        assert_eq!(
            p.summary().to_string(),
            "Plan: 2 to add, 1 to change, 2 to remove."
        );
    }
}
