//! The generated world: accounts with their devices, IPs, payees and favourite merchants,
//! the fraud structures (rings, mule chains, flagged accounts), and the entity graph that
//! describes what is known about them.
//!
//! Everything here is built once, up front, from the seed and the number of accounts
//! only, so the graph file does not change when `events` or `fraud_rate` change. Memory is
//! proportional to the number of accounts, never to the number of events.

use ahash::AHashSet;
use rand::seq::SliceRandom;
use rand::RngExt;
use rand_distr::weighted::WeightedAliasIndex;
use rand_distr::{Distribution, StandardNormal};
use riskstream_graph::{EntityKind, GraphRecord, Relation};

use super::catalog::{self, CATEGORIES, HOME_WEIGHTS};
use super::GenRng;

/// Favourite merchants per account: most benign card and online payments go to them.
pub(crate) const FAVORITES: usize = 6;

/// What part an account plays. Only `Plain` and `Mule` accounts make benign payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An ordinary customer; velocity and takeover victims are drawn from these.
    Plain,
    /// An ordinary customer recruited into a mule chain: benign traffic plus mule
    /// transfers.
    Mule,
    /// An account controlled by a fraud ring; it only makes ring payments.
    RingMember,
    /// Known fraud, flagged in the graph; it makes no payments (closed).
    Flagged,
}

/// A merchant and its amount profile: benign amounts are log-normal(`mu`, `sigma`).
pub(crate) struct Merchant {
    pub(crate) mu: f64,
    pub(crate) sigma: f64,
}

/// A fraud ring: accounts sharing devices and IPs, optionally with a flagged account.
pub(crate) struct Ring {
    pub(crate) members: Vec<u32>,
    pub(crate) devices: Vec<u32>,
    pub(crate) ips: Vec<u32>,
    /// The flagged account that also used the shared devices and IPs; `None` for rings
    /// the graph cannot expose.
    pub(crate) flagged: Option<u32>,
    pub(crate) country: u8,
}

/// A mule chain: money enters at `members[0]` and moves along the chain within minutes.
pub(crate) struct MuleChain {
    pub(crate) members: Vec<u32>,
    /// The flagged account that sent money to `members[0]` and collects from the last.
    pub(crate) herder: u32,
}

/// Per-account lists in one allocation: `items[offsets[a]..offsets[a + 1]]`.
pub(crate) struct Lists {
    offsets: Vec<u32>,
    items: Vec<u32>,
}

impl Lists {
    fn from_nested(nested: Vec<Vec<u32>>) -> Lists {
        let mut offsets = Vec::with_capacity(nested.len() + 1);
        let mut items = Vec::new();
        offsets.push(0);
        for list in nested {
            items.extend_from_slice(&list);
            offsets.push(to_u32(items.len()));
        }
        Lists { offsets, items }
    }

    pub(crate) fn of(&self, account: u32) -> &[u32] {
        let a = account as usize;
        &self.items[self.offsets[a] as usize..self.offsets[a + 1] as usize]
    }
}

/// What the destination of an edge is; the source is always an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Device,
    Ip,
    Account,
    Merchant,
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    src: u32,
    dst: u32,
    target: Target,
}

/// All entities, their relationships and the fraud structures.
pub(crate) struct World {
    pub(crate) home: Vec<u8>,
    pub(crate) role: Vec<Role>,
    /// Devices each account is known to use (in the graph).
    pub(crate) devices: Lists,
    /// IPs each account is known to use, home first (in the graph).
    pub(crate) ips: Lists,
    /// A shared IP (mobile carrier, office) the account sometimes appears behind.
    pub(crate) hub: Vec<Option<u32>>,
    /// Accounts this account has paid before (its benign P2P payees).
    pub(crate) payees: Lists,
    /// `FAVORITES` merchants per account.
    pub(crate) favorites: Vec<u32>,
    pub(crate) merchants: Vec<Merchant>,
    merchant_popularity: WeightedAliasIndex<f64>,
    /// Merchants fraudsters prefer.
    pub(crate) high_risk_merchants: Vec<u32>,
    /// Accounts that make benign payments, and how active each is (Zipf-skewed).
    active: Vec<u32>,
    activity: WeightedAliasIndex<f64>,
    /// Ordinary accounts, the victims of velocity attacks and takeovers.
    pub(crate) plain: Vec<u32>,
    pub(crate) rings: Vec<Ring>,
    pub(crate) chains: Vec<MuleChain>,
    /// Devices `0..device_count` are graph nodes; later numbers are unknown devices.
    pub(crate) device_count: u32,
    /// IPs `0..ip_count` are graph nodes; later numbers are unknown addresses.
    pub(crate) ip_count: u32,
    edges: Vec<Edge>,
}

