//! Routing: which cluster serves a request, from its listener, Host and path. Sans-io.
//!
//! Lookup cost does not grow with the number of routes: per listener, hostnames sit in two hash
//! maps (exact names, and wildcard suffixes keyed by the part after `*.`), and per hostname the
//! path prefixes sit in a hash map probed once per distinct prefix *length*, longest first.
//! A request therefore costs one hash probe for its host (plus one per label for wildcards)
//! and one per distinct prefix length of that host, whether 1 or 100,000 routes are loaded.
//!
//! Rules (DESIGN.md): exact hosts beat wildcards; a wildcard `*.example.com` matches any name
//! ending in `.example.com` (any depth, as nginx does; the longest matching suffix wins) but not
//! `example.com` itself; the port of the Host header is ignored; the longest path prefix wins;
//! among equal routes the newest (highest sequence number) wins.
//!
//! The maps hash with foldhash rather than std's SipHash: SipHash cost more per request than
//! the rest of routing. Flooding a map with colliding keys needs control of its keys, and here
//! only the operator's configuration adds any; requests only look up. foldhash is still seeded
//! per process.

use foldhash::{HashMap, HashMapExt};
use std::net::SocketAddr;
use std::rc::Rc;

use weir_schema::model::FrontendOptions;
use weir_schema::state::FrontendSeq;

/// How a route answers besides picking its target: a frontend's options as the worker uses
/// them. Kept next to the target, so a lookup yields both without allocating; the HSTS value is
/// shared with every exchange on the route (an `Rc` clone, not a copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteOptions {
    /// Answer `301` to `https://…` instead of forwarding.
    pub redirect_https: bool,
    /// The `Strict-Transport-Security` value for every answer on the route.
    pub hsts: Option<Rc<str>>,
}

impl RouteOptions {
    pub fn new(options: &FrontendOptions) -> RouteOptions {
        RouteOptions {
            redirect_https: options.redirect_https,
            hsts: options.hsts.as_deref().map(Rc::from),
        }
    }
}

/// One route of a [`RouteSet`].
#[derive(Debug, Clone)]
struct Entry<T> {
    seq: FrontendSeq,
    target: T,
    options: RouteOptions,
}

/// The routes that share one (host, path): several may exist (different clusters, or a newer
/// route added before an older one is removed); the newest wins.
#[derive(Debug, Clone)]
struct RouteSet<T> {
    entries: Vec<Entry<T>>,
}

impl<T: Copy + PartialEq> RouteSet<T> {
    fn best(&self) -> Option<&Entry<T>> {
        self.entries.iter().max_by_key(|e| e.seq)
    }

    /// Removes the route with this target and these options (two frontends may differ only
    /// in their options).
    fn remove(&mut self, target: T, options: &RouteOptions) {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.target == target && e.options == *options)
        {
            self.entries.swap_remove(i);
        }
    }
}

/// Path prefixes of one host.
#[derive(Debug, Clone)]
struct PathTable<T> {
    by_path: HashMap<Box<str>, RouteSet<T>>,
    /// Distinct prefix lengths present, longest first.
    lengths: Vec<usize>,
}

impl<T: Copy + PartialEq> PathTable<T> {
    fn new() -> Self {
        PathTable {
            by_path: HashMap::new(),
            lengths: Vec::new(),
        }
    }

    fn insert(&mut self, path: &str, entry: Entry<T>) {
        let set = self.by_path.entry(path.into()).or_insert_with(|| RouteSet {
            entries: Vec::new(),
        });
        set.entries.push(entry);
        if let Err(at) = self.lengths.binary_search_by(|l| path.len().cmp(l)) {
            self.lengths.insert(at, path.len());
        }
    }

    /// Removes one route; returns whether the table is now empty.
    fn remove(&mut self, path: &str, target: T, options: &RouteOptions) -> bool {
        if let Some(set) = self.by_path.get_mut(path) {
            set.remove(target, options);
            if set.entries.is_empty() {
                self.by_path.remove(path);
                if !self.by_path.keys().any(|p| p.len() == path.len()) {
                    self.lengths.retain(|l| *l != path.len());
                }
            }
        }
        self.by_path.is_empty()
    }

