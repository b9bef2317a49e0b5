//! Fraud episodes (and benign bursts): when they start, how many events each has, and
//! what those events look like.
//!
//! Each kind of episode has an exact event budget. Episodes are planned lazily, one at a
//! time: episode `k` starts at the point of the span proportional to the events already
//! planned plus a random share of its own size, so starts are increasing, spread evenly
//! over the span, and the budget is met exactly (only the last episode may be cut short).
//! Nothing is planned ahead, so memory does not grow with the stream. Episodes run by
//! people (rings, mules, benign bursts) follow the daily cycle like benign traffic, so the
//! hour alone does not give them away; automated ones (velocity attacks, takeovers while
//! the owner sleeps) come at any hour.

use rand::RngExt;

use super::benign::{
    self, cents, home_currency, log_normal, merchant_amount, takeover_country, AccountState, Draft,
};
use super::catalog::{ATM, CARD, COUNTRIES, ONLINE, TRANSFER};
use super::clock::{DailyCycle, HOUR_MS, MINUTE_MS};
use super::entities::World;
use super::{FraudPattern, GenRng};

/// How fraud events are shared between the patterns.
pub(crate) const SHARES: [(FraudPattern, f64); 4] = [
    (FraudPattern::Ring, 0.30),
    (FraudPattern::Velocity, 0.25),
    (FraudPattern::Mule, 0.20),
    (FraudPattern::Takeover, 0.25),
];

/// Share of benign events that come in quick series of purchases (benign bursts), so
/// "several payments within minutes" is not by itself proof of fraud.
pub(crate) const BURST_SHARE: f64 = 0.01;

/// Events per ring episode.
const RING_EVENTS: (u32, u32) = (3, 12);
/// Payments per velocity attack, all within one minute.
const VELOCITY_EVENTS: (u32, u32) = (8, 30);
/// Events per takeover, all within an hour.
const TAKEOVER_EVENTS: (u32, u32) = (2, 6);
/// Purchases per benign burst.
const BURST_EVENTS: (u32, u32) = (3, 8);

/// A kind of episode: the four fraud patterns and benign bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Episode {
    Ring,
    Velocity,
    Mule,
    Takeover,
    Burst,
}

impl Episode {
    pub(crate) const ALL: [Episode; 5] = [
        Episode::Ring,
        Episode::Velocity,
        Episode::Mule,
        Episode::Takeover,
        Episode::Burst,
    ];

    /// Whether episodes start more often by day, as benign traffic does.
    fn follows_daily_cycle(self) -> bool {
        matches!(self, Episode::Ring | Episode::Mule | Episode::Burst)
    }

    pub(crate) fn pattern(self) -> FraudPattern {
        match self {
            Episode::Ring => FraudPattern::Ring,
            Episode::Velocity => FraudPattern::Velocity,
            Episode::Mule => FraudPattern::Mule,
            Episode::Takeover => FraudPattern::Takeover,
            Episode::Burst => FraudPattern::None,
        }
    }
}

/// The next episode of a schedule: when, how many events, and which ring or mule chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) start_ms: i64,
    size: u32,
    structure: usize,
}

/// The episodes of one kind, planned one at a time against an exact event budget.
pub(crate) struct Schedule {
    pub(crate) kind: Episode,
    budget: u64,
    planned: u64,
    start_ms: i64,
    span_ms: i64,
    /// The span in cumulative daily-cycle rate, for kinds that follow the cycle.
    rate_from: f64,
    rate_width: f64,
    next: Option<Planned>,
}

impl Schedule {
    pub(crate) fn new(
        kind: Episode,
        budget: u64,
        start_ms: i64,
        span_ms: i64,
        cycle: &DailyCycle,
        world: &World,
        rng: &mut GenRng,
    ) -> Schedule {
        let rate_from = cycle.cumulative_at(start_ms);
        let mut schedule = Schedule {
            kind,
            budget,
            planned: 0,
            start_ms,
            span_ms,
            rate_from,
            rate_width: cycle.cumulative_at(start_ms + span_ms) - rate_from,
            next: None,
        };
        schedule.plan_next(cycle, world, rng);
        schedule
    }

    /// When the next episode starts, if any is left.
    pub(crate) fn next_start(&self) -> Option<i64> {
        self.next.map(|p| p.start_ms)
    }

    /// Takes the next episode and plans the one after it.
    pub(crate) fn take(
        &mut self,
        cycle: &DailyCycle,
        world: &World,
        rng: &mut GenRng,
    ) -> Option<Planned> {
        let current = self.next.take();
        self.plan_next(cycle, world, rng);
        current
    }