/// Counts of what the graph file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GraphCounts {
    pub accounts: u64,
    pub devices: u64,
    pub ips: u64,
    pub merchants: u64,
    /// All nodes (the four kinds above together).
    pub nodes: u64,
    pub edges: u64,
    /// Nodes marked as known fraud.
    pub flagged: u64,
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("entity counts fit in u32 because the account count is capped")
}

fn alias(weights: Vec<f64>) -> WeightedAliasIndex<f64> {
    WeightedAliasIndex::new(weights)
        .expect("weights are finite, positive and non-empty by construction")
}

/// Allocates consecutive entity numbers.
struct Counter(u32);

impl Counter {
    fn take(&mut self) -> u32 {
        let n = self.0;
        self.0 += 1;
        n
    }
}

impl World {
    /// Builds the world for `accounts` accounts (at least 100, checked by the options).
    pub(crate) fn build(accounts: u32, rng: &mut GenRng) -> World {
        let n = accounts as usize;
        let homes = alias(HOME_WEIGHTS.to_vec());
        let mut home: Vec<u8> = (0..n).map(|_| homes.sample(rng) as u8).collect();
        let mut role = vec![Role::Plain; n];

        // Roles go to accounts in a random order so ids say nothing about them.
        let mut order: Vec<u32> = (0..accounts).collect();
        order.shuffle(rng);
        let mut order = order.into_iter();
        let mut next_account = || {
            order
                .next()
                .expect("fraud structures need fewer accounts than the validated minimum")
        };
        let structures = (n / 500).max(2);
        let mut rings = Vec::with_capacity(structures);
        for r in 0..structures {
            // One ring in four has no flagged account: no path to known fraud, only its
            // shared devices and IPs show in the graph.
            let flagged = (r % 4 != 3).then(&mut next_account);
            let size = rng.random_range(3..=8);
            let members: Vec<u32> = (0..size).map(|_| next_account()).collect();
            let country = homes.sample(rng) as u8;
            for &a in members.iter().chain(flagged.iter()) {
                home[a as usize] = country;
            }
            for &a in &members {
                role[a as usize] = Role::RingMember;
            }
            if let Some(f) = flagged {
                role[f as usize] = Role::Flagged;
            }
            rings.push(Ring {
                members,
                devices: Vec::new(),
                ips: Vec::new(),
                flagged,
                country,
            });
        }
        let mut chains = Vec::with_capacity(structures);
        for _ in 0..structures {
            let herder = next_account();
            role[herder as usize] = Role::Flagged;
            let len = rng.random_range(2..=4);
            let members: Vec<u32> = (0..len).map(|_| next_account()).collect();
            for &a in &members {
                role[a as usize] = Role::Mule;
            }
            chains.push(MuleChain { members, herder });
        }
        // Fraud found in the past whose accounts are closed: graph noise only.
        let historical: Vec<u32> = (0..(n / 1000).max(1)).map(|_| next_account()).collect();
        for &a in &historical {
            role[a as usize] = Role::Flagged;
        }

        let plain: Vec<u32> = (0..accounts)
            .filter(|&a| role[a as usize] == Role::Plain)
            .collect();
        let active: Vec<u32> = (0..accounts)
            .filter(|&a| matches!(role[a as usize], Role::Plain | Role::Mule))
            .collect();

        // Own devices and IPs.
        let mut devices = Counter(0);
        let mut ips = Counter(0);
        let mut device_lists: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut ip_lists: Vec<Vec<u32>> = Vec::with_capacity(n);
        for &r in &role {
            let (device_n, ip_n) = match r {
                Role::Plain | Role::Mule => {
                    let d = rng.random::<f64>();
                    let d = if d < 0.5 {
                        1
                    } else if d < 0.85 {
                        2
                    } else {
                        3
                    };
                    (d, if rng.random::<f64>() < 0.6 { 1 } else { 2 })
                }
                Role::RingMember => (1, 1),
                Role::Flagged => (rng.random_range(1..=2), rng.random_range(1..=2)),
            };
            device_lists.push((0..device_n).map(|_| devices.take()).collect());
            ip_lists.push((0..ip_n).map(|_| ips.take()).collect());
        }

        // Households: a few accounts also use a partner's device and home IP.
        for &a in &plain {
            if rng.random::<f64>() < 0.06 {
                let partner = plain[rng.random_range(0..plain.len())];
                if partner != a {
                    let (d, i) = (
                        device_lists[partner as usize][0],
                        ip_lists[partner as usize][0],
                    );
                    device_lists[a as usize].push(d);
                    ip_lists[a as usize].push(i);
                }
            }
        }

        // Shared addresses (carrier NAT, offices): many ordinary accounts behind one IP.
        let hub_ips: Vec<u32> = (0..(n / 200).max(1)).map(|_| ips.take()).collect();
        let mut hub = vec![None; n];
        for &a in &plain {
            if rng.random::<f64>() < 0.2 {
                hub[a as usize] = Some(hub_ips[rng.random_range(0..hub_ips.len())]);
            }
        }

        for ring in &mut rings {
            ring.devices = (0..rng.random_range(1..=2))
                .map(|_| devices.take())
                .collect();
            ring.ips = (0..rng.random_range(1..=2)).map(|_| ips.take()).collect();
        }

        // Noise: some ordinary accounts have used a flagged account's IP (same building,
        // same café), so sharing an IP with fraud is not proof of fraud.
        let flagged: Vec<u32> = (0..accounts)
            .filter(|&a| role[a as usize] == Role::Flagged)
            .collect();
        for &f in &flagged {
            if rng.random::<f64>() < 0.35 {
                let b = plain[rng.random_range(0..plain.len())];
                let ip = ip_lists[f as usize][0];
                ip_lists[b as usize].push(ip);
            }
        }

        // Known past transfers. Pairs are kept unique (in either direction).
        let mut pairs: AHashSet<(u32, u32)> = AHashSet::new();
        let mut new_pair = |a: u32, b: u32| a != b && pairs.insert((a.min(b), a.max(b)));
        let mut extra_transfers = Vec::new();
        for chain in &chains {
            let mut previous = chain.herder;
            for &m in &chain.members {
                if new_pair(previous, m) {
                    extra_transfers.push((previous, m));
                }
                previous = m;
            }
            if new_pair(previous, chain.herder) {
                extra_transfers.push((previous, chain.herder));
            }
        }
        for &f in &historical {
            if rng.random::<f64>() < 0.3 {
                let b = plain[rng.random_range(0..plain.len())];
                if new_pair(f, b) {
                    extra_transfers.push((f, b));
                }
            }
        }
        let mut payee_lists: Vec<Vec<u32>> = vec![Vec::new(); n];
        for &a in &active {
            let x = rng.random::<f64>();
            let k = if x < 0.3 {
                0
            } else if x < 0.6 {
                1
            } else if x < 0.85 {
                2
            } else {
                3
            };
            for _ in 0..k {
                let b = active[rng.random_range(0..active.len())];
                if new_pair(a, b) {
                    payee_lists[a as usize].push(b);
                }
            }
        }

        // Merchants, their popularity and amount profiles.
        let merchant_n = (n / 20).max(20);
        let categories = alias(CATEGORIES.iter().map(|c| c.weight).collect());
        let mut merchant_category: Vec<usize> =
            (0..merchant_n).map(|_| categories.sample(rng)).collect();
        if !merchant_category.iter().any(|&c| CATEGORIES[c].high_risk) {
            merchant_category[merchant_n - 1] = CATEGORIES
                .iter()
                .position(|c| c.high_risk)
                .expect("the category table has high-risk categories");
        }
        let merchants: Vec<Merchant> = merchant_category
            .iter()
            .map(|&c| {
                let z: f64 = StandardNormal.sample(rng);
                Merchant {
                    mu: CATEGORIES[c].median.ln() + 0.35 * z,
                    sigma: CATEGORIES[c].sigma * rng.random_range(0.8..1.2),
                }
            })
            .collect();
        let high_risk_merchants: Vec<u32> = (0..to_u32(merchant_n))
            .filter(|&m| CATEGORIES[merchant_category[m as usize]].high_risk)
            .collect();
        let merchant_popularity = alias(zipf_weights(merchant_n, merchant_n / 50, rng));
        let favorites: Vec<u32> = (0..n * FAVORITES)
            .map(|_| to_u32(merchant_popularity.sample(rng)))
            .collect();
        // Rare: a customer who owns a shop.
        let mut owned: Vec<u32> = (0..to_u32(merchant_n)).collect();
        owned.shuffle(rng);
        owned.truncate((merchant_n / 50).max(1));
        let owners: Vec<(u32, u32)> = owned
            .into_iter()
            .map(|m| (plain[rng.random_range(0..plain.len())], m))
            .collect();

        // Zipf-skewed activity: a few accounts transact far more than the rest.
        let activity = alias(zipf_weights(active.len(), active.len() / 100, rng));

        let mut edges = Vec::new();
        for a in 0..accounts {
            for &d in &device_lists[a as usize] {
                edges.push(Edge {
                    src: a,
                    dst: d,
                    target: Target::Device,
                });
            }
            for &i in ip_lists[a as usize].iter().chain(hub[a as usize].iter()) {
                edges.push(Edge {
                    src: a,
                    dst: i,
                    target: Target::Ip,
                });
            }
        }
        for ring in &rings {
            for &a in ring.members.iter().chain(ring.flagged.iter()) {
                for &d in &ring.devices {
                    edges.push(Edge {
                        src: a,
                        dst: d,
                        target: Target::Device,
                    });
                }
                for &i in &ring.ips {
                    edges.push(Edge {
                        src: a,
                        dst: i,
                        target: Target::Ip,
                    });
                }
            }
        }
        for (a, b) in extra_transfers {
            edges.push(Edge {
                src: a,
                dst: b,
                target: Target::Account,
            });
        }
        for a in 0..accounts {
            for &b in &payee_lists[a as usize] {
                edges.push(Edge {
                    src: a,
                    dst: b,
                    target: Target::Account,
                });
            }
        }
        for (a, m) in owners {
            edges.push(Edge {
                src: a,
                dst: m,
                target: Target::Merchant,
            });
        }

        World {
            home,
            role,
            devices: Lists::from_nested(device_lists),
            ips: Lists::from_nested(ip_lists),
            hub,
            payees: Lists::from_nested(payee_lists),
            favorites,
            merchants,
            merchant_popularity,
            high_risk_merchants,
            active,
            activity,
            plain,
            rings,
            chains,
            device_count: devices.0,
            ip_count: ips.0,
            edges,
        }
    }

