//! A read-mostly cache of per-entity answers in front of any [`GraphEnricher`].
//!
//! The same accounts, devices and merchants recur in a transaction stream and the graph
//! changes slowly, so most look-ups can be answered from memory:
//!
//! * Answers are kept per entity id in an `scc::HashMap` for `ttl`, negative answers
//!   (unknown id, nothing flagged near) included: they are the most common answer.
//! * A hit is one shard-local read and a reference-count bump; nothing is allocated.
//! * Misses of one call are asked of the backend in **one** batched look-up. Concurrent
//!   misses for the same entity share that look-up (single flight): the first caller
//!   claims the entity, later callers wait for the same answer.
//! * The backend look-up runs on its own task. A caller that gives up at its batch deadline
//!   leaves the look-up running, so its answers still fill the cache for the next batch:
//!   a cold cache warms up even when every early batch misses its deadline.
//! * A caller with a deadline ([`GraphEnricher::lookup_until`]) gets every cached answer
//!   at once and the pending ones that arrive in time; the rest stay `None` for that
//!   caller, and their look-up still completes into the cache.
//! * [`CachedGraph::preload`] stores answers fetched ahead of demand (the job's warm-up
//!   and periodic refresh), so a stream need not miss once per entity before it runs at
//!   cache speed.
//! * The size is bounded by `capacity`: when it is exceeded, expired answers are dropped
//!   first, then arbitrary ones (hash order) down to 90 % of the capacity.
//!
//! [`CacheStats`] counts hits, misses, shared waits, expirations and evictions.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{GraphAnswer, GraphEnricher, GraphError, Partial};

/// How long answers live and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// How long an answer is served before the backend is asked again.
    pub ttl: Duration,
    /// The most entities kept.
    pub capacity: usize,
}

/// Counters of a [`CachedGraph`], read by the job's metrics and run summary.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    shared: AtomicU64,
    expired: AtomicU64,
    evictions: AtomicU64,
    entries: AtomicUsize,
    preloaded: AtomicU64,
}

impl CacheStats {
    /// Ids answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    /// Ids this cache asked the backend about.
    pub fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }

    /// Ids that were not cached but already being asked about by another batch, and
    /// waited for that answer instead of asking again.
    pub fn shared_waits(&self) -> u64 {
        self.shared.load(Relaxed)
    }

    /// Answers dropped because they outlived the TTL.
    pub fn expired(&self) -> u64 {
        self.expired.load(Relaxed)
    }

    /// Answers dropped to keep the cache within its capacity.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// Answers stored ahead of demand by [`CachedGraph::preload`] (warm-up and refreshes).
    pub fn preloaded(&self) -> u64 {
        self.preloaded.load(Relaxed)
    }

    /// Entities currently cached or being looked up.
    pub fn entries(&self) -> usize {
        self.entries.load(Relaxed)
    }

    /// Hits over all ids asked for; `0` before the first look-up.
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.hits() as f64;
        let total = hits + self.misses() as f64 + self.shared_waits() as f64;
        if total == 0.0 {
            0.0
        } else {
            hits / total
        }
    }
}

/// The outcome of one backend look-up, shared by everyone waiting for it.
type Outcome = Result<Arc<[Arc<GraphAnswer>]>, Arc<GraphError>>;

/// One backend look-up in flight: the ids it asks about are in the map as
/// [`Slot::Loading`] pointing here, with their position in the look-up.
struct Flight {
    done: watch::Sender<Option<Outcome>>,
}

#[derive(Clone)]
enum Slot {
    Ready {
        answer: Arc<GraphAnswer>,
        expires: Instant,
    },
    Loading {
        flight: Arc<Flight>,
        index: usize,
    },
}

struct Shared {
    inner: Arc<dyn GraphEnricher>,
    map: scc::HashMap<Arc<str>, Slot>,
    options: CacheOptions,
    stats: Arc<CacheStats>,
    sweeping: AtomicBool,
    /// Set by a complete preload: until then, ids neither listed nor cached are unknown.
    listed_until: std::sync::Mutex<Option<Instant>>,
}

/// A [`GraphEnricher`] that answers from a TTL cache and asks `inner` only about misses.
#[derive(Clone)]
pub struct CachedGraph {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CachedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedGraph")
            .field("backend", &self.shared.inner.backend())
            .field("options", &self.shared.options)
            .field("entries", &self.shared.stats.entries())
            .finish()
    }
}

