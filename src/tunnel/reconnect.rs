//! When to connect, how long to wait, when to give up, and when the peer is dead: two
//! pure machines the tunnel thread consults and obeys. Time and randomness come in as
//! arguments, decisions come out; nothing here reads a clock, sleeps or does I/O, so
//! every branch is unit-tested.
//!
//! - [`Reconnect`]: after each connect attempt or session, what next (connect now, wait,
//!   wait for a new token in the token file, or stop with an exit code). Backoff is
//!   exponential with jitter: the first retry after `retry_delay`, then a random delay
//!   between that and a ceiling that doubles per failure up to `max_delay`. A session
//!   that got ready (SERVICE_IDS) resets the count.
//! - [`KeepAlive`]: when the next ping is due and when a peer counts as dead: two ping
//!   periods without a frame while we are reading and our bytes leave, or
//!   [`STUCK_PERIODS`] ping periods in which bytes waited for the socket and none of
//!   them left (a peer that sends but never reads, or a link that died under a full
//!   send buffer). While our bytes do not leave, the peer's silence is no evidence: it
//!   answers pings only once it reads them, and a service holding back because the far
//!   end is slow is not dead; the longer bound keeps such a pause from dropping the
//!   tunnel.

use crate::Exit;
use std::time::{Duration, Instant};

/// The reconnect policy, from the settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Policy {
    /// websocket.retry_delay_ms: the first retry, and the floor of every later one.
    pub(crate) retry_delay: Duration,
    /// websocket.retry_max_delay_ms: the ceiling of the backoff.
    pub(crate) max_delay: Duration,
    /// websocket.connect_retry_count: failed connects before giving up; -1 forever.
    pub(crate) connect_retries: i64,
    /// websocket.reconnect_on_data_error: reconnect after a lost session at all.
    pub(crate) reconnect_after_loss: bool,
    /// --access-token-file given: a refused token waits for a new one in the file.
    pub(crate) token_file: bool,
}

/// How an attempt or a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The connect attempt failed in a way retrying can help (DNS, TCP, TLS, 5xx).
    ConnectFailed,
    /// The service refused the upgrade (4xx: bad, used or wrong-mode token).
    Refused,
    /// An open session was lost (dropped, dead peer, data error); `was_ready` when it
    /// had received SERVICE_IDS.
    Lost { was_ready: bool },
    /// The service closed the tunnel (close frame).
    Closed,
    /// We were asked to stop.
    Shutdown,
    /// The configuration cannot work (SERVICE_IDS mismatch, listener failed, ...).
    Fatal(Exit),
}

/// What the tunnel thread does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Connect now.
    Connect,
    /// Wait this long, then connect.
    Wait(Duration),
    /// Re-read the token file every `every` until it holds another token, then call
    /// [`Reconnect::token_changed`].
    WaitForToken { every: Duration },
    /// Stop with this exit code.
    Exit(Exit),
}

/// The reconnect machine. `failures` counts attempts in a row that did not reach a
/// ready session.
#[derive(Clone, Debug)]
pub(crate) struct Reconnect {
    policy: Policy,
    failures: u32,
}

impl Reconnect {
    pub(crate) fn new(policy: Policy) -> Reconnect {
        Reconnect {
            policy,
            failures: 0,
        }
    }

    /// Attempts in a row that did not reach a ready session.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// What to do after `outcome`. `random` is any random number (for the jitter).
    pub(crate) fn after(&mut self, outcome: Outcome, random: u64) -> Decision {
        match outcome {
            Outcome::Closed | Outcome::Shutdown => Decision::Exit(Exit::Ok),
            Outcome::Fatal(x) => Decision::Exit(x),
            Outcome::Refused => {
                if self.policy.token_file {
                    Decision::WaitForToken {
                        every: self.policy.retry_delay.max(Duration::from_millis(1)),
                    }
                } else {
                    Decision::Exit(Exit::Rejected)
                }
            }
            Outcome::Lost { was_ready } => {
                if !self.policy.reconnect_after_loss {
                    return Decision::Exit(Exit::GaveUp);
                }
                if was_ready {
                    self.failures = 0;
                }
                self.failures = self.failures.saturating_add(1);
                Decision::Wait(self.backoff(random))
            }
            Outcome::ConnectFailed => {
                self.failures = self.failures.saturating_add(1);
                let max = self.policy.connect_retries;
                if max >= 0 && i64::from(self.failures) > max {
                    return Decision::Exit(Exit::GaveUp);
                }
                Decision::Wait(self.backoff(random))
            }
        }
    }

