//! The user-service's HTTP application: routes, shared state, per-request observation, and the
//! start and graceful stop of one serving process.
//!
//! Thin glue: token rules live in [`crate::token`], storage in [`store`], key reloading in
//! [`keyset`]. Nothing a client sends can produce a 500, and no internal error text reaches a
//! response.

pub mod cache;
pub mod config;
pub mod keyset;
pub mod metrics;
pub mod sqlite_reader;
pub mod store;

mod api;
mod auth;
mod users;

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use self::api::{ApiError, ServerFault};
use self::cache::UserCache;
use self::config::{Config, KeySource};
use self::keyset::{DirReloader, LiveKeys};
use self::metrics::Metrics;
use self::store::{Store, StoreError};
use crate::token::{KeySet, Verifier};

/// The request id header, echoed on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The largest request body accepted.
const BODY_LIMIT: usize = 16 * 1024;

/// The most profiles the read cache holds.
const USER_CACHE_CAPACITY: usize = 100_000;

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The route templates, as metric labels.
const ROUTES: [&str; 6] = [
    "/users",
    "/users/{id}",
    "/healthz",
    "/readyz",
    "/metrics",
    "/.well-known/jwks.json",
];

/// What every handler shares.
pub struct Shared {
    pub keys: Arc<LiveKeys>,
    pub verifier: Verifier,
    pub store: Store,
    pub cache: UserCache,
    pub metrics: Arc<Metrics>,
}

/// Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the user database")]
    Store(#[from] StoreError),
    #[error("creating demo users")]
    DemoUsers(#[source] StoreError),
}

/// One started service: its state, and the key reloader when keys come from a directory.
pub struct Service {
    state: AppState,
    stop_reloader: watch::Sender<bool>,
    reloader: Option<JoinHandle<()>>,
}

impl Service {
    /// Opens and migrates the database, creates demo users, loads the key set and, for a key
    /// ring directory, starts polling it.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(
            &config.database_url,
            config.backend,
            config.database_max_connections,
        )
        .await?;
        tracing::info!(backend = ?store.backend(), "database ready");

        if config.demo_users > 0 {
            let created = store
                .create_demo_users(config.demo_users)
                .await
                .map_err(StartError::DemoUsers)?;
            tracing::info!(requested = config.demo_users, created, "demo users ready");
        }

        let source = config.keys.variable();
        for ignored in &config.ignored_key_sources {
            tracing::warn!(used = source, ignored, "several key sources set; using one");
        }
        let (stop_reloader, stop) = watch::channel(false);
        let (keys, reloader) = match config.keys {
            KeySource::Secret(set) | KeySource::Jwks(set) => {
                let set = set.with_memo_capacity(config.token_cache_capacity);
                tracing::info!(source, keys = set.len(), "key set loaded");
                (Arc::new(LiveKeys::new(set)), None)
            }
            KeySource::Dir { dir, interval } => {
                let keys = Arc::new(LiveKeys::new(KeySet::empty()));
                let mut reloader = DirReloader::new(&dir, config.token_cache_capacity);
                let first = reloader.poll(&keys);
                keyset::report(&first, &keys, &metrics);
                tracing::info!(path = %reloader.path().display(), ?interval, "watching the key ring directory");
                let task = tokio::spawn(reloader.run(keys.clone(), metrics.clone(), interval, stop));
                (keys, Some(task))
            }
        };
        metrics.set_keys_loaded(keys.get().len());

        let verifier = Verifier::new(config.verify);
        let cache = UserCache::new(config.user_cache_ttl, USER_CACHE_CAPACITY);
        let state = AppState(Arc::new(Shared {
            keys,
            verifier,
            store,
            cache,
            metrics,
        }));
        Ok(Self {
            state,
            stop_reloader,
            reloader,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The application, ready to serve.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish, stops the key
    /// reloader and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let served = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await;
        tracing::info!("stopped accepting requests; in-flight requests finished");

        let _ = self.stop_reloader.send(true);
        if let Some(reloader) = self.reloader {
            let _ = reloader.await;
        }
        self.state.store.close().await;
        served
    }
}

/// The routes, with request observation around all of them.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/users", axum::routing::post(users::create_user))
        .route("/users/{id}", get(users::get_user).patch(users::update_user))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/.well-known/jwks.json", get(jwks))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let not_ready = |reason: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        )
    };

    if state.keys.get().is_empty() {
        return not_ready("no verification keys loaded").into_response();
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Json(json!({ "status": "ready" })).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness check: database unreachable");
            not_ready("database unreachable").into_response()
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_TIMEOUT, "readiness check: database did not answer in time");
            not_ready("database unreachable").into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// The public keys of the live key set; HMAC keys are never listed.
async fn jwks(State(state): State<AppState>) -> Response {
    let keys = state.keys.get();
    (
        [(header::CONTENT_TYPE, "application/json")],
        keys.public_jwks().to_owned(),
    )
        .into_response()
}

/// Gives each request an id and a span, and records its outcome in metrics.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| ROUTES.iter().find(|r| **r == matched.as_str()))
        .copied()
        .unwrap_or("unmatched");
    let method = method_label(request.method());
    let request_id = match request.headers().get(&REQUEST_ID) {
        Some(given) if acceptable_request_id(given) => given.clone(),
        _ => new_request_id(),
    };

    // NB: at debug, as tower-http makes its request spans: at the default level a span per
    // request costs about a quarter of the throughput. Failures are logged below with the
    // request id either way.
    let span = tracing::debug_span!(
        "request",
        request.id = request_id.to_str().unwrap_or_default(),
        http.method = method,
        http.route = route,
    );
    let mut response = next.run(request).instrument(span.clone()).await;

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(ServerFault(error)) = response.extensions_mut().remove::<ServerFault>() {
        let id = request_id.to_str().unwrap_or_default();
        if status == 503 {
            tracing::warn!(request.id = id, http.route = route, http.status = status, %error, "request failed");
        } else {
            tracing::error!(request.id = id, http.route = route, http.status = status, %error, "request failed");
        }
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    state.metrics.observe_request(route, method, status, elapsed);
    span.in_scope(|| {
        tracing::debug!(
            http.status = status,
            elapsed_us = elapsed.as_micros() as u64,
            "request served"
        )
    });
    response
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A caller's request id is kept when it is short and plain, so it cannot forge log lines.
fn acceptable_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A process-unique id: a random prefix drawn at start, then a counter.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // NB: uniqueness, not secrecy, is needed; a failed draw falls back to the process id.
        match aws_lc_rs::rand::fill(&mut bytes) {
            Ok(()) => u32::from_be_bytes(bytes),
            Err(_) => std::process::id(),
        }
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{prefix:08x}-{n:012x}")).expect("hex digits are a header value")
}
