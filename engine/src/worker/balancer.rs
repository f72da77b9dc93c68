//! Load balancing: which backend of a cluster gets the next request. Sans-io.
//!
//! The worker describes a cluster's backends as [`Candidate`]s (weight, live requests, whether
//! they can take traffic now, whether they are backups) and [`Balancer::pick`] returns an index.
//! Backups are considered only when no primary is available. Randomness comes from the caller's
//! RNG, so tests run with a seed and production with a per-worker one.

use rand::Rng;
use weir_schema::LoadBalancing;

/// What the balancer knows of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub weight: u32,
    /// Requests (or TCP pipes) in flight to it.
    pub active: u32,
    /// Up, or down but past its backoff (allowed one more try); and not already tried by
    /// this request.
    pub available: bool,
    pub backup: bool,
}

/// A cluster's balancing state.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    pub algorithm: LoadBalancing,
    /// Smooth weighted round robin: the running "current weight" of each candidate (nginx's
    /// algorithm: every pick adds each weight, takes the largest and subtracts the total).
    current: Vec<i64>,
    /// Where least-connections starts scanning, so ties rotate instead of piling on the first.
    cursor: usize,
}

impl Balancer {
    pub fn new(algorithm: LoadBalancing) -> Balancer {
        Balancer {
            algorithm,
            current: Vec::new(),
            cursor: 0,
        }
    }

    /// Forgets round-robin positions (the set of backends changed).
    pub fn reset(&mut self) {
        self.current.clear();
    }

    /// The index of the chosen candidate, or `None` if none is available.
    pub fn pick(&mut self, candidates: &[Candidate], rng: &mut impl Rng) -> Option<usize> {
        let primaries = candidates.iter().any(|c| c.available && !c.backup);
        let eligible = |c: &Candidate| c.available && c.backup != primaries;
        if !candidates.iter().any(eligible) {
            return None;
        }
        match self.algorithm {
            LoadBalancing::RoundRobin => self.round_robin(candidates, eligible),
            LoadBalancing::Random => weighted_random(candidates, eligible, None, rng),
            LoadBalancing::LeastConnections => self.least_connections(candidates, eligible),
            LoadBalancing::PowerOfTwo => {
                let a = weighted_random(candidates, eligible, None, rng)?;
                match weighted_random(candidates, eligible, Some(a), rng) {
                    Some(b) if less_loaded(&candidates[b], &candidates[a]) => Some(b),
                    _ => Some(a),
                }
            }
        }
    }

