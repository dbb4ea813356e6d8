//! The user-service's configuration: flags and environment variables as clap reads them, and the
//! checked [`Config`] the service runs with.
//!
//! Every setting has an environment variable, as in the seed's Deployment; most also have a flag.
//! A setting that parses but makes no sense is a [`ConfigError`] that names its variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::telemetry::LogFormat;
use crate::token::{
    DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_MEMO_CAPACITY, KeySet, KeySetError, VerifyOptions,
};

/// The database used when `DATABASE_URL` is unset: a SQLite file in the working directory,
/// created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://user-service.db";

/// The user-service's settings as given on the command line or in the environment.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "BIND_ADDRESS", value_name = "BIND_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,

    /// Database: `postgres://…` or `sqlite://…` [default: sqlite://user-service.db, created if missing]
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Most database connections held open; on a SQLite file, as many again are kept for
    /// profile reads [default: 8 for SQLite, 16 for PostgreSQL]
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        value_name = "DATABASE_MAX_CONNECTIONS"
    )]
    pub database_max_connections: Option<u32>,

    /// Create users 1 to N (`user_<id>`, `user<id>@example.com`) where they do not exist yet.
    #[arg(long, env = "DEMO_USERS", value_name = "DEMO_USERS", default_value_t = 0)]
    pub demo_users: u32,

    /// The seed's single HS256 secret; its UTF-8 bytes are the HMAC key.
    #[arg(long, env = "JWT_SECRET", value_name = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// A JWK Set as JSON, e.g. the AuthKeyRing Secret's `jwks.json` through `secretKeyRef`.
    #[arg(long, env = "JWT_JWKS", value_name = "JWT_JWKS", hide_env_values = true)]
    pub jwt_jwks: Option<String>,

    /// A mounted AuthKeyRing Secret or JWKS ConfigMap; its `jwks.json` is reloaded on change.
    #[arg(long, env = "AUTH_KEYRING_DIR", value_name = "AUTH_KEYRING_DIR")]
    pub auth_keyring_dir: Option<PathBuf>,

    /// Seconds between checks of `AUTH_KEYRING_DIR/jwks.json` for changes.
    #[arg(
        long,
        env = "AUTH_KEYRING_RELOAD_INTERVAL",
        value_name = "AUTH_KEYRING_RELOAD_INTERVAL",
        default_value_t = 1.0
    )]
    pub auth_keyring_reload_interval: f64,

    /// Seconds a read profile is served from memory; 0, the default, reads the database on every
    /// request. A profile changed through another replica may be served as it was for this long.
    #[arg(
        long,
        env = "USER_CACHE_TTL",
        value_name = "USER_CACHE_TTL",
        default_value_t = 0.0
    )]
    pub user_cache_ttl: f64,

    /// Verified tokens remembered per key set, so that a token presented again skips the
    /// signature check (its dates are still checked); 0 checks every signature.
    #[arg(long, env = "TOKEN_CACHE_CAPACITY", value_name = "TOKEN_CACHE_CAPACITY", default_value_t = DEFAULT_MEMO_CAPACITY)]
    pub token_cache_capacity: usize,

    /// When set, tokens must carry this `iss`.
    #[arg(long, env = "JWT_ISSUER", value_name = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// When set, tokens must list this audience in `aud`; when unset, tokens with `aud` are refused.
    #[arg(long, env = "JWT_AUDIENCE", value_name = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[arg(long, env = "JWT_LEEWAY", value_name = "JWT_LEEWAY", default_value_t = DEFAULT_LEEWAY_SECS)]
    pub jwt_leeway: u64,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// A setting that cannot be used. The message names the variable and never repeats a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// None of the key sources is set.
    #[error("no verification keys configured: set AUTH_KEYRING_DIR, JWT_JWKS or JWT_SECRET")]
    NoKeySource,
    /// A key source is set but unusable.
    #[error("{variable} is unusable: {source}")]
    Keys {
        variable: &'static str,
        #[source]
        source: KeySetError,
    },
    /// `AUTH_KEYRING_DIR` is not a directory.
    #[error("AUTH_KEYRING_DIR {0:?} is not a directory")]
    KeyringDir(PathBuf),
    /// A value is out of its range or malformed.
    #[error("{variable} is invalid: {reason}")]
    Invalid {
        variable: &'static str,
        reason: &'static str,
    },
}

/// Where verification keys come from.
pub enum KeySource {
    /// `JWT_SECRET`: one HS256 key for the life of the process.
    Secret(KeySet),
    /// `JWT_JWKS`: a JWK Set for the life of the process.
    Jwks(KeySet),
    /// `AUTH_KEYRING_DIR`: `jwks.json` in a mounted directory, polled for changes.
    Dir { dir: PathBuf, interval: Duration },
}

