//! The watch loop's brain: one [`Event`] at a time, with the current time passed in.
//!
//! It owns the debouncer and the drift timer and remembers three things between events: the
//! last desired state that loaded (what stays live while the files are broken), the
//! fingerprint the proxy had after the last apply (what drift is measured against), and
//! whether a retry is owed (an apply failed or the proxy was unreachable).

use std::borrow::Cow;
use std::time::Instant;

use weir_schema::desired::{LoadError, LoadErrors};
use weir_schema::{Fingerprint, State};

use crate::owner::{scoped_desired, Scope};

use super::debounce::{is_ignored, Debouncer};
use super::{Config, DesiredSource, Event, OnDrift, Proxy, Report, Trigger};

/// See the module documentation.
#[derive(Debug)]
pub struct WatchLoop<S, P> {
    config: Config,
    source: S,
    proxy: P,
    debouncer: Debouncer,
    next_tick: Option<Instant>,
    /// The last desired state that loaded and validated.
    last_good: Option<State>,
    /// The proxy's fingerprint after our last successful apply (or empty plan).
    applied: Option<Fingerprint>,
    /// The last load failed: the next good load is announced.
    invalid: bool,
    /// An apply failed or the proxy was unreachable: the next tick tries again.
    retry: bool,
    /// In report mode, the drifted fingerprint already printed (printed once, not every tick).
    reported_drift: Option<Fingerprint>,
}

impl<S: DesiredSource, P: Proxy> WatchLoop<S, P> {
    pub fn new(config: Config, source: S, proxy: P) -> WatchLoop<S, P> {
        WatchLoop {
            debouncer: Debouncer::new(config.debounce, config.max_delay),
            config,
            source,
            proxy,
            next_tick: None,
            last_good: None,
            applied: None,
            invalid: false,
            retry: false,
            reported_drift: None,
        }
    }

    /// The first reconcile; also arms the drift timer.
    pub fn start(&mut self, now: Instant) -> Vec<Report> {
        self.next_tick = self.config.drift_interval.map(|i| now + i);
        let mut reports = Vec::new();
        self.reconcile(Trigger::Initial, &mut reports);
        reports
    }

    /// The proxy, for callers that need it after the loop (tests, shutdown).
    pub fn proxy_mut(&mut self) -> &mut P {
        &mut self.proxy
    }

    /// The earliest timer and the event it fires, if any is armed.
    pub fn next_timer(&self) -> Option<(Instant, Event)> {
        let debounce = self
            .debouncer
            .deadline()
            .map(|at| (at, Event::DebounceElapsed));
        let tick = self.next_tick.map(|at| (at, Event::Tick));
        match (debounce, tick) {
            (Some(d), Some(t)) => Some(if d.0 <= t.0 { d } else { t }),
            (d, t) => d.or(t),
        }
    }

