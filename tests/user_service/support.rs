//! Helpers for the user-service integration tests: a fresh database per test (a SQLite file, or a
//! new database in the PostgreSQL cluster named by `TEST_DATABASE_URL`), an in-process server
//! on a random loopback port, a kubelet-style key ring directory, and HTTP shortcuts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use authkeyring::service::config::{Backend, Config, KeySource};
use authkeyring::service::{AppState, Service};
use authkeyring::token::{KeySet, VerifyOptions};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database that exists only for one test.
pub struct Database {
    pub url: String,
    pub backend: Backend,
    _dir: TempDir,
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(db: Db) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match db {
            Db::Sqlite => Self {
                url: format!("sqlite://{}", dir.path().join("users.db").display()),
                backend: Backend::Sqlite,
                _dir: dir,
                postgres: None,
            },
            Db::Postgres => {
                let admin_url = std::env::var("TEST_DATABASE_URL").unwrap_or_default();
                assert!(
                    !admin_url.is_empty(),
                    "TEST_DATABASE_URL is not set: the PostgreSQL variants of the user-service tests need a \
                     server. Run `export TEST_DATABASE_URL=$(hack/postgres.sh start)` first, or filter the \
                     tests with `-- --skip postgres::`"
                );
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let name = format!(
                    "akr_test_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| panic!("connecting to TEST_DATABASE_URL: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();

                let mut url = reqwest::Url::parse(&admin_url).unwrap();
                url.set_path(&format!("/{name}"));
                Self {
                    url: url.to_string(),
                    backend: Backend::Postgres,
                    _dir: dir,
                    postgres: Some((admin_url, name)),
                }
            }
        }
    }

    /// Drops a PostgreSQL test database; the SQLite file goes with its temporary directory.
    pub async fn remove(self) {
        if let Some((admin_url, name)) = self.postgres {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

/// A configuration for tests: loopback, random port, default verification.
pub fn config(database: &Database, keys: KeySource) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Zeroizing::new(database.url.clone()),
        backend: database.backend,
        database_max_connections: 4,
        demo_users: 0,
        user_cache_ttl: Duration::from_secs(1),
        token_cache_capacity: authkeyring::token::DEFAULT_MEMO_CAPACITY,
        keys,
        verify: VerifyOptions::default(),
        ignored_key_sources: Vec::new(),
    }
}

pub fn jwks_source(jwks: &str) -> KeySource {
    KeySource::Jwks(KeySet::from_jwks(jwks.as_bytes()).unwrap())
}

/// A service serving on a random loopback port until stopped.
pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        let service = Service::start(config).await.expect("the service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = service.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(service.serve(listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            base,
            client,
            state,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional raw `Authorization` value and JSON body text.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.unwrap()
    }

    /// The status and JSON body of a request.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let response = self.send(method, path, authorization, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        let json =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} body is not JSON: {text:?}"));
        (status, json)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let authorization = token.map(|t| format!("Bearer {t}"));
        self.call(Method::GET, path, authorization.as_deref(), None).await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// A directory laid out as kubelet mounts a Secret or ConfigMap: the files live in a timestamped
/// directory, `..data` links to it, and each file name links through `..data`.
pub struct KeyringDir {
    pub dir: TempDir,
    generation: u32,
}

impl KeyringDir {
    pub fn new(jwks: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut keyring = Self { dir, generation: 0 };
        keyring.publish(jwks);
        std::os::unix::fs::symlink("..data/jwks.json", keyring.path().join("jwks.json")).unwrap();
        keyring
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new generation and swaps `..data` to it atomically, as kubelet does.
    pub fn publish(&mut self, jwks: &str) {
        self.generation += 1;
        let generation = format!("..2026_12_03_18_00_00.{:09}", self.generation);
        let new_dir = self.path().join(&generation);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("jwks.json"), jwks).unwrap();

        let old = std::fs::read_link(self.path().join("..data")).ok();
        let tmp = self.path().join("..data_tmp");
        std::os::unix::fs::symlink(&generation, &tmp).unwrap();
        std::fs::rename(&tmp, self.path().join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(self.path().join(old)).unwrap();
        }
    }

    pub fn source(&self, interval: Duration) -> KeySource {
        KeySource::Dir {
            dir: PathBuf::from(self.path()),
            interval,
        }
    }
}

/// Waits until `check` holds, polling, or fails the test after ten seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