    fn lookup(&self, path: &str) -> Option<&Entry<T>> {
        self.lengths.iter().find_map(|&len| {
            let prefix = path.get(..len)?;
            self.by_path.get(prefix)?.best()
        })
    }
}

/// The routes of one listener.
#[derive(Debug, Clone)]
struct ListenerRoutes<T> {
    exact: HashMap<Box<str>, PathTable<T>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<Box<str>, PathTable<T>>,
    /// TCP listeners: routes without host or path.
    tcp: RouteSet<T>,
}

impl<T> Default for ListenerRoutes<T> {
    fn default() -> Self {
        ListenerRoutes {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            tcp: RouteSet {
                entries: Vec::new(),
            },
        }
    }
}

/// Every route of every listener, to a target `T` (the worker uses a cluster's slab key).
#[derive(Debug, Clone)]
pub struct Router<T> {
    listeners: HashMap<SocketAddr, ListenerRoutes<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            listeners: HashMap::new(),
        }
    }
}

impl<T: Copy + PartialEq> Router<T> {
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a route. `hostname` is normalised (lowercase) as the schema keeps it; `None` is a
    /// TCP route.
    pub fn insert(
        &mut self,
        listener: SocketAddr,
        hostname: Option<&str>,
        path: &str,
        seq: FrontendSeq,
        target: T,
        options: RouteOptions,
    ) {
        let routes = self.listeners.entry(listener).or_default();
        let entry = Entry {
            seq,
            target,
            options,
        };
        match hostname {
            None => routes.tcp.entries.push(entry),
            Some(host) => {
                let (map, key) = match host.strip_prefix("*.") {
                    Some(suffix) => (&mut routes.wildcard, suffix),
                    None => (&mut routes.exact, host),
                };
                map.entry(key.into())
                    .or_insert_with(PathTable::new)
                    .insert(path, entry);
            }
        }
    }

    /// Removes the route added with these values.
    pub fn remove(
        &mut self,
        listener: SocketAddr,
        hostname: Option<&str>,
        path: &str,
        target: T,
        options: &RouteOptions,
    ) {
        let Some(routes) = self.listeners.get_mut(&listener) else {
            return;
        };
        match hostname {
            None => routes.tcp.remove(target, options),
            Some(host) => {
                let (map, key) = match host.strip_prefix("*.") {
                    Some(suffix) => (&mut routes.wildcard, suffix),
                    None => (&mut routes.exact, host),
                };
                if map
                    .get_mut(key)
                    .is_some_and(|t| t.remove(path, target, options))
                {
                    map.remove(key);
                }
            }
        }
        if routes.exact.is_empty() && routes.wildcard.is_empty() && routes.tcp.entries.is_empty() {
            self.listeners.remove(&listener);
        }
    }

    /// The target for an HTTP request, with its route's options. `host` must already be
    /// normalised by [`normalize_host`], and `path` by
    /// [`routing_path`](crate::worker::http::path::routing_path): prefixes are matched against
    /// the whole string given.
    pub fn lookup(
        &self,
        listener: SocketAddr,
        host: &str,
        path: &str,
    ) -> Option<(T, &RouteOptions)> {
        self.lookup_entry(listener, host, path)
            .map(|e| (e.target, &e.options))
    }

    fn lookup_entry(&self, listener: SocketAddr, host: &str, path: &str) -> Option<&Entry<T>> {
        let routes = self.listeners.get(&listener)?;
        if let Some(found) = routes.exact.get(host).and_then(|t| t.lookup(path)) {
            return Some(found);
        }
        if routes.wildcard.is_empty() {
            return None;
        }
        // Longest suffix first: "a.b.example.com" tries "b.example.com", then "example.com"...
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(found) = routes.wildcard.get(rest).and_then(|t| t.lookup(path)) {
                return Some(found);
            }
        }
        None
    }

    /// Whether any route uses `listener`.
    pub fn has_routes(&self, listener: SocketAddr) -> bool {
        self.listeners.contains_key(&listener)
    }

    /// The target of a TCP listener.
    pub fn lookup_tcp(&self, listener: SocketAddr) -> Option<T> {
        self.listeners.get(&listener)?.tcp.best().map(|e| e.target)
    }
}