    /// Handles one event seen at `now` and says what happened.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Report> {
        let mut reports = Vec::new();
        match event {
            Event::FilesChanged(paths) => {
                let relevant = paths
                    .iter()
                    .filter(|p| !is_ignored(&self.config.root, p))
                    .count();
                for _ in 0..relevant {
                    self.debouncer.changed(now);
                }
            }
            Event::Rescan(reason) => {
                reports.push(Report::Rescan { reason });
                self.debouncer.rescan(now);
            }
            Event::DebounceElapsed => {
                if let Some(batch) = self.debouncer.poll(now) {
                    let trigger = Trigger::Files {
                        events: batch.events,
                        rescan: batch.rescan,
                    };
                    self.reconcile(trigger, &mut reports);
                }
            }
            Event::Tick => {
                if self.next_tick.is_some_and(|at| now >= at) {
                    self.next_tick = self.config.drift_interval.map(|i| now + i);
                    if self.retry {
                        self.reconcile(Trigger::Retry, &mut reports);
                    } else {
                        self.check_drift(&mut reports);
                    }
                }
            }
            // The driver stops before handing this over; nothing to do if it arrives anyway.
            Event::Stop => {}
        }
        reports
    }

    /// Loads the desired files and, if they are good, makes the proxy match them.
    fn reconcile(&mut self, trigger: Trigger, reports: &mut Vec<Report>) {
        let loaded = if let Some(scope) = &self.config.scope {
            // The files may name another owner's resources: they load against the live state,
            // and are checked against the scope at once, so a refusal reads like a load error.
            let Some(live) = reached(self.proxy.state(), &mut self.retry, reports) else {
                return;
            };
            self.source.load_against(&live).and_then(|files| {
                match scoped(&live, &files, Some(scope)) {
                    Ok(_) => Ok(files),
                    Err(errors) => Err(errors),
                }
            })
        } else {
            self.source.load()
        };
        match loaded {
            Ok(desired) => {
                if std::mem::take(&mut self.invalid) {
                    reports.push(Report::Valid);
                }
                self.last_good = Some(desired);
            }
            Err(errors) => {
                self.invalid = true;
                reports.push(Report::Invalid { errors });
                // The last good state stays live; a pending retry of it still happens on the
                // next tick.
                return;
            }
        }
        self.apply_last_good(trigger, reports);
    }

    /// Plans from the live state to the last good desired state and applies it.
    fn apply_last_good(&mut self, trigger: Trigger, reports: &mut Vec<Report>) {
        let Some(desired) = &self.last_good else {
            return;
        };
        let Some(live) = reached(self.proxy.state(), &mut self.retry, reports) else {
            return;
        };
        let desired = match scoped(&live, desired, self.config.scope.as_ref()) {
            Ok(desired) => desired,
            Err(errors) => {
                self.invalid = true;
                reports.push(Report::Invalid { errors });
                return;
            }
        };
        let planned = self.proxy.plan(&live, &desired);
        let target = desired.fingerprint();
        if planned.is_empty {
            self.retry = false;
            self.applied = Some(live.fingerprint());
            reports.push(Report::Unchanged { trigger });
            return;
        }
        let started = Instant::now();
        match self.proxy.apply(&planned.plan) {
            Ok(()) => {
                self.retry = false;
                self.applied = Some(target);
                self.reported_drift = None;
                reports.push(Report::Applied {
                    trigger,
                    summary: planned.summary,
                    text: planned.text,
                    duration: started.elapsed(),
                });
            }
            Err(failure) => {
                self.retry = true;
                reports.push(Report::ApplyFailed {
                    trigger,
                    summary: planned.summary,
                    failure,
                });
            }
        }
    }

    /// Compares the live fingerprint with the one after the last apply.
    fn check_drift(&mut self, reports: &mut Vec<Report>) {
        let (Some(applied), Some(desired)) = (self.applied, &self.last_good) else {
            return;
        };
        let Some(live_fp) = reached(self.proxy.fingerprint(), &mut self.retry, reports) else {
            return;
        };
        if live_fp == applied {
            self.reported_drift = None;
            return;
        }
        let correcting = self.config.on_drift == OnDrift::Correct;
        if !correcting && self.reported_drift == Some(live_fp) {
            return;
        }
        let Some(live) = reached(self.proxy.state(), &mut self.retry, reports) else {
            return;
        };
        let desired = match scoped(&live, desired, self.config.scope.as_ref()) {
            Ok(desired) => desired,
            Err(errors) => {
                reports.push(Report::Invalid { errors });
                return;
            }
        };
        let planned = self.proxy.plan(&live, &desired);
        if planned.is_empty {
            // Same content under another fingerprint (nothing a plan would change): adopt it.
            self.applied = Some(live_fp);
            return;
        }
        reports.push(Report::Drift {
            text: planned.text,
            correcting,
        });
        if correcting {
            self.apply_last_good(Trigger::Drift, reports);
        } else {
            self.reported_drift = Some(live_fp);
        }
    }
}

/// What the loop plans to from `live`: the files themselves, or with a scope the scoped desired
/// state, whose refusal (another owner's resource touched) is reported like a load error.
fn scoped<'a>(
    live: &State,
    files: &'a State,
    scope: Option<&Scope>,
) -> Result<Cow<'a, State>, LoadErrors> {
    let Some(scope) = scope else {
        return Ok(Cow::Borrowed(files));
    };
    scoped_desired(live, files, scope)
        .map(Cow::Owned)
        .map_err(|e| {
            LoadErrors(vec![LoadError {
                location: None,
                field: None,
                message: e.to_string(),
            }])
        })
}