impl KeySource {
    /// The variable this source came from, for logs.
    pub fn variable(&self) -> &'static str {
        match self {
            KeySource::Secret(_) => "JWT_SECRET",
            KeySource::Jwks(_) => "JWT_JWKS",
            KeySource::Dir { .. } => "AUTH_KEYRING_DIR",
        }
    }
}

/// Which storage backend a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The checked configuration of one user-service process.
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: Zeroizing<String>,
    pub backend: Backend,
    pub database_max_connections: u32,
    pub demo_users: u32,
    pub user_cache_ttl: Duration,
    pub token_cache_capacity: usize,
    pub keys: KeySource,
    pub verify: VerifyOptions,
    /// Key sources that were set but lost to a higher-precedence one, for a startup warning.
    pub ignored_key_sources: Vec<&'static str>,
}

impl Settings {
    /// Checks the settings. Key sources take precedence in the order `AUTH_KEYRING_DIR`,
    /// `JWT_JWKS`, `JWT_SECRET`: the first one set is used, the others are ignored.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let database_url = self.database_url.filter(|u| !u.is_empty());
        let database_url = Zeroizing::new(database_url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()));
        let backend = if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else if database_url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(ConfigError::Invalid {
                variable: "DATABASE_URL",
                reason: "expected a postgres://, postgresql:// or sqlite: URL",
            });
        };
        let database_max_connections = match self.database_max_connections {
            None => match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            },
            Some(n @ 1..=1000) => n,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    variable: "DATABASE_MAX_CONNECTIONS",
                    reason: "expected 1 to 1000",
                });
            }
        };

        if !(0.0..=3600.0).contains(&self.user_cache_ttl) {
            return Err(ConfigError::Invalid {
                variable: "USER_CACHE_TTL",
                reason: "expected 0 to 3600 seconds",
            });
        }
        let user_cache_ttl = Duration::from_secs_f64(self.user_cache_ttl);

        let (keys, ignored_key_sources) = key_source(
            self.auth_keyring_dir,
            self.jwt_jwks.map(Zeroizing::new),
            self.jwt_secret.map(Zeroizing::new),
            self.auth_keyring_reload_interval,
        )?;

        let non_empty = |value: Option<String>, variable| match value {
            Some(v) if v.is_empty() => Err(ConfigError::Invalid {
                variable,
                reason: "empty; unset it instead",
            }),
            other => Ok(other),
        };
        if self.jwt_leeway > 3600 {
            return Err(ConfigError::Invalid {
                variable: "JWT_LEEWAY",
                reason: "expected 0 to 3600 seconds",
            });
        }
        let verify = VerifyOptions {
            leeway_secs: self.jwt_leeway,
            issuer: non_empty(self.jwt_issuer, "JWT_ISSUER")?,
            audience: non_empty(self.jwt_audience, "JWT_AUDIENCE")?,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        };

        Ok(Config {
            listen: SocketAddr::new(self.bind_address, self.port),
            database_url,
            backend,
            database_max_connections,
            demo_users: self.demo_users,
            user_cache_ttl,
            token_cache_capacity: self.token_cache_capacity,
            keys,
            verify,
            ignored_key_sources,
        })
    }
}

fn key_source(
    dir: Option<PathBuf>,
    jwks: Option<Zeroizing<String>>,
    secret: Option<Zeroizing<String>>,
    reload_interval: f64,
) -> Result<(KeySource, Vec<&'static str>), ConfigError> {
    let dir = dir.filter(|d| !d.as_os_str().is_empty());
    let jwks = jwks.filter(|j| !j.is_empty());
    let secret = secret.filter(|s| !s.is_empty());
    let set: Vec<&'static str> = [
        dir.as_ref().map(|_| "AUTH_KEYRING_DIR"),
        jwks.as_ref().map(|_| "JWT_JWKS"),
        secret.as_ref().map(|_| "JWT_SECRET"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let ignored = set.iter().skip(1).copied().collect();

    let source = if let Some(dir) = dir {
        if !(0.01..=3600.0).contains(&reload_interval) {
            return Err(ConfigError::Invalid {
                variable: "AUTH_KEYRING_RELOAD_INTERVAL",
                reason: "expected 0.01 to 3600 seconds",
            });
        }
        if !dir.is_dir() {
            return Err(ConfigError::KeyringDir(dir));
        }
        KeySource::Dir {
            dir,
            interval: Duration::from_secs_f64(reload_interval),
        }
    } else if let Some(jwks) = jwks {
        let set = KeySet::from_jwks(jwks.as_bytes()).map_err(|source| ConfigError::Keys {
            variable: "JWT_JWKS",
            source,
        })?;
        KeySource::Jwks(set)
    } else if let Some(secret) = secret {
        let set = KeySet::from_secret(&secret).map_err(|source| ConfigError::Keys {
            variable: "JWT_SECRET",
            source,
        })?;
        KeySource::Secret(set)
    } else {
        return Err(ConfigError::NoKeySource);
    };
    Ok((source, ignored))
}