impl CachedGraph {
    pub fn new(inner: Arc<dyn GraphEnricher>, options: CacheOptions) -> Self {
        CachedGraph {
            shared: Arc::new(Shared {
                inner,
                map: scc::HashMap::new(),
                options,
                stats: Arc::new(CacheStats::default()),
                sweeping: AtomicBool::new(false),
                listed_until: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The cache's counters; they stay valid after the cache is dropped.
    pub fn stats(&self) -> Arc<CacheStats> {
        Arc::clone(&self.shared.stats)
    }
}

#[async_trait]
impl GraphEnricher for CachedGraph {
    async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError> {
        let partial = self.answer(ids, None).await;
        if let Some(err) = partial.error {
            return Err(err);
        }
        partial
            .answers
            .into_iter()
            .map(|a| {
                a.ok_or_else(|| GraphError::Backend {
                    backend: self.shared.inner.backend(),
                    source: "the backend returned fewer answers than ids".into(),
                })
            })
            .collect()
    }

    /// Cached answers at once, the others as their look-ups finish, up to `deadline`: an
    /// event whose entities are all cached is enriched even when another entity of its
    /// batch waits for the backend.
    async fn lookup_until(&self, ids: &[&str], deadline: tokio::time::Instant) -> Partial {
        self.answer(ids, Some(deadline)).await
    }

    fn is_failing(&self) -> bool {
        self.shared.inner.is_failing()
    }

    fn backend(&self) -> &'static str {
        self.shared.inner.backend()
    }
}

impl CachedGraph {
    /// Answers from the cache, claims the misses for one backend look-up, and waits for
    /// pending answers, without limit or up to `deadline`.
    async fn answer(&self, ids: &[&str], deadline: Option<tokio::time::Instant>) -> Partial {
        let shared = &self.shared;
        let now = Instant::now();
        let mut answers: Vec<Option<Arc<GraphAnswer>>> = vec![None; ids.len()];
        // (position in `ids`, the look-up that answers it, its index in that look-up)
        let mut pending: Vec<(usize, Arc<Flight>, usize)> = Vec::new();
        let mut flight: Option<Arc<Flight>> = None;
        let mut claimed: Vec<Arc<str>> = Vec::new();

        for (pos, &id) in ids.iter().enumerate() {
            let found = shared.map.read_async(id, |_, slot| slot.clone()).await;
            match found {
                Some(Slot::Ready { answer, expires }) if expires > now => {
                    shared.stats.hits.fetch_add(1, Relaxed);
                    answers[pos] = Some(answer);
                    continue;
                }
                Some(Slot::Loading { flight, index }) => {
                    shared.stats.shared.fetch_add(1, Relaxed);
                    pending.push((pos, flight, index));
                    continue;
                }
                _ => {}
            }
            // Not usable as read: claim the id, unless another caller did in between.
            let mine = flight
                .get_or_insert_with(|| {
                    Arc::new(Flight {
                        done: watch::channel(None).0,
                    })
                })
                .clone();
            let loading = Slot::Loading {
                flight: mine,
                index: claimed.len(),
            };
            let key: Arc<str> = Arc::from(id);
            match shared.map.entry_async(Arc::clone(&key)).await {
                scc::hash_map::Entry::Vacant(vacant) => {
                    shared.stats.entries.fetch_add(1, Relaxed);
                    if let Some(expires) = self.listed_until(now) {
                        // Not in the graph as last listed: a negative answer, no query.
                        let answer = GraphAnswer::unknown();
                        vacant.insert_entry(Slot::Ready {
                            answer: Arc::clone(&answer),
                            expires,
                        });
                        shared.stats.hits.fetch_add(1, Relaxed);
                        answers[pos] = Some(answer);
                        continue;
                    }
                    vacant.insert_entry(loading.clone());
                }
                scc::hash_map::Entry::Occupied(mut occupied) => match occupied.get().clone() {
                    Slot::Ready { answer, expires } if expires > now => {
                        shared.stats.hits.fetch_add(1, Relaxed);
                        answers[pos] = Some(answer);
                        continue;
                    }
                    Slot::Loading { flight, index } => {
                        shared.stats.shared.fetch_add(1, Relaxed);
                        pending.push((pos, flight, index));
                        continue;
                    }
                    Slot::Ready { .. } => {
                        shared.stats.expired.fetch_add(1, Relaxed);
                        occupied.insert(loading.clone());
                    }
                },
            }
            if let Slot::Loading { flight, index } = loading {
                shared.stats.misses.fetch_add(1, Relaxed);
                pending.push((pos, flight, index));
            }
            claimed.push(key);
        }

        if let Some(flight) = flight.filter(|_| !claimed.is_empty()) {
            tokio::spawn(fill(Arc::clone(shared), flight, claimed));
        }

        let mut error = None;
        for (pos, flight, index) in pending {
            let mut done = flight.done.subscribe();
            let outcome = match deadline {
                None => done.wait_for(Option::is_some).await.map(|o| o.clone()),
                Some(at) => {
                    let waited = tokio::time::timeout_at(at, async {
                        done.wait_for(Option::is_some).await.map(|o| o.clone())
                    })
                    .await;
                    // Past the deadline: take what has arrived, wait for nothing more.
                    waited.unwrap_or_else(|_| Ok(done.borrow().clone()))
                }
            };
            match outcome {
                Ok(Some(Ok(list))) => answers[pos] = list.get(index).cloned(),
                Ok(Some(Err(err))) => {
                    error.get_or_insert(GraphError::Shared(err));
                }
                Ok(None) => {}
                Err(_) => {
                    error.get_or_insert(GraphError::Backend {
                        backend: shared.inner.backend(),
                        source: "the graph look-up task ended without an answer".into(),
                    });
                }
            }
        }
        Partial { answers, error }
    }

    /// Stores answers fetched ahead of demand, as if look-ups had just returned them:
    /// new ids are added and cached answers renewed (with a fresh TTL), while ids being
    /// looked up right now are left to that look-up. Stops adding new ids at the capacity.
    /// Returns how many answers were stored.
    ///
    /// `complete` says the answers cover every entity of the graph. If all of them were
    /// stored, then for one TTL an id that is neither listed nor cached is answered as
    /// unknown without asking the backend: the same answer, and the same staleness, as a
    /// negative answer cached just then. New entities are therefore seen within the TTL,
    /// as with any cached answer.
    pub async fn preload(
        &self,
        answers: Vec<(Arc<str>, Arc<GraphAnswer>)>,
        complete: bool,
    ) -> usize {
        let shared = &self.shared;
        let expires = Instant::now() + shared.options.ttl;
        let total = answers.len();
        let mut stored = 0;
        for (key, answer) in answers {
            match shared.map.entry_async(key).await {
                scc::hash_map::Entry::Vacant(vacant) => {
                    if shared.stats.entries() >= shared.options.capacity {
                        continue;
                    }
                    vacant.insert_entry(Slot::Ready { answer, expires });
                    shared.stats.entries.fetch_add(1, Relaxed);
                }
                scc::hash_map::Entry::Occupied(mut occupied) => {
                    if matches!(occupied.get(), Slot::Loading { .. }) {
                        continue;
                    }
                    occupied.insert(Slot::Ready { answer, expires });
                }
            }
            stored += 1;
        }
        shared.stats.preloaded.fetch_add(stored as u64, Relaxed);
        *shared
            .listed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (complete && stored == total).then_some(expires);
        stored
    }

    /// Until when ids missing from the last complete listing count as unknown.
    fn listed_until(&self, now: Instant) -> Option<Instant> {
        let until = *self
            .shared
            .listed_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        until.filter(|&t| t > now)
    }
}

/// Asks the backend about the claimed ids, stores the answers, wakes every waiter. On
/// failure the claims are withdrawn so that the next batch asks again.
async fn fill(shared: Arc<Shared>, flight: Arc<Flight>, claimed: Vec<Arc<str>>) {
    let mut guard = FillGuard {
        shared: Arc::clone(&shared),
        flight: Arc::clone(&flight),
        claimed: claimed.clone(),
        finished: false,
    };
    let ids: Vec<&str> = claimed.iter().map(|k| &**k).collect();
    let outcome = shared.inner.lookup(&ids).await;
    let outcome: Outcome = match outcome {
        Ok(answers) if answers.len() == claimed.len() => {
            let expires = Instant::now() + shared.options.ttl;
            for (key, answer) in claimed.iter().zip(&answers) {
                shared
                    .map
                    .update_async(&**key, |_, slot| {
                        if owned_by(slot, &flight) {
                            *slot = Slot::Ready {
                                answer: Arc::clone(answer),
                                expires,
                            };
                        }
                    })
                    .await;
            }
            Ok(answers.into())
        }
        Ok(answers) => Err(Arc::new(GraphError::Backend {
            backend: shared.inner.backend(),
            source: format!(
                "asked about {} ids, got {} answers",
                claimed.len(),
                answers.len()
            )
            .into(),
        })),
        Err(err) => Err(Arc::new(err)),
    };
    if outcome.is_err() {
        withdraw(&shared, &flight, &claimed).await;
    }
    guard.finished = true;
    flight.done.send_replace(Some(outcome));
    if shared.stats.entries() > shared.options.capacity {
        sweep(&shared).await;
    }
}

fn owned_by(slot: &Slot, flight: &Arc<Flight>) -> bool {
    matches!(slot, Slot::Loading { flight: f, .. } if Arc::ptr_eq(f, flight))
}

/// Withdraws the claims of a look-up that failed, so that no id stays "loading" forever.
/// Asynchronous on purpose: a blocking map call inside a task can wait for a bucket lock
/// whose holder is a task queued behind it on the same worker, and with every worker so
/// blocked the runtime stops (seen as a job frozen mid-stream under Neo4j timeouts).
async fn withdraw(shared: &Shared, flight: &Arc<Flight>, claimed: &[Arc<str>]) {
    for key in claimed {
        if shared
            .map
            .remove_if_async(&**key, |slot| owned_by(slot, flight))
            .await
            .is_some()
        {
            shared.stats.entries.fetch_sub(1, Relaxed);
        }
    }
}

/// Withdraws the claims of a look-up that was abandoned (its task panicked or was dropped
/// with the runtime) and tells its waiters.
struct FillGuard {
    shared: Arc<Shared>,
    flight: Arc<Flight>,
    claimed: Vec<Arc<str>>,
    finished: bool,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.flight
                .done
                .send_replace(Some(Err(Arc::new(GraphError::Backend {
                    backend: self.shared.inner.backend(),
                    source: "the graph look-up was abandoned before it answered".into(),
                }))));
            // Never block a worker thread on the map (see `withdraw`): clean up in a task
            // of its own, or not at all when the runtime is gone with the cache.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (shared, flight) = (Arc::clone(&self.shared), Arc::clone(&self.flight));
                let claimed = std::mem::take(&mut self.claimed);
                runtime.spawn(async move { withdraw(&shared, &flight, &claimed).await });
            }
        }
    }
}

