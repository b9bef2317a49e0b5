//! The admin HTTP endpoint on `admin.listen`: `GET /metrics`, `/healthz`, `/readyz` and
//! `/snapshot/{kind}/{id}`.
//!
//! It runs on the job's tokio runtime and shares nothing with the hot path that could make
//! the pipeline wait: metrics are atomics read at scrape time, readiness is atomics, and a
//! snapshot look-up is one lock-free `ArcSwap` load. Each connection serves one request
//! and closes (a scraper connects once per scrape), and a client gets a few seconds to
//! send its request head, so idle connections do not pile up.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use riskstream_graph::EntityKind;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Observer;
use crate::aggregate::KeySnapshot;
use crate::event::format_ts;
use crate::features::window_label;

/// How long a client may take to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "`admin.listen`: cannot listen on {addr}: {source}; set `admin.listen` (or RISKSTREAM__ADMIN__LISTEN) to a free address and port, or to \"\" to turn the admin endpoint off"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running admin endpoint.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
    /// Stops the endpoint when the server is stopped or dropped.
    stop: DropGuard,
}

impl AdminServer {
    /// The address it listens on (the real port when `admin.listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until it stopped accepting connections (after `shutdown` resolved).
    pub async fn stopped(self) {
        let AdminServer { task, stop, .. } = self;
        // Still stops it if this wait is dropped half-way.
        let _stop = stop;
        let _ = task.await;
    }

    /// Stops accepting connections now and waits until the listening socket is closed:
    /// once this returns, a connection to [`AdminServer::local_addr`] is refused.
    pub async fn stop(self) {
        let AdminServer { task, stop, .. } = self;
        drop(stop);
        let _ = task.await;
    }
}

/// Binds `addr` and serves the admin endpoint for `observer` until `shutdown` resolves or the
/// returned server is stopped or dropped.
///
/// Binding happens before this returns, so a port in use is an error at start-up
/// ([`AdminError::Bind`], naming `admin.listen`). Must be called on a tokio runtime.
pub async fn serve(
    addr: SocketAddr,
    observer: Arc<Observer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<AdminServer, AdminError> {
    let bind_error = |source| AdminError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    tracing::info!(address = %local_addr, "admin endpoint listening");
    let stop = CancellationToken::new();
    let stopped = stop.clone().cancelled_owned();
    let task = tokio::spawn(accept(listener, observer, async move {
        tokio::select! {
            () = shutdown => {}
            () = stopped => {}
        }
    }));
    Ok(AdminServer {
        local_addr,
        task,
        stop: stop.drop_guard(),
    })
}

async fn accept(
    listener: TcpListener,
    observer: Arc<Observer>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::debug!(error = %err, "admin connection not accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let observer = observer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = respond(&observer, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            let served = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(error = %err, "admin connection ended with an error");
            }
        });
    }
    tracing::debug!("admin endpoint stopped");
}

/// The response to one request.
pub(crate) fn respond<B>(observer: &Observer, request: &Request<B>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let path = request.uri().path();
    match path {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(observer.encode())));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match observer.readiness().check() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {reason}\n"),
            ),
        },
        _ => match path
            .strip_prefix("/snapshot/")
            .and_then(|rest| rest.split_once('/'))
        {
            Some((kind, id)) if !id.is_empty() && !id.contains('/') => {
                snapshot_key(observer, kind, id)
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz, /readyz or /snapshot/{kind}/{id}\n",
            ),
        },
    }
}

/// One key's aggregates as `/snapshot/{kind}/{id}` shows them.
#[derive(Debug, Serialize)]
struct KeyView<'a> {
    snapshot_id: u64,
    /// `None` before the first snapshot.
    watermark: Option<String>,
    watermark_ms: Option<i64>,
    kind: &'static str,
    id: &'a str,
    windows: Vec<WindowView>,
    distinct_counterparties: u32,
    /// The same values in the shape of a result's `aggregates.<kind>` object
    /// (`count_<w>`, `sum_<w>`, and `distinct_counterparties` for accounts), so that a
    /// key's latest result and its snapshot compare field by field.
    aggregates: serde_json::Map<String, serde_json::Value>,
    first_seen: String,
    last_seen: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    country: Option<&'a str>,
    amount_mean: f64,
    amount_std: f64,
}