/// Lowercases a Host header value into `out` without its port or trailing dot, so it can be
/// looked up without allocating. `None` if it is not a plausible host (the caller answers 400).
pub fn normalize_host<'a>(raw: &[u8], out: &'a mut [u8; 256]) -> Option<&'a str> {
    let host = if raw.first() == Some(&b'[') {
        // An IPv6 literal keeps its brackets; only a port after `]` is dropped.
        let close = raw.iter().position(|&b| b == b']')?;
        match &raw[close + 1..] {
            [] => &raw[..=close],
            [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => &raw[..=close],
            _ => return None,
        }
    } else {
        match raw.iter().position(|&b| b == b':') {
            Some(colon) if raw[colon + 1..].iter().all(u8::is_ascii_digit) => &raw[..colon],
            Some(_) => return None,
            None => raw,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > out.len() {
        return None;
    }
    // Through a table and without early exit: this runs for every request.
    let mut bad = false;
    for (o, &b) in out.iter_mut().zip(host) {
        let lower = HOST_BYTES[usize::from(b)];
        bad |= lower == 0;
        *o = lower;
    }
    if bad {
        return None;
    }
    std::str::from_utf8(&out[..host.len()]).ok()
}

/// Each byte a Host value may hold, lowercased; 0 for the others.
const HOST_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':') {
            table[i] = b.to_ascii_lowercase();
        }
        i += 1;
    }
    table
};

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn l() -> SocketAddr {
        "127.0.0.1:8080".parse().unwrap()
    }

    fn target(r: &Router<usize>, host: &str, path: &str) -> Option<usize> {
        r.lookup(l(), host, path).map(|(t, _)| t)
    }

    #[test]
    fn exact_wildcard_and_prefix() {
        let mut r = Router::new();
        r.insert(
            l(),
            Some("shop.example.com"),
            "/",
            0,
            1,
            RouteOptions::default(),
        );
        r.insert(
            l(),
            Some("shop.example.com"),
            "/api",
            1,
            2,
            RouteOptions::default(),
        );
        r.insert(
            l(),
            Some("*.example.com"),
            "/",
            2,
            3,
            RouteOptions::default(),
        );
        r.insert(
            l(),
            Some("*.eu.example.com"),
            "/",
            3,
            4,
            RouteOptions::default(),
        );
        assert_eq!(target(&r, "shop.example.com", "/"), Some(1));
        assert_eq!(target(&r, "shop.example.com", "/api/x"), Some(2));
        assert_eq!(target(&r, "shop.example.com", "/ap"), Some(1));
        assert_eq!(target(&r, "blog.example.com", "/api"), Some(3));
        assert_eq!(target(&r, "a.b.example.com", "/"), Some(3));
        assert_eq!(target(&r, "x.eu.example.com", "/"), Some(4));
        assert_eq!(target(&r, "example.com", "/"), None);
        assert_eq!(target(&r, "other.org", "/"), None);
        let other: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        assert_eq!(r.lookup(other, "shop.example.com", "/"), None);
    }

    #[test]
    fn newest_wins_and_removal_falls_back() {
        let mut r = Router::new();
        r.insert(l(), Some("a.test"), "/", 5, 1, RouteOptions::default());
        r.insert(l(), Some("a.test"), "/", 9, 2, RouteOptions::default());
        assert_eq!(target(&r, "a.test", "/x"), Some(2));
        r.remove(l(), Some("a.test"), "/", 2, &RouteOptions::default());
        assert_eq!(target(&r, "a.test", "/x"), Some(1));
        r.remove(l(), Some("a.test"), "/", 1, &RouteOptions::default());
        assert_eq!(target(&r, "a.test", "/x"), None);
    }

    #[test]
    fn prefix_lengths_are_forgotten_when_removed() {
        let mut r = Router::new();
        r.insert(l(), Some("a.test"), "/", 0, 1, RouteOptions::default());
        r.insert(
            l(),
            Some("a.test"),
            "/long/prefix",
            1,
            2,
            RouteOptions::default(),
        );
        assert_eq!(target(&r, "a.test", "/long/prefix/x"), Some(2));
        r.remove(
            l(),
            Some("a.test"),
            "/long/prefix",
            2,
            &RouteOptions::default(),
        );
        assert_eq!(target(&r, "a.test", "/long/prefix/x"), Some(1));
    }

    #[test]
    fn removing_one_prefix_keeps_others_of_the_same_length() {
        // Alone on their host, and beside a shorter prefix.
        let mut r = Router::new();
        r.insert(l(), Some("a.test"), "/aa", 1, 2, RouteOptions::default());
        r.insert(l(), Some("a.test"), "/bb", 2, 3, RouteOptions::default());
        r.remove(l(), Some("a.test"), "/aa", 2, &RouteOptions::default());
        assert_eq!(target(&r, "a.test", "/bb/x"), Some(3));
        assert_eq!(target(&r, "a.test", "/aa/x"), None);
        r.insert(l(), Some("a.test"), "/", 3, 1, RouteOptions::default());
        r.insert(l(), Some("a.test"), "/aa", 4, 2, RouteOptions::default());
        r.remove(l(), Some("a.test"), "/bb", 3, &RouteOptions::default());
        assert_eq!(target(&r, "a.test", "/aa/x"), Some(2));
        assert_eq!(target(&r, "a.test", "/bb/x"), Some(1));
    }

    #[test]
    fn a_listener_has_routes_until_its_last_one_goes() {
        let mut r = Router::new();
        let tcp: SocketAddr = "127.0.0.1:9090".parse().unwrap();
        assert!(!r.has_routes(l()));
        r.insert(l(), Some("a.test"), "/", 0, 1, RouteOptions::default());
        r.insert(l(), Some("*.a.test"), "/", 1, 2, RouteOptions::default());
        r.insert(tcp, None, "/", 2, 3, RouteOptions::default());
        assert!(r.has_routes(l()) && r.has_routes(tcp));
        r.remove(l(), Some("a.test"), "/", 1, &RouteOptions::default());
        assert!(r.has_routes(l()), "the wildcard route is left");
        r.remove(l(), Some("*.a.test"), "/", 2, &RouteOptions::default());
        assert!(!r.has_routes(l()));
        r.remove(tcp, None, "/", 3, &RouteOptions::default());
        assert!(!r.has_routes(tcp));
        // Removing a route that is not there changes nothing.
        r.remove(tcp, None, "/", 3, &RouteOptions::default());
        assert!(!r.has_routes(tcp));
    }

    #[test]
    fn tcp_routes() {
        let mut r = Router::new();
        assert_eq!(r.lookup_tcp(l()), None);
        r.insert(l(), None, "/", 0, 7, RouteOptions::default());
        r.insert(l(), None, "/", 1, 8, RouteOptions::default());
        assert_eq!(r.lookup_tcp(l()), Some(8));
        r.remove(l(), None, "/", 8, &RouteOptions::default());
        assert_eq!(r.lookup_tcp(l()), Some(7));
    }

    #[test]
    fn a_route_carries_its_options_and_only_its_own_are_removed() {
        let hsts = RouteOptions {
            redirect_https: false,
            hsts: Some(Rc::from("max-age=60")),
        };
        let redirect = RouteOptions {
            redirect_https: true,
            hsts: None,
        };
        let mut r = Router::new();
        r.insert(l(), Some("a.test"), "/", 1, 7, hsts.clone());
        r.insert(l(), Some("*.test"), "/", 2, 7, redirect.clone());
        assert_eq!(r.lookup(l(), "a.test", "/"), Some((7, &hsts)));
        assert_eq!(r.lookup(l(), "b.test", "/"), Some((7, &redirect)));
        // Two frontends that differ only in their options: the newest answers, and removing
        // one leaves the other, whatever their order.
        r.insert(l(), Some("a.test"), "/", 3, 7, redirect.clone());
        assert_eq!(r.lookup(l(), "a.test", "/"), Some((7, &redirect)));
        r.remove(l(), Some("a.test"), "/", 7, &hsts);
        assert_eq!(r.lookup(l(), "a.test", "/"), Some((7, &redirect)));
        r.insert(l(), Some("a.test"), "/", 4, 7, hsts.clone());
        r.remove(l(), Some("a.test"), "/", 7, &hsts);
        assert_eq!(r.lookup(l(), "a.test", "/"), Some((7, &redirect)));
    }

    #[test]
    fn host_normalisation() {
        let mut out = [0u8; 256];
        assert_eq!(
            normalize_host(b"Shop.Example.COM:8080", &mut out),
            Some("shop.example.com")
        );
        assert_eq!(normalize_host(b"a.test.", &mut out), Some("a.test"));
        assert_eq!(normalize_host(b"[::1]:80", &mut out), Some("[::1]"));
        assert_eq!(normalize_host(b"a test", &mut out), None);
        assert_eq!(normalize_host(b"a.test:x", &mut out), None);
        assert_eq!(normalize_host(b"", &mut out), None);
        assert_eq!(normalize_host(b":80", &mut out), None);
        // Every bad byte counts, not only the first or the last.
        assert_eq!(normalize_host(b"a b c", &mut out), None);
        assert_eq!(normalize_host(b"a\0b\0c", &mut out), None);
        // IPv6 literals: the port is optional, nothing else may follow the bracket.
        assert_eq!(normalize_host(b"[::1]", &mut out), Some("[::1]"));
        assert_eq!(
            normalize_host(b"[2001:DB8::1]:8443", &mut out),
            Some("[2001:db8::1]")
        );
        assert_eq!(normalize_host(b"[::1]:x", &mut out), None);
        assert_eq!(normalize_host(b"[::1]x", &mut out), None);
        assert_eq!(normalize_host(b"[::1", &mut out), None);
        // A name fills the buffer exactly; one byte more is refused.
        let longest = "a".repeat(256);
        assert_eq!(
            normalize_host(longest.as_bytes(), &mut out),
            Some(longest.as_str())
        );
        assert_eq!(normalize_host(&[b'a'; 257], &mut out), None);
        assert_eq!(
            normalize_host(format!("{longest}.:80").as_bytes(), &mut out),
            Some(longest.as_str())
        );
        for b in (0..=255u8).filter(|&b| b != b':') {
            let allowed = b.is_ascii_alphanumeric() || b"-._[]".contains(&b);
            let lower = String::from_utf8(vec![b'x', b.to_ascii_lowercase(), b'y']).ok();
            assert_eq!(
                normalize_host(&[b'X', b, b'Y'], &mut out).map(str::to_owned),
                lower.filter(|_| allowed),
                "byte {b:#x}"
            );
        }
    }

    fn time_lookups(r: &Router<usize>, host: &str, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            assert!(r.lookup(l(), host, "/some/path").is_some());
        }
        start.elapsed()
    }

    #[test]
    fn hundred_thousand_routes_cost_what_one_costs() {
        let mut one = Router::new();
        one.insert(
            l(),
            Some("app-0.example.com"),
            "/",
            0,
            0usize,
            RouteOptions::default(),
        );
        let mut many = Router::new();
        for i in 0..100_000usize {
            many.insert(
                l(),
                Some(&format!("app-{i}.example.com")),
                "/",
                i as u64,
                i,
                RouteOptions::default(),
            );
        }
        assert_eq!(target(&many, "app-99999.example.com", "/"), Some(99_999));
        assert_eq!(target(&many, "app-100000.example.com", "/"), None);
        // Warm both, then compare: a hash probe does not grow with the table. The bound is
        // loose on purpose (caches differ); a linear scan would be ~100,000 times slower.
        time_lookups(&one, "app-0.example.com", 1000);
        time_lookups(&many, "app-99999.example.com", 1000);
        let t1 = time_lookups(&one, "app-0.example.com", 20_000);
        let tn = time_lookups(&many, "app-99999.example.com", 20_000);
        assert!(
            tn < t1 * 10 + Duration::from_millis(5),
            "1 route: {t1:?}, 100k: {tn:?}"
        );
    }
}