    fn plan_next(&mut self, cycle: &DailyCycle, world: &World, rng: &mut GenRng) {
        let left = self.budget - self.planned;
        if left == 0 {
            self.next = None;
            return;
        }
        let draw = |(low, high): (u32, u32), rng: &mut GenRng| rng.random_range(low..=high);
        let (size, structure) = match self.kind {
            Episode::Ring => (
                draw(RING_EVENTS, rng),
                rng.random_range(0..world.rings.len()),
            ),
            Episode::Mule => {
                let chain = rng.random_range(0..world.chains.len());
                // Every account of the chain acts once: transfers, then the cash-out.
                (world.chains[chain].members.len() as u32, chain)
            }
            Episode::Velocity => (draw(VELOCITY_EVENTS, rng), 0),
            Episode::Takeover => (draw(TAKEOVER_EVENTS, rng), 0),
            Episode::Burst => (draw(BURST_EVENTS, rng), 0),
        };
        let size = u64::from(size).min(left);
        let at = (self.planned as f64 + rng.random::<f64>() * size as f64) / self.budget as f64;
        self.planned += size;
        let start_ms = if self.kind.follows_daily_cycle() {
            cycle
                .time_at(self.rate_from + at * self.rate_width)
                .clamp(self.start_ms, self.start_ms + self.span_ms - 1)
        } else {
            self.start_ms + (at * self.span_ms as f64) as i64
        };
        self.next = Some(Planned {
            start_ms,
            size: size as u32,
            structure,
        });
    }
}

/// Appends the events of one episode (in any order; the caller sorts by time) to `out`.
pub(crate) fn expand(
    kind: Episode,
    episode: Planned,
    world: &World,
    state: &mut AccountState,
    rng: &mut GenRng,
    out: &mut Vec<Draft>,
) {
    let before = out.len();
    match kind {
        Episode::Ring => ring(episode, world, state, rng, out),
        Episode::Velocity => velocity(episode, world, state, rng, out),
        Episode::Mule => mule(episode, world, state, rng, out),
        Episode::Takeover => takeover(episode, world, state, rng, out),
        Episode::Burst => burst(episode, world, state, rng, out),
    }
    debug_assert_eq!(out.len() - before, episode.size as usize);
}

fn pick(items: &[u32], rng: &mut GenRng) -> u32 {
    items[rng.random_range(0..items.len())]
}

/// Ring members pay from the shared devices and IPs, mostly online, mostly at high-risk
/// merchants, well above the usual amounts, over ten minutes to three hours.
fn ring(p: Planned, world: &World, _: &mut AccountState, rng: &mut GenRng, out: &mut Vec<Draft>) {
    let ring = &world.rings[p.structure];
    let duration = rng.random_range(10 * MINUTE_MS..3 * HOUR_MS);
    for _ in 0..p.size {
        let account = pick(&ring.members, rng);
        let device = if rng.random::<f64>() < 0.85 {
            pick(&ring.devices, rng)
        } else {
            world.devices.of(account)[0]
        };
        let ip = if rng.random::<f64>() < 0.85 {
            pick(&ring.ips, rng)
        } else {
            world.ips.of(account)[0]
        };
        let merchant = if rng.random::<f64>() < 0.6 {
            pick(&world.high_risk_merchants, rng)
        } else {
            world.pick_merchant(rng)
        };
        let amount = merchant_amount(world, merchant, rng) * rng.random_range(1.3..3.5);
        let channel = if rng.random::<f64>() < 0.7 {
            ONLINE
        } else {
            CARD
        };
        out.push(Draft {
            ts_ms: p.start_ms + rng.random_range(0..duration),
            account,
            counterparty: None,
            merchant: Some(merchant),
            device: Some(device),
            ip: Some(ip),
            amount: cents(amount.max(1.0)),
            channel,
            country: ring.country,
            currency: COUNTRIES[ring.country as usize].currency,
        });
    }
}

/// A stolen card tested and drained: many small-to-medium payments within one minute.
fn velocity(
    p: Planned,
    world: &World,
    state: &mut AccountState,
    rng: &mut GenRng,
    out: &mut Vec<Draft>,
) {
    let account = pick(&world.plain, rng);
    let home = world.home[account as usize];
    let device = if rng.random::<f64>() < 0.6 {
        state.unknown_device()
    } else {
        state.usual_device(world, account, rng)
    };
    let ip = if rng.random::<f64>() < 0.5 {
        state.unknown_ip()
    } else {
        state.usual_ip(world, account, p.start_ms, rng)
    };
    let country = if rng.random::<f64>() < 0.75 {
        home
    } else {
        takeover_country(home, rng)
    };
    let new_merchant = rng.random::<f64>() < 0.7;
    let one_merchant = rng.random::<f64>() < 0.8;
    let choose_merchant = |rng: &mut GenRng| {
        if new_merchant {
            if rng.random::<f64>() < 0.5 {
                pick(&world.high_risk_merchants, rng)
            } else {
                rng.random_range(0..world.merchants.len() as u32)
            }
        } else {
            pick(world.favorites_of(account), rng)
        }
    };
    let fixed = choose_merchant(rng);
    let channel = if rng.random::<f64>() < 0.85 {
        ONLINE
    } else {
        CARD
    };
    for _ in 0..p.size {
        let merchant = if one_merchant {
            fixed
        } else {
            choose_merchant(rng)
        };
        let amount = rng.random_range(0.0..150f64.ln()).exp();
        out.push(Draft {
            ts_ms: p.start_ms + rng.random_range(0..MINUTE_MS),
            account,
            counterparty: None,
            merchant: Some(merchant),
            device: Some(device),
            ip: Some(ip),
            amount: cents(amount),
            channel,
            country,
            currency: home_currency(world, account),
        });
    }
}

