//! `[graph]`: where the entity graph lives and how look-ups are bounded and cached.

use std::time::Duration;

use crate::document::Document;
use crate::duration::format_duration;
use crate::read::{whole_value, Report, Section};
use crate::redact::{redacted_uri, uri_password};
use crate::secret::{Secret, REDACTED};

/// The longest path searched for a flagged entity. Path search cost grows exponentially
/// with hops, and beyond six everything is connected to everything.
pub const MAX_HOPS_LIMIT: u32 = 6;

/// URI schemes the Neo4j Bolt driver accepts.
const BOLT_SCHEMES: [&str; 6] = [
    "bolt",
    "bolt+s",
    "bolt+ssc",
    "neo4j",
    "neo4j+s",
    "neo4j+ssc",
];

choice_enum! {
    /// Which graph answers the enrichment questions.
    pub enum GraphKind {
        /// The embedded in-memory graph, loaded from `graph.path`.
        Memory = "memory",
        /// A Neo4j server at `graph.uri`.
        Neo4j = "neo4j",
        /// No graph: every result says `graph.status = "skipped"`.
        None = "none",
    }
}

choice_enum! {
    /// What the job decides for an event the graph did not answer in time
    /// (`graph.status = "unavailable"`: Neo4j down, slow past `graph.batch_deadline`, or
    /// the look-up failed). Events of a job without a graph (`graph.kind = "none"`,
    /// status `skipped`) are always decided by their score: that is the configuration, not
    /// an outage.
    pub enum UnavailablePolicy {
        /// Decide by the model's score as usual; the model was trained with graph dropout
        /// to score sensibly without its graph features.
        Score = "score",
        /// Send every such event to review, whatever its score: nothing is allowed or
        /// blocked without the graph's evidence.
        Review = "review",
        /// Allow every such event, whatever its score (fail open).
        Allow = "allow",
    }
}

/// `[graph]`: the graph backend, its connection and the enrichment cache.
#[derive(Clone, PartialEq)]
pub struct GraphConfig {
    /// Which graph answers look-ups.
    pub kind: GraphKind,
    /// Graph file for the in-memory graph; empty means the graph of the built-in generator.
    pub path: String,
    /// Longest path searched from an event's entities to a flagged entity, 1 to 6.
    pub max_hops: u32,
    /// Bolt URI of the Neo4j server. A password in it is printed as `***`; print it with
    /// [`GraphConfig::redacted_uri`].
    pub uri: String,
    /// Neo4j user name.
    pub user: String,
    /// Neo4j password; never printed.
    pub password: Secret,
    /// Connections kept open to Neo4j.
    pub pool_size: usize,
    /// Longest time one Neo4j query may take before it is abandoned.
    pub query_timeout: Duration,
    /// Longest time a micro-batch waits for graph answers; events still waiting are scored
    /// without graph features (`graph.status = "unavailable"`) instead of stalling the stream.
    pub batch_deadline: Duration,
    /// Whether answers are cached per entity.
    pub cache_enabled: bool,
    /// How long a cached answer is used before it is asked again.
    pub cache_ttl: Duration,
    /// Most entities kept in the cache.
    pub cache_capacity: usize,
    /// Whether the job fills the cache with the whole graph's answers before its first
    /// event and renews them every half TTL (Neo4j only).
    pub cache_warm_up: bool,
    /// What an event without a graph answer (`graph.status = "unavailable"`) is decided.
    pub unavailable_policy: UnavailablePolicy,
}

/// The in-memory graph, so that the default run needs no Neo4j.
pub(crate) fn default_graph_kind() -> GraphKind {
    GraphKind::Memory
}

/// Empty: the in-memory graph is built by the built-in generator with its seed.
pub(crate) fn default_graph_path() -> String {
    String::new()
}

/// 3 hops: reaches fraud rings through one shared device or account, the pattern the
/// generator and the model are built around.
pub(crate) fn default_max_hops() -> u32 {
    3
}

/// Neo4j's default Bolt port on loopback.
pub(crate) fn default_uri() -> String {
    "bolt://127.0.0.1:7687".to_owned()
}

/// Neo4j's default administrator user.
pub(crate) fn default_user() -> String {
    "neo4j".to_owned()
}

/// The model's own fallback: it was trained to score without its graph features, and the
/// job's promise is to keep deciding when the graph is down.
pub(crate) fn default_unavailable_policy() -> UnavailablePolicy {
    UnavailablePolicy::Score
}

/// Empty: a password is never shipped as a default; set it in the environment.
pub(crate) fn default_password() -> Secret {
    Secret::default()
}

/// 8 connections: enough for concurrent batches on a few workers, well under Neo4j's limit.
pub(crate) fn default_pool_size() -> usize {
    8
}

/// 2 seconds: a path query within a few hops answers in milliseconds when healthy.
pub(crate) fn default_query_timeout() -> Duration {
    Duration::from_secs(2)
}

/// 50 ms: the longest delay graph enrichment may add to an event.
pub(crate) fn default_batch_deadline() -> Duration {
    Duration::from_millis(50)
}

/// On: the same accounts and devices recur, and the graph changes slowly.
pub(crate) fn default_cache_enabled() -> bool {
    true
}

/// 60 seconds: a newly flagged entity is seen within a minute.
pub(crate) fn default_cache_ttl() -> Duration {
    Duration::from_secs(60)
}

/// One million entities: more than the default generated graph holds, so the default run
/// never evicts.
pub(crate) fn default_cache_capacity() -> usize {
    1_000_000
}

/// On: two queries at start answer every entity of a graph up to millions of nodes, where
/// a cold cache would send each entity's first event to Neo4j (and, past the deadline,
/// score it without graph features).
pub(crate) fn default_cache_warm_up() -> bool {
    true
}