    pub(crate) fn account_count(&self) -> u32 {
        to_u32(self.role.len())
    }

    /// An account to make the next benign payment, more active accounts more often.
    pub(crate) fn pick_active(&self, rng: &mut GenRng) -> u32 {
        self.active[self.activity.sample(rng)]
    }

    /// An active account other than `account` (someone to send money to).
    pub(crate) fn other_account(&self, account: u32, rng: &mut GenRng) -> u32 {
        let other = self.pick_active(rng);
        if other != account {
            other
        } else if self.plain[0] != account {
            self.plain[0]
        } else {
            // Fraud structures take under a third of the (at least 100) accounts.
            self.plain[1]
        }
    }

    /// A merchant by popularity.
    pub(crate) fn pick_merchant(&self, rng: &mut GenRng) -> u32 {
        to_u32(self.merchant_popularity.sample(rng))
    }

    pub(crate) fn favorites_of(&self, account: u32) -> &[u32] {
        let start = account as usize * FAVORITES;
        &self.favorites[start..start + FAVORITES]
    }

    pub(crate) fn counts(&self) -> GraphCounts {
        let accounts = self.role.len() as u64;
        let devices = u64::from(self.device_count);
        let ips = u64::from(self.ip_count);
        let merchants = self.merchants.len() as u64;
        GraphCounts {
            accounts,
            devices,
            ips,
            merchants,
            nodes: accounts + devices + ips + merchants,
            edges: self.edges.len() as u64,
            flagged: self.role.iter().filter(|&&r| r == Role::Flagged).count() as u64,
        }
    }