#[derive(Debug, Serialize)]
struct WindowView {
    window: String,
    count: u32,
    sum: f64,
}

#[derive(Debug, Serialize)]
struct ErrorView<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot_id: Option<u64>,
}

const KINDS: [EntityKind; 4] = [
    EntityKind::Account,
    EntityKind::Device,
    EntityKind::Ip,
    EntityKind::Merchant,
];

fn snapshot_key(observer: &Observer, kind: &str, id: &str) -> Response<Full<Bytes>> {
    // Ids travel percent-encoded in the path (`A%2F1` for `A/1`).
    let Ok(id) = percent_encoding::percent_decode_str(id).decode_utf8() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "the id is not UTF-8 text once percent-decoded",
            None,
        );
    };
    let id = &*id;
    let Some(kind) = KINDS.into_iter().find(|k| k.as_str() == kind) else {
        let message = format!("unknown kind {kind:?}; use one of account, device, ip, merchant");
        return json_error(StatusCode::BAD_REQUEST, &message, None);
    };
    let Some(view) = observer.aggregates() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the aggregate state is not available yet",
            None,
        );
    };
    if !view.aggregator().options().kinds.contains(&kind) {
        let message = format!("{kind} keys are not aggregated by this job (see aggregate.keys)");
        return json_error(StatusCode::BAD_REQUEST, &message, None);
    }
    let snapshot = view.snapshots().load();
    let Some(key) = snapshot.keys.get(kind, id) else {
        let message = format!("no {kind} {id:?} in snapshot {}", snapshot.id);
        return json_error(StatusCode::NOT_FOUND, &message, Some(snapshot.id));
    };
    let has_watermark = snapshot.watermark_ms != i64::MIN;
    let body = key_view(
        snapshot.id,
        has_watermark.then_some(snapshot.watermark_ms),
        kind,
        id,
        &snapshot.windows,
        key,
    );
    json(StatusCode::OK, &body)
}

fn key_view<'a>(
    snapshot_id: u64,
    watermark_ms: Option<i64>,
    kind: EntityKind,
    id: &'a str,
    windows: &[Duration],
    key: &'a KeySnapshot,
) -> KeyView<'a> {
    let mut aggregates = serde_json::Map::new();
    for (window, (count, sum)) in windows.iter().zip(key.windows.iter()) {
        let label = window_label(*window);
        aggregates.insert(format!("count_{label}"), count.into());
        aggregates.insert(format!("sum_{label}"), sum.into());
    }
    if kind == EntityKind::Account {
        aggregates.insert(
            "distinct_counterparties".into(),
            key.distinct_counterparties.into(),
        );
    }
    KeyView {
        aggregates,
        snapshot_id,
        watermark: watermark_ms.map(format_ts),
        watermark_ms,
        kind: kind.as_str(),
        id,
        windows: windows
            .iter()
            .zip(key.windows.iter())
            .map(|(window, (count, sum))| WindowView {
                window: window_label(*window),
                count,
                sum,
            })
            .collect(),
        distinct_counterparties: key.distinct_counterparties,
        first_seen: format_ts(key.first_seen_ms),
        last_seen: format_ts(key.last_seen_ms),
        first_seen_ms: key.first_seen_ms,
        last_seen_ms: key.last_seen_ms,
        country: key.country.as_ref().and_then(|c| c.alpha2()),
        amount_mean: key.amount_mean,
        amount_std: key.amount_std,
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    // Serializing these plain structs cannot fail; an empty object is the fallback anyway.
    let mut bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn json_error(status: StatusCode, error: &str, snapshot_id: Option<u64>) -> Response<Full<Bytes>> {
    json(status, &ErrorView { error, snapshot_id })
}