    /// The token file holds a new token: connect at once, with a fresh count.
    pub(crate) fn token_changed(&mut self) -> Decision {
        self.failures = 0;
        Decision::Connect
    }

    /// The delay before the next attempt after `self.failures` failures in a row.
    fn backoff(&self, random: u64) -> Duration {
        let base = duration_ms(self.policy.retry_delay);
        let cap = duration_ms(self.policy.max_delay).max(base);
        let doublings = self.failures.saturating_sub(1).min(30);
        let ceiling = base.saturating_mul(1u64 << doublings).min(cap);
        let ms = if ceiling <= base {
            base
        } else {
            base + random % (ceiling - base + 1)
        };
        Duration::from_millis(ms)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Ping periods that bytes may wait for the socket, none leaving, before the peer counts
/// as gone (2 minutes at the default period).
pub(crate) const STUCK_PERIODS: u32 = 6;

/// What the keep-alive wants now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Send a ping now.
    Ping,
    /// Nothing heard for this long (two ping periods): the peer is gone.
    Dead(Duration),
    /// Bytes have waited for the socket this long ([`STUCK_PERIODS`] ping periods)
    /// without one of them leaving: the peer does not read.
    Stuck(Duration),
    /// Nothing to do before [`KeepAlive::deadline`].
    Idle,
}

/// Pings every period and notices a silent peer. The first ping goes out at once.
#[derive(Clone, Debug)]
pub(crate) struct KeepAlive {
    period: Duration,
    next_ping: Instant,
    last_heard: Instant,
    /// Since when bytes have waited for the socket with none sent; `None` while the
    /// socket takes what we write.
    stuck_since: Option<Instant>,
}

impl KeepAlive {
    pub(crate) fn new(now: Instant, period: Duration) -> KeepAlive {
        KeepAlive {
            period: period.max(Duration::from_millis(1)),
            next_ping: now,
            last_heard: now,
            stuck_since: None,
        }
    }

    /// After a send: whether bytes still wait for the socket, and whether any left it.
    pub(crate) fn sent(&mut self, now: Instant, pending: bool, moved: bool) {
        self.stuck_since = match (pending, moved, self.stuck_since) {
            (false, _, _) => None,
            (true, true, _) | (true, false, None) => Some(now),
            (true, false, Some(since)) => Some(since),
        };
    }