    /// The graph file's records: every node (accounts, devices, IPs, merchants), then
    /// every edge. Edges only name nodes listed before them.
    pub(crate) fn records(&self) -> impl Iterator<Item = GraphRecord> + '_ {
        let accounts = (0..self.account_count()).map(|a| GraphRecord::Node {
            id: catalog::account_id(a),
            kind: EntityKind::Account,
            flagged: self.role[a as usize] == Role::Flagged,
        });
        let devices = (0..self.device_count).map(|d| GraphRecord::Node {
            id: catalog::device_id(d),
            kind: EntityKind::Device,
            flagged: false,
        });
        let ips = (0..self.ip_count).map(|i| GraphRecord::Node {
            id: catalog::ip_address(i),
            kind: EntityKind::Ip,
            flagged: false,
        });
        let merchants = (0..to_u32(self.merchants.len())).map(|m| GraphRecord::Node {
            id: catalog::merchant_id(m),
            kind: EntityKind::Merchant,
            flagged: false,
        });
        let edges = self.edges.iter().map(|e| {
            let (dst, rel) = match e.target {
                Target::Device => (catalog::device_id(e.dst), Relation::Uses),
                Target::Ip => (catalog::ip_address(e.dst), Relation::Uses),
                Target::Account => (catalog::account_id(e.dst), Relation::Transfers),
                Target::Merchant => (catalog::merchant_id(e.dst), Relation::Owns),
            };
            GraphRecord::Edge {
                src: catalog::account_id(e.src),
                dst,
                rel,
            }
        });
        accounts
            .chain(devices)
            .chain(ips)
            .chain(merchants)
            .chain(edges)
    }
}

/// Zipf–Mandelbrot weights `1 / (rank + offset)` over a random ranking of `n` items: the
/// top items get about `n / offset / ln(n / offset)` times the average share.
fn zipf_weights(n: usize, offset: usize, rng: &mut GenRng) -> Vec<f64> {
    let mut ranks: Vec<usize> = (1..=n).collect();
    ranks.shuffle(rng);
    ranks
        .into_iter()
        .map(|rank| 1.0 / (rank + offset.max(1)) as f64)
        .collect()
}
