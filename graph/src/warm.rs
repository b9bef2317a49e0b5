//! Warming the enrichment cache from Neo4j: the answers for the whole graph are stored in
//! the cache before the first event and renewed every half TTL, so cached answers are
//! replaced before they expire instead of all expiring together and sending a burst of
//! misses to Neo4j.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::{CachedGraph, GraphError, Neo4jGraph};

/// The longest one fill may take; a graph too large to list in that time starts with the
/// part that arrived, and the next refresh tries again. It also bounds how long a warm-up
/// holds back the first event.
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(60);

/// Fills a [`CachedGraph`] in front of Neo4j with the answers for every entity of the graph.
/// Cheap to clone.
#[derive(Clone)]
pub struct CacheWarmer {
    neo4j: Neo4jGraph,
    cache: CachedGraph,
    /// The most answers listed per fill: the cache's capacity.
    capacity: usize,
    /// Time between refreshes: half the cache's TTL.
    every: Duration,
}

/// How a warm-up ended.
#[derive(Debug)]
pub enum WarmUp {
    /// The cache holds `stored` answers, listed and stored in `took`.
    Filled { stored: usize, took: Duration },
    /// Neo4j could not list the graph: the cache starts cold and entities are asked about
    /// per batch.
    Cold(GraphError),
    /// Shutdown was requested before the warm-up finished.
    Stopped,
}

impl CacheWarmer {
    /// A warmer that lists at most `capacity` answers from `neo4j` into `cache` and refreshes
    /// them every half of `ttl` (the cache's own capacity and TTL).
    pub fn new(neo4j: Neo4jGraph, cache: CachedGraph, capacity: usize, ttl: Duration) -> Self {
        CacheWarmer {
            neo4j,
            cache,
            capacity,
            every: ttl / 2,
        }
    }

    /// One fill: how many answers were stored and how long it took.
    async fn fill(&self) -> Result<(usize, Duration), GraphError> {
        let started = Instant::now();
        let listing =
            tokio::time::timeout(WARM_UP_LIMIT, self.neo4j.answers_for_all(self.capacity))
                .await
                .map_err(|_| GraphError::Timeout {
                    backend: "neo4j",
                    after: WARM_UP_LIMIT,
                })??;
        let stored = self.cache.preload(listing.answers, listing.complete).await;
        Ok((stored, started.elapsed()))
    }

    /// Warms the cache before the first event. A failure is logged, not fatal: the job then
    /// starts cold and asks Neo4j per batch. `stop` (a shutdown request) cuts it short.
    pub async fn warm_up(&self, stop: impl Future<Output = ()>) -> WarmUp {
        tracing::info!("warming the graph cache from Neo4j (graph.cache_warm_up)");
        let filled = tokio::select! {
            biased;
            () = stop => return WarmUp::Stopped,
            filled = self.fill() => filled,
        };
        match filled {
            Ok((stored, took)) => {
                tracing::info!(
                    entities = stored,
                    seconds = took.as_secs_f64(),
                    "graph cache warmed"
                );
                WarmUp::Filled { stored, took }
            }
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "cannot warm the graph cache; starting cold, entities are asked about per batch"
                );
                WarmUp::Cold(err)
            }
        }
    }

    /// Renews the cached answers every half TTL until `stop` resolves.
    pub fn spawn_refresh(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = tokio::time::sleep(self.every) => {}
                }
                let filled = tokio::select! {
                    biased;
                    () = &mut stop => break,
                    filled = self.fill() => filled,
                };
                match filled {
                    Ok((stored, took)) => tracing::debug!(
                        entities = stored,
                        seconds = took.as_secs_f64(),
                        "graph cache refreshed"
                    ),
                    Err(err) => tracing::warn!(
                        error = %err,
                        "cannot refresh the graph cache; cached answers expire and are asked about per batch"
                    ),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{BreakerOptions, CacheOptions, Neo4jOptions};

    fn warmer(uri: String) -> CacheWarmer {
        let neo4j = Neo4jGraph::connect(&Neo4jOptions {
            uri,
            user: "neo4j".into(),
            password: "unused".into(),
            max_hops: 3,
            pool_size: 1,
            query_timeout: Duration::from_secs(2),
            breaker: BreakerOptions::default(),
        })
        .unwrap();
        let ttl = Duration::from_secs(60);
        let cache = CachedGraph::new(
            Arc::new(neo4j.clone()),
            CacheOptions {
                ttl,
                capacity: 1000,
            },
        );
        CacheWarmer::new(neo4j, cache, 1000, ttl)
    }

    /// A port with nothing listening on it.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_warm_up_that_cannot_reach_neo4j_starts_cold_instead_of_failing() {
        let warmer = warmer(format!("bolt://127.0.0.1:{}", closed_port()));
        let outcome = warmer.warm_up(std::future::pending()).await;
        assert!(matches!(outcome, WarmUp::Cold(_)), "{outcome:?}");
        assert_eq!(warmer.cache.stats().preloaded(), 0);
    }

    #[tokio::test]
    async fn a_warm_up_stops_as_soon_as_shutdown_is_requested() {
        // Accepts connections (the kernel completes them) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let warmer = warmer(format!("bolt://127.0.0.1:{port}"));
        let outcome = warmer.warm_up(std::future::ready(())).await;
        assert!(matches!(outcome, WarmUp::Stopped), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_refresh_ends_when_shutdown_is_requested() {
        let warmer = warmer(format!("bolt://127.0.0.1:{}", closed_port()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let refreshing = warmer.spawn_refresh(async move {
            let _ = stopped.await;
        });
        stop.send(()).unwrap();
        // Without the stop the refresh loops for as long as the job runs.
        refreshing.await.unwrap();
    }
}