    /// A frame (any frame) arrived from the peer.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// We did not read (local sockets are full): silence is not evidence of a dead peer.
    pub(crate) fn not_reading(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// What is due at `now`. A returned ping counts as sent.
    pub(crate) fn poll(&mut self, now: Instant) -> Beat {
        if let Some(since) = self.stuck_since {
            if now >= since + STUCK_PERIODS * self.period {
                return Beat::Stuck(now - since);
            }
        }
        let dead_at = self.last_heard + 2 * self.period;
        if now >= dead_at && self.stuck_since.is_none() {
            return Beat::Dead(now - self.last_heard);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.period;
            return Beat::Ping;
        }
        Beat::Idle
    }

    /// When [`KeepAlive::poll`] has something to do next.
    pub(crate) fn deadline(&self) -> Instant {
        match self.stuck_since {
            Some(since) => self.next_ping.min(since + STUCK_PERIODS * self.period),
            None => self.next_ping.min(self.last_heard + 2 * self.period),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            retry_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            connect_retries: -1,
            reconnect_after_loss: true,
            token_file: false,
        }
    }

    fn ms(d: Decision) -> u64 {
        match d {
            Decision::Wait(d) => d.as_millis() as u64,
            other => panic!("expected a wait, got {other:?}"),
        }
    }

    #[test]
    fn the_first_retry_waits_the_base_delay_whatever_the_random_number() {
        for r in [0, 1, 99, u64::MAX] {
            let mut m = Reconnect::new(policy());
            assert_eq!(ms(m.after(Outcome::ConnectFailed, r)), 100);
        }
    }

    #[test]
    fn the_ceiling_doubles_per_failure_up_to_the_cap() {
        // A random number of ceiling - base gives the ceiling itself.
        let ceilings = [100u64, 200, 400, 800, 1000, 1000, 1000];
        let mut m = Reconnect::new(policy());
        for (i, &c) in ceilings.iter().enumerate() {
            let d = ms(m.after(Outcome::ConnectFailed, c - 100));
            assert_eq!(d, c, "attempt {i}");
        }
    }

    #[test]
    fn jitter_spans_exactly_the_base_to_the_ceiling() {
        // Third failure: ceiling 400. random % 301 + 100 covers 100..=400.
        let delay_with = |r: u64| {
            let mut m = Reconnect::new(policy());
            m.after(Outcome::ConnectFailed, 0);
            m.after(Outcome::ConnectFailed, 0);
            ms(m.after(Outcome::ConnectFailed, r))
        };
        assert_eq!(delay_with(0), 100);
        assert_eq!(delay_with(300), 400);
        assert_eq!(delay_with(301), 100);
        assert_eq!(delay_with(150), 250);
    }

    #[test]
    fn a_cap_below_the_base_means_the_base() {
        let mut p = policy();
        p.max_delay = Duration::from_millis(10);
        let mut m = Reconnect::new(p);
        for _ in 0..5 {
            assert_eq!(ms(m.after(Outcome::ConnectFailed, 12345)), 100);
        }
    }

    #[test]
    fn connect_retries_are_counted_and_exhausted() {
        let mut p = policy();
        p.connect_retries = 2;
        let mut m = Reconnect::new(p);
        assert!(matches!(
            m.after(Outcome::ConnectFailed, 0),
            Decision::Wait(_)
        ));
        assert!(matches!(
            m.after(Outcome::ConnectFailed, 0),
            Decision::Wait(_)
        ));
        assert_eq!(
            m.after(Outcome::ConnectFailed, 0),
            Decision::Exit(Exit::GaveUp)
        );
    }

    #[test]
    fn zero_retries_gives_up_at_the_first_failure_and_minus_one_never() {
        let mut p = policy();
        p.connect_retries = 0;
        let mut m = Reconnect::new(p);
        assert_eq!(
            m.after(Outcome::ConnectFailed, 0),
            Decision::Exit(Exit::GaveUp)
        );
        let mut m = Reconnect::new(policy());
        for _ in 0..10_000 {
            assert!(matches!(
                m.after(Outcome::ConnectFailed, 7),
                Decision::Wait(_)
            ));
        }
    }

    #[test]
    fn a_ready_session_resets_the_count_and_a_session_that_never_got_ready_does_not() {
        let mut m = Reconnect::new(policy());
        for _ in 0..4 {
            m.after(Outcome::ConnectFailed, 0);
        }
        assert_eq!(m.failures(), 4);
        assert_eq!(
            ms(m.after(Outcome::Lost { was_ready: true }, u64::MAX)),
            100,
            "after a ready session the next retry is the first again"
        );
        assert_eq!(m.failures(), 1);
        m.after(Outcome::Lost { was_ready: false }, 0);
        assert_eq!(m.failures(), 2);
    }

    #[test]
    fn lost_sessions_do_not_reconnect_when_the_setting_says_so() {
        let mut p = policy();
        p.reconnect_after_loss = false;
        let mut m = Reconnect::new(p);
        assert_eq!(
            m.after(Outcome::Lost { was_ready: true }, 0),
            Decision::Exit(Exit::GaveUp)
        );
    }

    #[test]
    fn a_refusal_exits_3_without_a_token_file_and_waits_for_a_token_with_one() {
        let mut m = Reconnect::new(policy());
        assert_eq!(m.after(Outcome::Refused, 0), Decision::Exit(Exit::Rejected));
        let mut p = policy();
        p.token_file = true;
        let mut m = Reconnect::new(p);
        m.after(Outcome::ConnectFailed, 0);
        assert_eq!(
            m.after(Outcome::Refused, 0),
            Decision::WaitForToken {
                every: Duration::from_millis(100)
            }
        );
        assert_eq!(m.token_changed(), Decision::Connect);
        assert_eq!(m.failures(), 0);
    }

    #[test]
    fn closed_shutdown_and_fatal_end_the_run() {
        let mut m = Reconnect::new(policy());
        assert_eq!(m.after(Outcome::Closed, 0), Decision::Exit(Exit::Ok));
        assert_eq!(m.after(Outcome::Shutdown, 0), Decision::Exit(Exit::Ok));
        assert_eq!(
            m.after(Outcome::Fatal(Exit::Usage), 0),
            Decision::Exit(Exit::Usage)
        );
    }

    #[test]
    fn keepalive_pings_at_once_then_every_period() {
        let t0 = Instant::now();
        let p = Duration::from_secs(20);
        let mut k = KeepAlive::new(t0, p);
        assert_eq!(k.poll(t0), Beat::Ping);
        assert_eq!(k.poll(t0), Beat::Idle);
        assert_eq!(k.deadline(), t0 + p);
        k.heard(t0 + Duration::from_secs(5));
        assert_eq!(k.poll(t0 + p), Beat::Ping);
        assert_eq!(k.deadline(), t0 + 2 * p);
    }

    #[test]
    fn keepalive_declares_a_silent_peer_dead_after_two_periods() {
        let t0 = Instant::now();
        let p = Duration::from_secs(20);
        let mut k = KeepAlive::new(t0, p);
        k.poll(t0);
        k.heard(t0 + Duration::from_secs(1));
        assert_eq!(k.poll(t0 + p), Beat::Ping);
        let just_before = t0 + Duration::from_secs(40);
        assert_eq!(k.poll(just_before), Beat::Ping);
        assert_eq!(k.deadline(), t0 + Duration::from_secs(41));
        assert_eq!(
            k.poll(t0 + Duration::from_secs(41)),
            Beat::Dead(Duration::from_secs(40))
        );
    }

    #[test]
    fn keepalive_silence_while_we_do_not_read_is_not_death() {
        let t0 = Instant::now();
        let p = Duration::from_millis(500);
        let mut k = KeepAlive::new(t0, p);
        k.poll(t0);
        for i in 1..100 {
            let now = t0 + Duration::from_millis(400 * i);
            k.not_reading(now);
            assert_ne!(k.poll(now), Beat::Dead(Duration::ZERO));
            assert!(!matches!(k.poll(now), Beat::Dead(_)));
        }
    }

    #[test]
    fn keepalive_a_peer_that_never_reads_is_stuck_after_stuck_periods() {
        let t0 = Instant::now();
        let p = Duration::from_secs(20);
        let stuck = STUCK_PERIODS * p;
        let mut k = KeepAlive::new(t0, p);
        k.poll(t0);
        // Bytes wait and some leave, the peer talks: nothing to say, however long.
        for i in 1..10 {
            let now = t0 + Duration::from_secs(15 * i);
            k.heard(now);
            k.sent(now, true, true);
            assert!(!matches!(k.poll(now), Beat::Stuck(_) | Beat::Dead(_)));
        }
        // From now on nothing leaves and the peer says nothing: silence is no evidence
        // while our bytes wait, so only the stuck bound applies.
        let t1 = t0 + Duration::from_secs(135);
        k.sent(t1, true, false);
        for s in [30, 60, 90] {
            let now = t1 + Duration::from_secs(s);
            k.sent(now, true, false);
            assert!(
                !matches!(k.poll(now), Beat::Stuck(_) | Beat::Dead(_)),
                "{s}"
            );
            // The poll deadline never lets the stuck moment pass unseen.
            assert!(k.deadline() <= t1 + stuck);
        }
        assert_eq!(k.poll(t1 + stuck), Beat::Stuck(stuck));
        // Everything went: the clock stops, and silence counts again from the last frame.
        let t2 = t1 + stuck;
        k.sent(t2, false, true);
        k.heard(t2);
        assert!(!matches!(k.poll(t2), Beat::Stuck(_)));
        assert_eq!(k.poll(t2 + 2 * p), Beat::Dead(2 * p));
    }
}