/// Brings the cache back under its capacity: expired answers first, then arbitrary ones
/// down to 90 % of the capacity. One sweep at a time; others skip.
async fn sweep(shared: &Shared) {
    if shared.sweeping.swap(true, Relaxed) {
        return;
    }
    let now = Instant::now();
    let stats = &shared.stats;
    shared
        .map
        .retain_async(|_, slot| match slot {
            Slot::Ready { expires, .. } if *expires <= now => {
                stats.expired.fetch_add(1, Relaxed);
                stats.entries.fetch_sub(1, Relaxed);
                false
            }
            _ => true,
        })
        .await;
    let target = shared.options.capacity / 10 * 9;
    if stats.entries() > target {
        shared
            .map
            .retain_async(|_, slot| {
                if stats.entries() <= target || matches!(slot, Slot::Loading { .. }) {
                    return true;
                }
                stats.evictions.fetch_add(1, Relaxed);
                stats.entries.fetch_sub(1, Relaxed);
                false
            })
            .await;
    }
    shared.sweeping.store(false, Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;
    use crate::file::{EntityKind, GraphRecord, Relation};
    use crate::MemoryGraph;

    /// Counts the ids it is asked about; can be made to fail or to wait for a signal.
    struct Counting {
        inner: MemoryGraph,
        asked: AtomicUsize,
        calls: AtomicUsize,
        fail: AtomicBool,
        gate: Option<Arc<Notify>>,
    }

    #[async_trait]
    impl GraphEnricher for Counting {
        async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError> {
            self.calls.fetch_add(1, Relaxed);
            self.asked.fetch_add(ids.len(), Relaxed);
            if let Some(gate) = &self.gate {
                gate.notified().await;
            }
            if self.fail.load(Relaxed) {
                return Err(GraphError::Timeout {
                    backend: "test",
                    after: Duration::from_millis(1),
                });
            }
            self.inner.lookup(ids).await
        }

        fn backend(&self) -> &'static str {
            "test"
        }
    }

    fn counting(gate: Option<Arc<Notify>>) -> Arc<Counting> {
        let node = |id: &str, flagged| GraphRecord::Node {
            id: id.into(),
            kind: EntityKind::Account,
            flagged,
        };
        let inner = MemoryGraph::from_records(
            [
                node("A", false),
                node("B", true),
                GraphRecord::Edge {
                    src: "A".into(),
                    dst: "B".into(),
                    rel: Relation::Transfers,
                },
            ],
            3,
        )
        .unwrap();
        Arc::new(Counting {
            inner,
            asked: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            gate,
        })
    }

    fn options(ttl_ms: u64, capacity: usize) -> CacheOptions {
        CacheOptions {
            ttl: Duration::from_millis(ttl_ms),
            capacity,
        }
    }

    #[tokio::test]
    async fn repeated_lookups_are_answered_from_the_cache_including_unknown_ids() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        let first = cache.lookup(&["A", "ghost", "B"]).await.unwrap();
        let second = cache.lookup(&["B", "A", "ghost"]).await.unwrap();
        assert_eq!(first[0], second[1]);
        assert_eq!(first[1], second[2]);
        assert_eq!(second[0].hops, Some(0));
        assert!(!second[2].known);
        assert_eq!(backend.asked.load(Relaxed), 3, "only the first call asked");
        let stats = cache.stats();
        assert_eq!((stats.hits(), stats.misses()), (3, 3));
        assert!((stats.hit_ratio() - 0.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn cached_answers_are_asked_again_after_the_ttl() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(20, 100));
        cache.lookup(&["A"]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        cache.lookup(&["A"]).await.unwrap();
        assert_eq!(backend.asked.load(Relaxed), 2);
        assert_eq!(cache.stats().expired(), 1);
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_entity_share_one_backend_query() {
        let gate = Arc::new(Notify::new());
        let backend = counting(Some(gate.clone()));
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        let a = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lookup(&["A", "B"]).await }
        });
        // Let the first caller claim both ids before the others ask.
        while backend.calls.load(Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let b = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lookup(&["B"]).await }
        });
        let c = tokio::spawn({
            let cache = cache.clone();
            async move { cache.lookup(&["A"]).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.notify_one();
        let (a, b, c) = (a.await.unwrap(), b.await.unwrap(), c.await.unwrap());
        assert_eq!(a.unwrap()[1], b.unwrap()[0]);
        assert_eq!(c.unwrap()[0].hops, Some(1));
        assert_eq!(
            backend.calls.load(Relaxed),
            1,
            "one query for all three callers"
        );
        assert_eq!(cache.stats().shared_waits(), 2);
    }

    #[tokio::test]
    async fn a_deadline_gives_cached_answers_and_leaves_only_late_ids_unanswered() {
        let gate = Arc::new(Notify::new());
        let backend = counting(Some(gate.clone()));
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        gate.notify_one();
        cache.lookup(&["B"]).await.unwrap();
        // "A" is not cached and its look-up waits at the gate past the deadline.
        let until = tokio::time::Instant::now() + Duration::from_millis(30);
        let partial = cache.lookup_until(&["B", "A"], until).await;
        assert!(partial.error.is_none(), "late is not an error");
        assert_eq!(partial.answers[0].as_ref().map(|a| a.hops), Some(Some(0)));
        assert!(partial.answers[1].is_none(), "the late answer is left out");
        assert_eq!(partial.missing(), 1);
        // The look-up goes on and fills the cache for the next batch.
        gate.notify_one();
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        let partial = cache.lookup_until(&["A"], later).await;
        assert_eq!(partial.answers[0].as_ref().map(|a| a.hops), Some(Some(1)));
        assert_eq!(backend.calls.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn a_failed_lookup_leaves_its_ids_unanswered_and_reports_the_error() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        cache.lookup(&["B"]).await.unwrap();
        backend.fail.store(true, Relaxed);
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let partial = cache.lookup_until(&["A", "B"], until).await;
        assert!(partial.answers[0].is_none());
        assert!(
            partial.answers[1].is_some(),
            "the cached answer still counts"
        );
        assert!(matches!(partial.error, Some(GraphError::Shared(_))));
    }

    #[tokio::test]
    async fn preloaded_answers_are_served_without_asking_the_backend() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(60_000, 2));
        let answers = backend.inner.lookup(&["A", "B", "ghost"]).await.unwrap();
        let keyed: Vec<(Arc<str>, Arc<GraphAnswer>)> = ["A", "B", "ghost"]
            .into_iter()
            .map(Arc::from)
            .zip(answers.iter().cloned())
            .collect();
        assert_eq!(cache.preload(keyed, true).await, 2, "stops at the capacity");
        let got = cache.lookup(&["B", "A"]).await.unwrap();
        assert_eq!(got, vec![answers[1].clone(), answers[0].clone()]);
        assert_eq!(backend.calls.load(Relaxed), 0);
        assert_eq!((cache.stats().hits(), cache.stats().preloaded()), (2, 2));
        // A refresh renews cached answers even at the capacity.
        let again = vec![(Arc::from("A"), answers[0].clone())];
        assert_eq!(cache.preload(again, false).await, 1);
    }

    #[tokio::test]
    async fn after_a_complete_listing_unlisted_ids_are_unknown_until_the_ttl_passes() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(40, 100));
        let listed = backend.inner.lookup(&["A", "B"]).await.unwrap();
        let keyed: Vec<(Arc<str>, Arc<GraphAnswer>)> = ["A", "B"]
            .into_iter()
            .map(Arc::from)
            .zip(listed.iter().cloned())
            .collect();
        cache.preload(keyed.clone(), true).await;
        let got = cache.lookup(&["A", "new"]).await.unwrap();
        assert!(!got[1].known);
        assert_eq!(
            backend.calls.load(Relaxed),
            0,
            "no query for an unlisted id"
        );
        // Past the TTL the listing no longer vouches for absent ids.
        tokio::time::sleep(Duration::from_millis(60)).await;
        cache.lookup(&["other"]).await.unwrap();
        assert_eq!(backend.calls.load(Relaxed), 1);
        // An incomplete listing (cut at the capacity) vouches for nothing.
        cache.preload(keyed, false).await;
        cache.lookup(&["third"]).await.unwrap();
        assert_eq!(backend.calls.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn abandoned_lookup_still_fills_the_cache_for_the_next_batch() {
        let gate = Arc::new(Notify::new());
        let backend = counting(Some(gate.clone()));
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        let late = tokio::time::timeout(Duration::from_millis(10), cache.lookup(&["A"])).await;
        assert!(late.is_err(), "the caller gave up at its deadline");
        gate.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let answer = cache.lookup(&["A"]).await.unwrap();
        assert_eq!(answer[0].hops, Some(1));
        assert_eq!(backend.calls.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn failed_lookup_is_not_cached_and_is_retried() {
        let backend = counting(None);
        backend.fail.store(true, Relaxed);
        let cache = CachedGraph::new(backend.clone(), options(60_000, 100));
        assert!(cache.lookup(&["A"]).await.is_err());
        backend.fail.store(false, Relaxed);
        assert_eq!(cache.lookup(&["A"]).await.unwrap()[0].hops, Some(1));
        assert_eq!(backend.calls.load(Relaxed), 2);
        assert_eq!(cache.stats().entries(), 1);
    }

    #[tokio::test]
    async fn size_bound_evicts_down_to_ninety_percent_of_the_capacity() {
        let backend = counting(None);
        let cache = CachedGraph::new(backend.clone(), options(60_000, 20));
        let ids: Vec<String> = (0..30).map(|i| format!("X-{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        cache.lookup(&refs).await.unwrap();
        // The sweep runs on the fill task right after the answers are delivered.
        for _ in 0..100 {
            if cache.stats().entries() <= 18 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stats = cache.stats();
        assert_eq!(stats.entries(), 18);
        assert_eq!(stats.evictions(), 12);
    }
}
