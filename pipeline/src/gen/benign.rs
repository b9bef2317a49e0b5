//! Ordinary customer behaviour: what a benign event of a given account looks like, and
//! the per-account state that changes over the stream (trips abroad, new phones).

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use super::catalog::{
    self, ATM, CARD, COUNTRIES, HOME_COUNTRIES, ONLINE, TAKEOVER_COUNTRIES, TRANSFER,
    TRAVEL_COUNTRIES,
};
use super::clock::DAY_MS;
use super::entities::World;
use super::GenRng;
use crate::event::Event;

/// Chance per benign event that an account at home leaves on a trip.
const TRIP_CHANCE: f64 = 0.0015;
/// Chance per benign event that an account starts using a new phone from now on.
const NEW_DEVICE_CHANCE: f64 = 0.001;
/// Chance that a purchase is several times the merchant's usual amount.
const LARGE_PURCHASE_CHANCE: f64 = 0.004;
/// Chance that a P2P transfer is a large one.
const LARGE_TRANSFER_CHANCE: f64 = 0.04;
/// Typical ATM withdrawals and how often each is chosen.
const ATM_AMOUNTS: [(f64, f64); 7] = [
    (20.0, 0.10),
    (50.0, 0.25),
    (100.0, 0.25),
    (150.0, 0.10),
    (200.0, 0.18),
    (300.0, 0.07),
    (500.0, 0.05),
];

/// An event before ids are formatted: entity numbers instead of strings, so pending
/// events are small and formatting happens once, when the event is emitted.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub(crate) ts_ms: i64,
    pub(crate) account: u32,
    pub(crate) counterparty: Option<u32>,
    pub(crate) merchant: Option<u32>,
    pub(crate) device: Option<u32>,
    pub(crate) ip: Option<u32>,
    pub(crate) amount: f64,
    pub(crate) channel: &'static str,
    /// Index into [`COUNTRIES`] of where the event happens.
    pub(crate) country: u8,
    pub(crate) currency: &'static str,
}