    fn round_robin(
        &mut self,
        candidates: &[Candidate],
        eligible: impl Fn(&Candidate) -> bool,
    ) -> Option<usize> {
        if self.current.len() != candidates.len() {
            self.current = vec![0; candidates.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate() {
            if !eligible(c) {
                continue;
            }
            let weight = i64::from(c.weight.max(1));
            self.current[i] += weight;
            total += weight;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }

    fn least_connections(
        &mut self,
        candidates: &[Candidate],
        eligible: impl Fn(&Candidate) -> bool,
    ) -> Option<usize> {
        let n = candidates.len();
        self.cursor = (self.cursor + 1) % n.max(1);
        let mut best: Option<usize> = None;
        for offset in 0..n {
            let i = (self.cursor + offset) % n;
            let c = &candidates[i];
            if eligible(c) && best.is_none_or(|b| less_loaded(c, &candidates[b])) {
                best = Some(i);
            }
        }
        best
    }
}

/// Whether `a` has fewer live requests per unit of weight than `b`.
fn less_loaded(a: &Candidate, b: &Candidate) -> bool {
    u64::from(a.active) * u64::from(b.weight.max(1))
        < u64::from(b.active) * u64::from(a.weight.max(1))
}

/// A weighted random eligible candidate, other than `skip`.
fn weighted_random(
    candidates: &[Candidate],
    eligible: impl Fn(&Candidate) -> bool,
    skip: Option<usize>,
    rng: &mut impl Rng,
) -> Option<usize> {
    let ok = |i: usize, c: &Candidate| eligible(c) && Some(i) != skip;
    let total: u64 = candidates
        .iter()
        .enumerate()
        .filter(|(i, c)| ok(*i, c))
        .map(|(_, c)| u64::from(c.weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.random_range(0..total);
    for (i, c) in candidates.iter().enumerate() {
        if !ok(i, c) {
            continue;
        }
        let weight = u64::from(c.weight.max(1));
        if point < weight {
            return Some(i);
        }
        point -= weight;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn up(weight: u32) -> Candidate {
        Candidate {
            weight,
            active: 0,
            available: true,
            backup: false,
        }
    }

    fn counts(lb: LoadBalancing, candidates: &[Candidate], n: usize) -> Vec<usize> {
        let mut b = Balancer::new(lb);
        let mut rng = SmallRng::seed_from_u64(42);
        let mut counts = vec![0; candidates.len()];
        for _ in 0..n {
            counts[b.pick(candidates, &mut rng).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn round_robin_is_exact_and_smooth() {
        let c = [up(100), up(100), up(100)];
        assert_eq!(
            counts(LoadBalancing::RoundRobin, &c, 300),
            vec![100, 100, 100]
        );
        // Weighted 5:1:1 interleaves instead of sending five in a row.
        let mut b = Balancer::new(LoadBalancing::RoundRobin);
        let mut rng = SmallRng::seed_from_u64(1);
        let w = [up(5), up(1), up(1)];
        let order: Vec<usize> = (0..7).map(|_| b.pick(&w, &mut rng).unwrap()).collect();
        assert_eq!(order, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn random_follows_weights() {
        let c = [up(300), up(100)];
        let got = counts(LoadBalancing::Random, &c, 40_000);
        let share = got[0] as f64 / 40_000.0;
        assert!((0.72..0.78).contains(&share), "{got:?}");
    }

    /// Each candidate's share of `n` picks.
    fn shares(lb: LoadBalancing, candidates: &[Candidate], n: usize) -> Vec<f64> {
        let got = counts(lb, candidates, n);
        got.iter().map(|&c| c as f64 / n as f64).collect()
    }

    fn assert_shares_near(got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.02, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn random_follows_small_weights_across_several_backends() {
        // Small weights leave no slack: a pick point on a boundary going to the wrong side,
        // or a lost remainder, moves a whole sixth of the traffic.
        let got = shares(LoadBalancing::Random, &[up(1), up(2), up(3)], 60_000);
        assert_shares_near(&got, &[1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0]);
    }

    #[test]
    fn power_of_two_among_equally_loaded_follows_weights() {
        // Neither of two equally loaded draws is less loaded, so the first (weighted) draw
        // stands and the split is the weights', as with Random.
        let got = shares(LoadBalancing::PowerOfTwo, &[up(300), up(100)], 40_000);
        assert_shares_near(&got, &[0.75, 0.25]);
        let mut c = [up(300), up(100)];
        c[0].active = 6;
        c[1].active = 2;
        let got = shares(LoadBalancing::PowerOfTwo, &c, 40_000);
        assert_shares_near(&got, &[0.75, 0.25]);
    }

    #[test]
    fn power_of_two_prefers_the_less_loaded() {
        let mut c = [up(100), up(100), up(100)];
        c[0].active = 10;
        let got = counts(LoadBalancing::PowerOfTwo, &c, 3000);
        assert!(got[0] < got[1] / 4 && got[0] < got[2] / 4, "{got:?}");
        let even = counts(LoadBalancing::PowerOfTwo, &[up(100), up(100)], 10_000);
        assert!((4_500..5_500).contains(&even[0]), "{even:?}");
    }

    #[test]
    fn least_connections_picks_fewest_per_weight_and_rotates_ties() {
        let mut c = [up(100), up(100), up(200)];
        c[0].active = 3;
        c[1].active = 1;
        c[2].active = 3; // 1.5 per 100 of weight
        let mut b = Balancer::new(LoadBalancing::LeastConnections);
        let mut rng = SmallRng::seed_from_u64(7);
        assert_eq!(b.pick(&c, &mut rng), Some(1));
        let idle = counts(LoadBalancing::LeastConnections, &[up(1), up(1), up(1)], 300);
        assert_eq!(idle, vec![100, 100, 100]);
    }

    /// Live requests per unit of weight, as least-connections compares them.
    fn load(c: &Candidate) -> f64 {
        f64::from(c.active) / f64::from(c.weight.max(1))
    }

    #[test]
    fn least_connections_always_picks_a_least_loaded_candidate() {
        // Every three-backend cluster with 0 to 3 requests and weights 1 to 3 each.
        let grid: Vec<Candidate> = (0..4)
            .flat_map(|active| {
                (1..4).map(move |weight| Candidate {
                    active,
                    ..up(weight)
                })
            })
            .collect();
        let mut rng = SmallRng::seed_from_u64(3);
        for a in &grid {
            for b in &grid {
                for c in &grid {
                    let candidates = [*a, *b, *c];
                    let least = candidates.iter().map(load).fold(f64::INFINITY, f64::min);
                    // From every scan position, not only a fresh balancer's.
                    let mut balancer = Balancer::new(LoadBalancing::LeastConnections);
                    for _ in 0..3 {
                        let i = balancer.pick(&candidates, &mut rng).unwrap();
                        assert_eq!(load(&candidates[i]), least, "{candidates:?} -> {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn reset_restarts_round_robin() {
        // The set of backends changed (same count, other backends): the smooth order starts
        // over rather than carrying the old backends' positions.
        let w = [up(5), up(1), up(1)];
        let mut b = Balancer::new(LoadBalancing::RoundRobin);
        let mut rng = SmallRng::seed_from_u64(1);
        let fresh: Vec<usize> = (0..7).map(|_| b.pick(&w, &mut rng).unwrap()).collect();
        let mut b = Balancer::new(LoadBalancing::RoundRobin);
        for _ in 0..3 {
            b.pick(&w, &mut rng).unwrap();
        }
        b.reset();
        let after: Vec<usize> = (0..7).map(|_| b.pick(&w, &mut rng).unwrap()).collect();
        assert_eq!(after, fresh);
    }

    #[test]
    fn down_backends_are_skipped_and_backups_used_only_without_primaries() {
        let mut c = [up(100), up(100), up(100)];
        c[2].backup = true;
        c[0].available = false;
        for lb in LoadBalancing::ALL {
            let got = counts(lb, &c, 100);
            assert_eq!(got, vec![0, 100, 0], "{lb:?}");
        }
        c[1].available = false;
        for lb in LoadBalancing::ALL {
            assert_eq!(counts(lb, &c, 10), vec![0, 0, 10], "{lb:?}");
        }
        c[2].available = false;
        let mut b = Balancer::new(LoadBalancing::RoundRobin);
        assert_eq!(b.pick(&c, &mut SmallRng::seed_from_u64(0)), None);
    }
}