/// The value of an answer from the proxy; an unreachable proxy is reported and the work it
/// blocked is retried at the next tick.
fn reached<T>(answer: Result<T, String>, retry: &mut bool, reports: &mut Vec<Report>) -> Option<T> {
    match answer {
        Ok(value) => Some(value),
        Err(error) => {
            *retry = true;
            reports.push(Report::Unreachable { error });
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;

    use weir_schema::desired::{LoadError, LoadErrors, Location};
    use weir_schema::{Change, Cluster, ClusterId};

    use super::super::{ApplyFailure, Planned};
    use super::*;
    use std::time::Duration;

    const ROOT: &str = "/srv/routes";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn state_with_clusters(ids: &[&str]) -> State {
        let mut s = State::new();
        for id in ids {
            s.apply_change(&Change::AddCluster(Cluster::new(id)), None)
                .expect("valid");
        }
        s
    }

    /// The "files": what the next load returns.
    type Files = Rc<RefCell<Result<State, LoadErrors>>>;

    struct FakeSource(Files);
    impl DesiredSource for FakeSource {
        fn load(&mut self) -> Result<State, LoadErrors> {
            self.0.borrow().clone()
        }
    }

    /// An in-memory proxy: a plan is "the desired state", applying it replaces the live one.
    #[derive(Default)]
    struct FakeProxy {
        live: State,
        applies: usize,
        fail_next: bool,
        down: bool,
    }
    impl Proxy for FakeProxy {
        type Plan = State;
        fn fingerprint(&mut self) -> Result<Fingerprint, String> {
            if self.down {
                return Err("down".into());
            }
            Ok(self.live.fingerprint())
        }
        fn state(&mut self) -> Result<State, String> {
            if self.down {
                return Err("down".into());
            }
            Ok(self.live.clone())
        }
        fn plan(&self, live: &State, desired: &State) -> Planned<State> {
            let is_empty = live.fingerprint() == desired.fingerprint();
            Planned {
                plan: desired.clone(),
                is_empty,
                summary: format!("Plan: {} clusters.", desired.clusters.len()),
                text: format!(
                    "{:?} -> {:?}",
                    live.clusters.keys(),
                    desired.clusters.keys()
                ),
            }
        }
        fn apply(&mut self, plan: &State) -> Result<(), ApplyFailure> {
            if std::mem::take(&mut self.fail_next) {
                return Err(ApplyFailure {
                    message: "step 1 failed".into(),
                    rolled_back: true,
                });
            }
            self.applies += 1;
            self.live = plan.clone();
            Ok(())
        }
    }

    fn config(on_drift: OnDrift) -> Config {
        Config {
            root: PathBuf::from(ROOT),
            debounce: ms(200),
            max_delay: ms(2000),
            drift_interval: Some(ms(10_000)),
            on_drift,
            scope: None,
        }
    }

    fn setup(on_drift: OnDrift, clusters: &[&str]) -> (WatchLoop<FakeSource, FakeProxy>, Files) {
        let files: Files = Rc::new(RefCell::new(Ok(state_with_clusters(clusters))));
        let w = WatchLoop::new(
            config(on_drift),
            FakeSource(files.clone()),
            FakeProxy::default(),
        );
        (w, files)
    }

    fn changed(name: &str) -> Event {
        Event::FilesChanged(vec![Path::new(ROOT).join(name)])
    }

    /// Feeds events at the given offsets, then fires every timer due up to `until`.
    fn drive(
        w: &mut WatchLoop<FakeSource, FakeProxy>,
        t0: Instant,
        events: Vec<(u64, Event)>,
        until: u64,
    ) -> Vec<Report> {
        let mut reports = Vec::new();
        let mut events = events.into_iter().peekable();
        loop {
            let next_event_at = events.peek().map(|(at, _)| t0 + ms(*at));
            let timer = w.next_timer().filter(|(at, _)| *at <= t0 + ms(until));
            match (next_event_at, timer) {
                (Some(e), Some((t, _))) if t < e => {
                    let (at, ev) = w.next_timer().expect("timer");
                    reports.extend(w.handle(ev, at));
                }
                (Some(e), _) => {
                    let (_, ev) = events.next().expect("event");
                    reports.extend(w.handle(ev, e));
                }
                (None, Some((at, ev))) => reports.extend(w.handle(ev, at)),
                (None, None) => return reports,
            }
        }
    }

    fn applied(reports: &[Report]) -> usize {
        reports
            .iter()
            .filter(|r| matches!(r, Report::Applied { .. }))
            .count()
    }

    fn load_error() -> LoadErrors {
        LoadErrors(vec![LoadError {
            location: Some(Location {
                file: PathBuf::from("/srv/routes/shop.yaml"),
                line: 3,
                column: 7,
            }),
            field: Some("clusters[0].id".into()),
            message: "expected a string".into(),
        }])
    }

    #[test]
    fn a_scoped_watch_keeps_other_owners_resources_and_reports_a_refusal() {
        let owned = |id: &str, owner: &str| Cluster {
            owner: Some(weir_schema::Owner(owner.into())),
            ..Cluster::new(id)
        };
        let mut live = State::new();
        live.apply_change(&Change::AddCluster(owned("base", "platform")), None)
            .unwrap();
        let files: Files = Rc::new(RefCell::new(Ok(state_with_clusters(&["app"]))));
        let mut cfg = config(OnDrift::Correct);
        cfg.scope = Some(Scope {
            owner: weir_schema::Owner("team".into()),
            adopt: false,
        });
        let proxy = FakeProxy {
            live,
            ..FakeProxy::default()
        };
        let mut w = WatchLoop::new(cfg, FakeSource(files.clone()), proxy);
        let t0 = Instant::now();
        assert_eq!(applied(&w.start(t0)), 1);
        let live = &w.proxy_mut().live;
        assert_eq!(
            live.clusters[&ClusterId("base".into())],
            owned("base", "platform")
        );
        assert_eq!(
            live.clusters[&ClusterId("app".into())],
            owned("app", "team")
        );

        // The team's files now change the platform's cluster: refused, nothing applied.
        let mut tuned = Cluster::new("base");
        tuned.connect_timeout = Some(ms(500));
        let mut next = state_with_clusters(&["app"]);
        next.apply_change(&Change::AddCluster(tuned), None).unwrap();
        *files.borrow_mut() = Ok(next);
        let reports = drive(&mut w, t0, vec![(0, changed("base.yaml"))], 1_000);
        assert_eq!(applied(&reports), 0);
        let refused = reports.iter().find_map(|r| match r {
            Report::Invalid { errors } => Some(errors.to_string()),
            _ => None,
        });
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("owned by platform")),
            "{reports:?}"
        );
        assert_eq!(
            w.proxy_mut().live.clusters[&ClusterId("base".into())],
            owned("base", "platform")
        );
    }

    #[test]
    fn start_applies_the_desired_state() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let reports = w.start(Instant::now());
        assert_eq!(applied(&reports), 1);
        assert!(matches!(
            reports[0],
            Report::Applied {
                trigger: Trigger::Initial,
                ..
            }
        ));
        assert_eq!(w.proxy.live.clusters.len(), 1);
    }

    #[test]
    fn a_burst_of_changes_becomes_one_apply() {
        let (mut w, files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        *files.borrow_mut() = Ok(state_with_clusters(&["shop", "blog", "wiki"]));
        // A git checkout: many files within 30 ms, plus editor noise.
        let events = (0..30)
            .map(|i| (1000 + i, changed(&format!("app{i}.yaml"))))
            .chain([
                (1031, changed(".app1.yaml.swp")),
                (1032, changed("app1.yaml~")),
            ])
            .collect();
        let reports = drive(&mut w, t0, events, 5000);
        assert_eq!(applied(&reports), 1, "{reports:?}");
        match &reports[0] {
            Report::Applied { trigger, .. } => assert_eq!(
                *trigger,
                Trigger::Files {
                    events: 30,
                    rescan: false
                }
            ),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(w.proxy.live.clusters.len(), 3);
        assert_eq!(w.proxy.applies, 2);
    }

    #[test]
    fn only_noise_triggers_nothing() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        let events = vec![
            (100, changed(".shop.yaml.swp")),
            (101, changed("4913")),
            (102, changed(".git/index")),
        ];
        let reports = drive(&mut w, t0, events, 5000);
        assert!(reports.is_empty(), "{reports:?}");
        assert!(!w.debouncer.is_pending());
    }

    #[test]
    fn an_unchanged_reload_is_reported_as_unchanged_only() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        let reports = drive(&mut w, t0, vec![(100, changed("shop.yaml"))], 1000);
        assert!(
            matches!(reports.as_slice(), [Report::Unchanged { .. }]),
            "{reports:?}"
        );
        assert_eq!(w.proxy.applies, 1);
    }

    #[test]
    fn a_broken_file_applies_nothing_until_fixed() {
        let (mut w, files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        *files.borrow_mut() = Err(load_error());
        let reports = drive(&mut w, t0, vec![(100, changed("shop.yaml"))], 1000);
        match reports.as_slice() {
            [Report::Invalid { errors }] => {
                assert!(errors
                    .to_string()
                    .starts_with("/srv/routes/shop.yaml:3:7: "))
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(w.proxy.applies, 1);
        assert_eq!(
            w.proxy.live.clusters.len(),
            1,
            "the last good state stays live"
        );

        *files.borrow_mut() = Ok(state_with_clusters(&["shop", "blog"]));
        let reports = drive(&mut w, t0, vec![(1100, changed("shop.yaml"))], 2000);
        assert!(matches!(reports[0], Report::Valid), "{reports:?}");
        assert_eq!(applied(&reports), 1);
        assert_eq!(w.proxy.live.clusters.len(), 2);
    }

    #[test]
    fn a_rescan_reloads_everything() {
        let (mut w, files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        *files.borrow_mut() = Ok(state_with_clusters(&["blog"]));
        let reports = drive(
            &mut w,
            t0,
            vec![(100, Event::Rescan("overflow".into()))],
            1000,
        );
        assert!(matches!(reports[0], Report::Rescan { .. }));
        assert!(matches!(
            reports[1],
            Report::Applied {
                trigger: Trigger::Files { rescan: true, .. },
                ..
            }
        ));
    }

    #[test]
    fn drift_is_corrected() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        // Someone adds a cluster by hand.
        w.proxy.live = state_with_clusters(&["shop", "rogue"]);
        let reports = drive(&mut w, t0, vec![], 10_000);
        match reports.as_slice() {
            [Report::Drift {
                text,
                correcting: true,
            }, Report::Applied {
                trigger: Trigger::Drift,
                ..
            }] => assert!(text.contains("rogue")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(w.proxy.live.clusters.len(), 1);
        // The next tick finds nothing to do.
        assert!(drive(&mut w, t0, vec![], 20_000).is_empty());
    }

    #[test]
    fn drift_is_only_reported_once_in_report_mode() {
        let (mut w, _files) = setup(OnDrift::Report, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        w.proxy.live = state_with_clusters(&["shop", "rogue"]);
        let reports = drive(&mut w, t0, vec![], 30_000);
        assert!(
            matches!(
                reports.as_slice(),
                [Report::Drift {
                    correcting: false,
                    ..
                }]
            ),
            "{reports:?}"
        );
        assert_eq!(
            w.proxy.live.clusters.len(),
            2,
            "report mode changes nothing"
        );
        assert_eq!(w.proxy.applies, 1);
    }

    #[test]
    fn a_failed_apply_is_retried_on_the_next_tick() {
        let (mut w, files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        w.proxy.fail_next = true;
        *files.borrow_mut() = Ok(state_with_clusters(&["blog"]));
        let reports = drive(&mut w, t0, vec![(100, changed("shop.yaml"))], 1000);
        assert!(
            matches!(reports.as_slice(), [Report::ApplyFailed { .. }]),
            "{reports:?}"
        );
        let reports = drive(&mut w, t0, vec![], 10_000);
        assert!(
            matches!(
                reports.as_slice(),
                [Report::Applied {
                    trigger: Trigger::Retry,
                    ..
                }]
            ),
            "{reports:?}"
        );
        assert!(w
            .proxy
            .live
            .clusters
            .contains_key(&ClusterId("blog".into())));
    }

    #[test]
    fn an_unreachable_proxy_is_retried() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.proxy.down = true;
        assert!(matches!(
            w.start(t0).as_slice(),
            [Report::Unreachable { .. }]
        ));
        w.proxy.down = false;
        let reports = drive(&mut w, t0, vec![], 10_000);
        assert_eq!(applied(&reports), 1, "{reports:?}");
    }

    #[test]
    fn the_next_timer_is_the_earliest() {
        let (mut w, _files) = setup(OnDrift::Correct, &["shop"]);
        let t0 = Instant::now();
        w.start(t0);
        assert_eq!(w.next_timer(), Some((t0 + ms(10_000), Event::Tick)));
        w.handle(changed("a.yaml"), t0 + ms(50));
        assert_eq!(w.next_timer(), Some((t0 + ms(250), Event::DebounceElapsed)));
    }
}