/// Money passed along a mule chain within minutes, then cashed out by the last member.
fn mule(
    p: Planned,
    world: &World,
    state: &mut AccountState,
    rng: &mut GenRng,
    out: &mut Vec<Draft>,
) {
    let chain = &world.chains[p.structure];
    let mut amount = log_normal(1200f64.ln(), 0.6, rng).clamp(200.0, 9500.0);
    let mut ts_ms = p.start_ms;
    let last = chain.members.len() - 1;
    for (k, &account) in chain.members.iter().enumerate().take(p.size as usize) {
        let (channel, counterparty, value) = if k < last {
            (TRANSFER, Some(chain.members[k + 1]), amount)
        } else if rng.random::<f64>() < 0.5 {
            // Cash is withdrawn in round amounts, within ATM limits.
            (
                ATM,
                None,
                ((amount.min(1000.0) / 10.0).floor() * 10.0).max(10.0),
            )
        } else {
            (TRANSFER, Some(chain.herder), amount)
        };
        let (device, ip) = if channel == ATM {
            (None, None)
        } else {
            (
                Some(state.usual_device(world, account, rng)),
                Some(state.usual_ip(world, account, ts_ms, rng)),
            )
        };
        let country = state.whereabouts(world, account, ts_ms);
        out.push(Draft {
            ts_ms,
            account,
            counterparty,
            merchant: None,
            device,
            ip,
            amount: cents(value),
            channel,
            country,
            currency: if channel == ATM {
                COUNTRIES[country as usize].currency
            } else {
                home_currency(world, account)
            },
        });
        // The mule keeps a small cut.
        amount *= rng.random_range(0.95..0.99);
        ts_ms += rng.random_range(MINUTE_MS..10 * MINUTE_MS);
    }
}

/// A taken-over account: large payments and transfers within an hour, from a device and
/// an IP the graph does not know, in a country the account does not live in.
fn takeover(
    p: Planned,
    world: &World,
    state: &mut AccountState,
    rng: &mut GenRng,
    out: &mut Vec<Draft>,
) {
    let account = pick(&world.plain, rng);
    let device = state.unknown_device();
    let ip = state.unknown_ip();
    let country = takeover_country(world.home[account as usize], rng);
    for _ in 0..p.size {
        let ts_ms = p.start_ms + rng.random_range(0..HOUR_MS);
        let draft = if rng.random::<f64>() < 0.55 {
            let merchant = pick(&world.high_risk_merchants, rng);
            let amount = (merchant_amount(world, merchant, rng) * rng.random_range(3.0..8.0))
                .max(rng.random_range(150.0..400.0));
            (Some(merchant), None, ONLINE, amount)
        } else {
            let to = world.other_account(account, rng);
            let amount = log_normal(1500f64.ln(), 0.6, rng).max(200.0);
            (None, Some(to), TRANSFER, amount)
        };
        let (merchant, counterparty, channel, amount) = draft;
        out.push(Draft {
            ts_ms,
            account,
            counterparty,
            merchant,
            device: Some(device),
            ip: Some(ip),
            amount: cents(amount),
            channel,
            country,
            currency: home_currency(world, account),
        });
    }
}

/// Benign: a customer making a quick series of ordinary purchases (a shopping trip).
fn burst(
    p: Planned,
    world: &World,
    state: &mut AccountState,
    rng: &mut GenRng,
    out: &mut Vec<Draft>,
) {
    let account = world.pick_active(rng);
    let duration = rng.random_range(3 * MINUTE_MS..20 * MINUTE_MS);
    for _ in 0..p.size {
        let ts_ms = p.start_ms + rng.random_range(0..duration);
        let channel = if rng.random::<f64>() < 0.7 {
            CARD
        } else {
            ONLINE
        };
        out.push(benign::purchase(world, state, account, ts_ms, channel, rng));
    }
}