impl Draft {
    pub(crate) fn into_event(self, event_id: String) -> Event {
        Event {
            event_id,
            ts_ms: self.ts_ms,
            account_id: catalog::account_id(self.account),
            counterparty_id: self.counterparty.map(catalog::account_id),
            merchant_id: self.merchant.map(catalog::merchant_id),
            device_id: self.device.map(catalog::device_id),
            ip: self.ip.map(catalog::ip_address),
            amount: self.amount,
            currency: Some(self.currency.to_owned()),
            channel: Some(self.channel.to_owned()),
            country: Some(COUNTRIES[self.country as usize].code.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Trip {
    until_ms: i64,
    country: u8,
    ip: u32,
}

/// What changes about accounts while the stream runs, plus the numbering of devices and
/// IPs that are not in the graph. Memory is proportional to the number of accounts.
pub(crate) struct AccountState {
    trips: Vec<Trip>,
    new_device: Vec<Option<u32>>,
    next_device: u32,
    next_ip: u32,
}

impl AccountState {
    pub(crate) fn new(world: &World) -> AccountState {
        let n = world.account_count() as usize;
        AccountState {
            trips: vec![Trip::default(); n],
            new_device: vec![None; n],
            next_device: world.device_count,
            next_ip: world.ip_count,
        }
    }

    /// A device number the graph does not know. (Numbers would only repeat after four
    /// billion unknown devices.)
    pub(crate) fn unknown_device(&mut self) -> u32 {
        let d = self.next_device;
        self.next_device = self.next_device.saturating_add(1);
        d
    }

    /// An IP number the graph does not know.
    pub(crate) fn unknown_ip(&mut self) -> u32 {
        let i = self.next_ip;
        self.next_ip = self.next_ip.saturating_add(1);
        i
    }

    /// The device the account normally uses now: its new phone if it got one, otherwise
    /// mostly its first device.
    pub(crate) fn usual_device(&self, world: &World, account: u32, rng: &mut GenRng) -> u32 {
        if let Some(d) = self.new_device[account as usize] {
            if rng.random::<f64>() < 0.75 {
                return d;
            }
        }
        pick_mostly_first(world.devices.of(account), rng)
    }

    /// The IP the account normally uses now: a hotel's abroad, otherwise home or, for
    /// some accounts, a shared carrier/office IP.
    pub(crate) fn usual_ip(
        &self,
        world: &World,
        account: u32,
        ts_ms: i64,
        rng: &mut GenRng,
    ) -> u32 {
        let trip = self.trips[account as usize];
        if trip.until_ms > ts_ms {
            return trip.ip;
        }
        if let Some(hub) = world.hub[account as usize] {
            if rng.random::<f64>() < 0.25 {
                return hub;
            }
        }
        pick_mostly_first(world.ips.of(account), rng)
    }

    /// Where the account is at `ts_ms`, as an index into [`COUNTRIES`].
    pub(crate) fn whereabouts(&self, world: &World, account: u32, ts_ms: i64) -> u8 {
        let trip = self.trips[account as usize];
        if trip.until_ms > ts_ms {
            trip.country
        } else {
            world.home[account as usize]
        }
    }

    /// Life happens between payments: sometimes a trip starts, sometimes a new phone.
    fn live(&mut self, world: &World, account: u32, ts_ms: i64, rng: &mut GenRng) {
        let a = account as usize;
        if self.trips[a].until_ms <= ts_ms && rng.random::<f64>() < TRIP_CHANCE {
            let home = world.home[a];
            let mut country = rng.random_range(0..TRAVEL_COUNTRIES - 1) as u8;
            if country >= home {
                country += 1;
            }
            let days = rng.random_range(2.0..9.0);
            self.trips[a] = Trip {
                until_ms: ts_ms + (days * DAY_MS as f64) as i64,
                country,
                ip: self.unknown_ip(),
            };
        }
        if rng.random::<f64>() < NEW_DEVICE_CHANCE {
            self.new_device[a] = Some(self.unknown_device());
        }
    }
}

fn pick_mostly_first(items: &[u32], rng: &mut GenRng) -> u32 {
    if items.len() == 1 || rng.random::<f64>() < 0.7 {
        items[0]
    } else {
        items[rng.random_range(0..items.len())]
    }
}

pub(crate) fn home_currency(world: &World, account: u32) -> &'static str {
    COUNTRIES[world.home[account as usize] as usize].currency
}

/// A country other than `home` that takeovers come from.
pub(crate) fn takeover_country(home: u8, rng: &mut GenRng) -> u8 {
    use catalog::TAKEOVER_SHARED;
    let choices = TAKEOVER_COUNTRIES + TAKEOVER_SHARED.len();
    let pick = rng.random_range(0..choices);
    let country = if pick < TAKEOVER_COUNTRIES {
        COUNTRIES.len() - TAKEOVER_COUNTRIES + pick
    } else {
        TAKEOVER_SHARED[pick - TAKEOVER_COUNTRIES]
    };
    debug_assert!(country >= HOME_COUNTRIES && usize::from(home) < HOME_COUNTRIES);
    country as u8
}

/// Rounds to cents.
pub(crate) fn cents(amount: f64) -> f64 {
    (amount * 100.0).round() / 100.0
}

/// A log-normal sample with median `exp(mu)`.
pub(crate) fn log_normal(mu: f64, sigma: f64, rng: &mut GenRng) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    (mu + sigma * z).exp()
}

/// What `merchant` typically charges: one draw from its amount profile.
pub(crate) fn merchant_amount(world: &World, merchant: u32, rng: &mut GenRng) -> f64 {
    let m = &world.merchants[merchant as usize];
    log_normal(m.mu, m.sigma, rng)
}

/// A benign event of `account` at `ts_ms`: card, online, P2P transfer or ATM.
pub(crate) fn event(
    world: &World,
    state: &mut AccountState,
    account: u32,
    ts_ms: i64,
    rng: &mut GenRng,
) -> Draft {
    state.live(world, account, ts_ms, rng);
    let abroad = state.trips[account as usize].until_ms > ts_ms;
    let x = rng.random::<f64>();
    // Abroad people pay by card and withdraw cash more, transfer less.
    let (card, online, transfer) = if abroad {
        (0.62, 0.79, 0.84)
    } else {
        (0.50, 0.82, 0.92)
    };
    if x < card {
        purchase(world, state, account, ts_ms, CARD, rng)
    } else if x < online {
        purchase(world, state, account, ts_ms, ONLINE, rng)
    } else if x < transfer {
        p2p(world, state, account, ts_ms, rng)
    } else {
        atm(world, state, account, ts_ms, rng)
    }
}

/// A benign card or online purchase at a favourite or a popular merchant.
pub(crate) fn purchase(
    world: &World,
    state: &AccountState,
    account: u32,
    ts_ms: i64,
    channel: &'static str,
    rng: &mut GenRng,
) -> Draft {
    let favorites = world.favorites_of(account);
    let merchant = if rng.random::<f64>() < 0.75 {
        favorites[rng.random_range(0..favorites.len())]
    } else {
        world.pick_merchant(rng)
    };
    let mut amount = merchant_amount(world, merchant, rng);
    if rng.random::<f64>() < LARGE_PURCHASE_CHANCE {
        amount *= rng.random_range(3.0..10.0);
    }
    let country = state.whereabouts(world, account, ts_ms);
    let (device, ip, currency) = if channel == CARD {
        // Card-present: a phone wallet sometimes, never an IP; charged in local currency.
        let device = (rng.random::<f64>() < 0.35).then(|| state.usual_device(world, account, rng));
        (device, None, COUNTRIES[country as usize].currency)
    } else {
        (
            Some(state.usual_device(world, account, rng)),
            Some(state.usual_ip(world, account, ts_ms, rng)),
            home_currency(world, account),
        )
    };
    Draft {
        ts_ms,
        account,
        counterparty: None,
        merchant: Some(merchant),
        device,
        ip,
        amount: cents(amount.max(0.5)),
        channel,
        country,
        currency,
    }
}

fn p2p(world: &World, state: &AccountState, account: u32, ts_ms: i64, rng: &mut GenRng) -> Draft {
    let payees = world.payees.of(account);
    let counterparty = if !payees.is_empty() && rng.random::<f64>() < 0.9 {
        payees[rng.random_range(0..payees.len())]
    } else {
        // A new payee: someone the graph has no transfer for.
        world.other_account(account, rng)
    };
    // Now and then a large transfer (rent, a deposit, a used car), so a large transfer
    // alone is not a mule's.
    let mut amount = if rng.random::<f64>() < LARGE_TRANSFER_CHANCE {
        log_normal(900f64.ln(), 0.6, rng)
    } else {
        log_normal(60f64.ln(), 0.9, rng)
    };
    if rng.random::<f64>() < 0.5 {
        amount = (amount / 5.0).round().max(1.0) * 5.0;
    }
    Draft {
        ts_ms,
        account,
        counterparty: Some(counterparty),
        merchant: None,
        device: Some(state.usual_device(world, account, rng)),
        ip: Some(state.usual_ip(world, account, ts_ms, rng)),
        amount: cents(amount.max(1.0)),
        channel: TRANSFER,
        country: state.whereabouts(world, account, ts_ms),
        currency: home_currency(world, account),
    }
}

fn atm(world: &World, state: &AccountState, account: u32, ts_ms: i64, rng: &mut GenRng) -> Draft {
    let mut x = rng.random::<f64>();
    let mut amount = ATM_AMOUNTS[0].0;
    for &(value, share) in &ATM_AMOUNTS {
        amount = value;
        if x < share {
            break;
        }
        x -= share;
    }
    let country = state.whereabouts(world, account, ts_ms);
    Draft {
        ts_ms,
        account,
        counterparty: None,
        merchant: None,
        device: None,
        ip: None,
        amount,
        channel: ATM,
        country,
        currency: COUNTRIES[country as usize].currency,
    }
}