impl Default for GraphConfig {
    fn default() -> Self {
        GraphConfig {
            kind: default_graph_kind(),
            path: default_graph_path(),
            max_hops: default_max_hops(),
            uri: default_uri(),
            user: default_user(),
            password: default_password(),
            pool_size: default_pool_size(),
            query_timeout: default_query_timeout(),
            batch_deadline: default_batch_deadline(),
            cache_enabled: default_cache_enabled(),
            cache_ttl: default_cache_ttl(),
            cache_capacity: default_cache_capacity(),
            cache_warm_up: default_cache_warm_up(),
            unavailable_policy: default_unavailable_policy(),
        }
    }
}

/// Shows the URI and the password redacted, so logging the config is safe.
impl std::fmt::Debug for GraphConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("max_hops", &self.max_hops)
            .field("uri", &self.redacted_uri())
            .field("user", &self.user)
            .field("password", &self.password)
            .field("pool_size", &self.pool_size)
            .field("query_timeout", &self.query_timeout)
            .field("batch_deadline", &self.batch_deadline)
            .field("cache_enabled", &self.cache_enabled)
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_warm_up", &self.cache_warm_up)
            .field("unavailable_policy", &self.unavailable_policy)
            .finish()
    }
}

impl GraphConfig {
    /// `uri` with the password of its user information (`bolt://user:password@host`)
    /// replaced by `***`: the form to put in logs and messages.
    pub fn redacted_uri(&self) -> String {
        redacted_uri(&self.uri)
    }

    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut secrets = vec![self.password.expose().to_owned()];
        if let Some((start, end)) = uri_password(&self.uri) {
            secrets.push(self.uri[start..end].to_owned());
        }
        secrets
    }

    pub(crate) fn read(mut s: Section<'_>) -> GraphConfig {
        let config = GraphConfig {
            kind: s.choice("kind", default_graph_kind()),
            path: s.string("path", default_graph_path()),
            max_hops: s.whole("max_hops", default_max_hops()),
            uri: s.string("uri", default_uri()),
            user: s.string("user", default_user()),
            password: Secret::new(s.secret("password")),
            pool_size: s.whole("pool_size", default_pool_size()),
            query_timeout: s.duration("query_timeout", default_query_timeout()),
            batch_deadline: s.duration("batch_deadline", default_batch_deadline()),
            cache_enabled: s.boolean("cache_enabled", default_cache_enabled()),
            cache_ttl: s.duration("cache_ttl", default_cache_ttl()),
            cache_capacity: s.whole("cache_capacity", default_cache_capacity()),
            cache_warm_up: s.boolean("cache_warm_up", default_cache_warm_up()),
            unavailable_policy: s.choice("unavailable_policy", default_unavailable_policy()),
        };
        s.finish();
        config
    }

    /// An empty password prints as empty, which says "not set" without revealing anything.
    pub(crate) fn write(&self, doc: &mut Document, redact: bool) {
        let section = doc.section("graph");
        section.set("kind", self.kind.as_str());
        section.set("path", self.path.as_str());
        section.set("max_hops", whole_value(self.max_hops));
        if redact {
            section.set("uri", self.redacted_uri());
        } else {
            section.set("uri", self.uri.as_str());
        }
        section.set("user", self.user.as_str());
        let password = if redact && !self.password.is_empty() {
            REDACTED
        } else {
            self.password.expose()
        };
        section.set("password", password);
        section.set("pool_size", whole_value(self.pool_size));
        section.set("query_timeout", format_duration(self.query_timeout));
        section.set("batch_deadline", format_duration(self.batch_deadline));
        section.set("cache_enabled", self.cache_enabled);
        section.set("cache_ttl", format_duration(self.cache_ttl));
        section.set("cache_capacity", whole_value(self.cache_capacity));
        section.set("cache_warm_up", self.cache_warm_up);
        section.set("unavailable_policy", self.unavailable_policy.as_str());
    }

    pub(crate) fn check(&self, r: &mut Report) {
        r.require(
            (1..=MAX_HOPS_LIMIT).contains(&self.max_hops),
            "graph.max_hops",
            &format!("between 1 and {MAX_HOPS_LIMIT}"),
            self.max_hops,
            whole_value(default_max_hops()),
        );
        r.require(
            self.kind != GraphKind::Neo4j || is_bolt_uri(&self.uri),
            "graph.uri",
            &format!(
                "a Bolt URI ({}://host:port) when `graph.kind` is \"neo4j\"",
                BOLT_SCHEMES.join("|")
            ),
            format!("{:?}", self.redacted_uri()),
            default_uri(),
        );
        r.require(
            self.pool_size > 0,
            "graph.pool_size",
            "at least 1",
            self.pool_size,
            whole_value(default_pool_size()),
        );
        r.require_positive(
            self.query_timeout,
            "graph.query_timeout",
            default_query_timeout(),
        );
        r.require_positive(
            self.batch_deadline,
            "graph.batch_deadline",
            default_batch_deadline(),
        );
        r.require_positive(self.cache_ttl, "graph.cache_ttl", default_cache_ttl());
        r.require(
            !self.cache_enabled || self.cache_capacity > 0,
            "graph.cache_capacity",
            "at least 1 while `graph.cache_enabled` is true",
            self.cache_capacity,
            whole_value(default_cache_capacity()),
        );
    }
}

fn is_bolt_uri(uri: &str) -> bool {
    uri.split_once("://").is_some_and(|(scheme, rest)| {
        BOLT_SCHEMES.contains(&scheme) && !rest.is_empty() && !rest.starts_with(':')
    })
}
