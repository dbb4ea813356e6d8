//! The `authkeyring` command line: the operator itself and the admin commands that act on key
//! rings through the usual kubeconfig rules. Also runs as the kubectl plugin `kubectl authkeyring`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{AuthKeyRing, KEYRING_FIELD, MANAGER, REVOKE_ANNOTATION, ROTATE_ANNOTATION};
use crate::duration::GoDuration;
use crate::keys;
use crate::ring::KeyRing;
use crate::telemetry::{self, LogFormat};

/// Kubernetes operator that rotates JWT signing keys without failing a request.
#[derive(Debug, Parser)]
#[command(name = "authkeyring", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How to reach the cluster, with kubectl's rules: `KUBECONFIG` or `~/.kube/config`, or the
/// in-cluster service account.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file.
    #[arg(long, global = true, env = "KUBECONFIG", hide_env_values = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the AuthKeyRing (default: the context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Operator(OperatorArgs),
    /// Print the AuthKeyRing CustomResourceDefinition as YAML.
    Crd,
    /// Request a rotation of a key ring.
    Rotate {
        /// Name of the AuthKeyRing.
        name: String,
        /// Wait until the rotation has finished and the new key signs.
        #[arg(long)]
        wait: bool,
        /// Longest time to wait with --wait, as a Go duration.
        #[arg(long, default_value = "15m")]
        timeout: GoDuration,
    },
    /// Revoke keys at once: they leave jwks.json immediately.
    Revoke {
        /// Name of the AuthKeyRing.
        name: String,
        /// Kid to revoke; repeat or separate with commas for several. Kids are base64url and may
        /// start with `-`, which is taken as part of the value.
        #[arg(
            long = "kid",
            required = true,
            value_delimiter = ',',
            allow_hyphen_values = true
        )]
        kids: Vec<String>,
    },
    /// Show a key ring's keys, phase, consumers and conditions.
    Status {
        /// Name of the AuthKeyRing.
        name: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mint a JWT signed with the Active key, for demos and tests.
    Token {
        /// Name of the AuthKeyRing.
        name: String,
        /// The `user_id` claim.
        #[arg(long)]
        user_id: i64,
        /// Set the `is_admin` claim.
        #[arg(long)]
        admin: bool,
        /// Token lifetime, as a Go duration.
        #[arg(long, default_value = "15m")]
        ttl: GoDuration,
        /// Optional `iss` claim.
        #[arg(long)]
        issuer: Option<String>,
        /// Optional `aud` claim.
        #[arg(long)]
        audience: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// Namespace to watch; repeat for several. Default: all namespaces.
    #[arg(long = "watch-namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Address serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Take a Lease before reconciling, so that only one replica acts at a time.
    #[arg(long, env = "LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "authkeyring-operator")]
    pub lease_name: String,
    /// Namespace of the leader-election Lease (default: the operator's own namespace).
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Crd => {
                print!("{}", crate::crd::crd_yaml());
                Ok(())
            }
            Command::Operator(args) => operator(&self.cluster, args).await,
            Command::Rotate { name, wait, timeout } => {
                let (client, ns) = connect(&self.cluster).await?;
                rotate(client, &ns, &name, wait, timeout.as_std()).await
            }
            Command::Revoke { name, kids } => {
                let (client, ns) = connect(&self.cluster).await?;
                revoke(client, &ns, &name, &kids).await
            }
            Command::Status { name, json } => {
                let (client, ns) = connect(&self.cluster).await?;
                status(client, &ns, &name, json).await
            }
            Command::Token {
                name,
                user_id,
                admin,
                ttl,
                issuer,
                audience,
            } => {
                let (client, ns) = connect(&self.cluster).await?;
                let claims = TokenClaims {
                    user_id,
                    is_admin: admin,
                    ttl: ttl.as_std(),
                    issuer,
                    audience,
                };
                println!("{}", token(client, &ns, &name, claims).await?);
                Ok(())
            }
        }
    }
}

/// A client and the namespace to act in, following kubeconfig rules.
async fn connect(args: &ClusterArgs) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| anyhow!(e))
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options).await.map_err(|e| anyhow!(e)),
        None => Config::infer().await.map_err(|e| anyhow!(e)),
    }
    .context("no usable kubeconfig: set KUBECONFIG, pass --kubeconfig, or run inside a cluster")?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("building a Kubernetes client")?;
    Ok((client, namespace))
}

async fn get_ring(api: &Api<AuthKeyRing>, ns: &str, name: &str) -> anyhow::Result<AuthKeyRing> {
    match api.get_opt(name).await {
        Ok(Some(akr)) => Ok(akr),
        Ok(None) => bail!("AuthKeyRing {ns}/{name} not found"),
        Err(e) => Err(anyhow!(e).context(format!("reading AuthKeyRing {ns}/{name}"))),
    }
}

async fn rotate(client: Client, ns: &str, name: &str, wait: bool, timeout: Duration) -> anyhow::Result<()> {
    let api: Api<AuthKeyRing> = Api::namespaced(client, ns);
    let before = get_ring(&api, ns, name).await?;
    let previous_kid = before.status.as_ref().and_then(|s| s.signing_kid.clone());
    let request = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {ROTATE_ANNOTATION: request}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("requesting a rotation of AuthKeyRing {ns}/{name}"))?;
    println!("rotation of {ns}/{name} requested ({ROTATE_ANNOTATION}={request})");
    if !wait {
        return Ok(());
    }

    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let akr = get_ring(&api, ns, name).await?;
        if let Some(s) = &akr.status
            && s.last_rotate_request.as_deref() == Some(request.as_str())
            && s.phase.as_deref() == Some("Idle")
            && s.signing_kid != previous_kid
        {
            println!(
                "rotated: key {} signs",
                s.signing_kid.as_deref().unwrap_or_default()
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let phase = akr
                .status
                .and_then(|s| s.phase)
                .unwrap_or_else(|| "unknown".to_owned());
            bail!("AuthKeyRing {ns}/{name} did not finish rotating within {timeout:?} (phase {phase})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn revoke(client: Client, ns: &str, name: &str, kids: &[String]) -> anyhow::Result<()> {
    let api: Api<AuthKeyRing> = Api::namespaced(client, ns);
    let akr = get_ring(&api, ns, name).await?;
    let known: Vec<String> = akr
        .status
        .iter()
        .flat_map(|s| s.keys.iter().map(|k| k.kid.clone()))
        .collect();
    for kid in kids {
        if !known.contains(kid) {
            bail!("AuthKeyRing {ns}/{name} has no key {kid}; `authkeyring status {name}` lists its kids");
        }
    }
    let mut revoked = akr.revoke_requests();
    revoked.extend(kids.iter().cloned());
    revoked.dedup();
    let patch = json!({"metadata": {"annotations": {REVOKE_ANNOTATION: revoked.join(",")}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("revoking keys of AuthKeyRing {ns}/{name}"))?;
    println!("revoked {} on {ns}/{name}", kids.join(", "));
    Ok(())
}

async fn status(client: Client, ns: &str, name: &str, as_json: bool) -> anyhow::Result<()> {
    let api: Api<AuthKeyRing> = Api::namespaced(client, ns);
    let akr = get_ring(&api, ns, name).await?;
    let status = akr.status.clone().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let time = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map_or_else(|| "-".to_owned(), |t| t.0.to_string())
    };
    println!("AuthKeyRing {ns}/{name}");
    println!("  algorithm:      {}", akr.spec.algorithm);
    println!("  phase:          {}", status.phase.as_deref().unwrap_or("-"));
    println!(
        "  signing kid:    {}",
        status.signing_kid.as_deref().unwrap_or("-")
    );
    println!("  last rotation:  {}", time(&status.last_rotation_time));
    println!("  next rotation:  {}", time(&status.next_rotation_time));
    println!("  keys:");
    for k in &status.keys {
        let until = k
            .retire_at
            .as_ref()
            .map(|t| format!(" until {}", t.0))
            .unwrap_or_default();
        println!("    {:<8} {:<6} {}{until}", k.state, k.algorithm, k.kid);
    }
    if !status.consumers.is_empty() {
        println!("  consumers:");
        for c in &status.consumers {
            let state = if c.up_to_date { "up to date" } else { "rolling" };
            println!(
                "    {:?}/{} revision {} ({state})",
                c.kind,
                c.name,
                c.revision.as_deref().unwrap_or("-")
            );
        }
    }
    println!("  conditions:");
    for c in &status.conditions {
        println!("    {:<9} {:<5} {}: {}", c.type_, c.status, c.reason, c.message);
    }
    Ok(())
}

/// Claims of a minted token.
pub struct TokenClaims {
    pub user_id: i64,
    pub is_admin: bool,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

async fn token(client: Client, ns: &str, name: &str, claims: TokenClaims) -> anyhow::Result<String> {
    let rings: Api<AuthKeyRing> = Api::namespaced(client.clone(), ns);
    let akr = get_ring(&rings, ns, name).await?;
    let secrets: Api<Secret> = Api::namespaced(client, ns);
    let secret_name = akr.secret_name();
    let secret = secrets
        .get_opt(&secret_name)
        .await
        .with_context(|| format!("reading Secret {ns}/{secret_name}"))?
        .ok_or_else(|| anyhow!("Secret {ns}/{secret_name} of AuthKeyRing {name} does not exist yet"))?;
    let ring: KeyRing = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEYRING_FIELD))
        .and_then(|b| serde_json::from_slice(&b.0).ok())
        .ok_or_else(|| anyhow!("Secret {ns}/{secret_name} holds no readable {KEYRING_FIELD}"))?;
    let active = ring
        .active()
        .ok_or_else(|| anyhow!("AuthKeyRing {ns}/{name} has no Active key yet"))?;
    let private = active
        .private
        .as_ref()
        .ok_or_else(|| anyhow!("the Active key of {ns}/{name} has no private key"))?;
    let key = keys::from_private(active.algorithm, private)?;
    mint(&key, &claims, jiff::Timestamp::now())
}

/// Signs the claims of a demo token with `key`.
pub fn mint(key: &keys::SigningKey, claims: &TokenClaims, now: jiff::Timestamp) -> anyhow::Result<String> {
    let iat = now.as_second();
    let mut body = json!({
        "user_id": claims.user_id,
        "is_admin": claims.is_admin,
        "iat": iat,
        "exp": iat + claims.ttl.as_secs() as i64,
    });
    if let Some(iss) = &claims.issuer {
        body["iss"] = json!(iss);
    }
    if let Some(aud) = &claims.audience {
        body["aud"] = json!(aud);
    }
    Ok(key.sign(&body)?)
}

async fn operator(cluster: &ClusterArgs, args: OperatorArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, "info,kube=warn,kube_lease_manager=warn");
    let (client, own_namespace) = connect(cluster).await?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = crate::controller::metrics::Metrics::register(&mut registry);
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("authkeyring-{}", std::process::id()));
    let ctx = Arc::new(crate::controller::Context::new(
        client.clone(),
        metrics,
        Some(identity.clone()),
    ));
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = tokio::spawn(crate::controller::serve_metrics(
        args.metrics_addr,
        registry,
        ready.clone(),
    ));

    // `stop` turns true on SIGTERM, Ctrl-C, or a lost Lease; every controller drains and returns.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            let _ = stop_tx.send(true);
        });
    }

    let mut lease_task = None;
    if args.leader_elect {
        let ns = args.lease_namespace.clone().unwrap_or(own_namespace);
        let leader = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&ns)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .with_field_manager(MANAGER)
            .build()
            .await
            .context("setting up leader election")?;
        let (mut is_leader, task) = leader.watch().await;
        lease_task = Some(task);
        info!(lease = %args.lease_name, namespace = %ns, identity = %identity, "waiting for leadership");
        let mut waiting_stop = stop.clone();
        while !*is_leader.borrow_and_update() {
            tokio::select! {
                changed = is_leader.changed() => changed.context("leader election stopped")?,
                _ = waiting_stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        info!(identity = %identity, "became leader");
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while *is_leader.borrow_and_update() {
                if is_leader.changed().await.is_err() {
                    break;
                }
            }
            warn!("lost leadership; stopping so that another replica takes over");
            let _ = stop_tx.send(true);
        });
    }

    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let scopes: Vec<Option<String>> = if args.watch_namespaces.is_empty() {
        vec![None]
    } else {
        args.watch_namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = scopes.into_iter().map(|ns| {
        let mut stop = stop.clone();
        tokio::spawn(crate::controller::run(ctx.clone(), ns, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    });
    futures::future::join_all(controllers).await;

    server.abort();
    drop(lease_task);
    info!("operator stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// An error and its causes on one line, for the command line. Many errors, kube's among them,
/// already repeat their cause in their own message; a cause whose text is already there is left
/// out rather than printed twice.
pub fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, describe};

    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect): {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn an_error_is_described_with_each_cause_once() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = anyhow::Error::new(Repeats(refused())).context("reading AuthKeyRing prod/jwt");
        assert_eq!(
            describe(&error),
            "reading AuthKeyRing prod/jwt: client error (Connect): connection refused"
        );

        let error = anyhow::Error::new(refused()).context("reading AuthKeyRing prod/jwt");
        assert_eq!(
            describe(&error),
            "reading AuthKeyRing prod/jwt: connection refused"
        );
    }

    #[test]
    fn a_kid_that_starts_with_a_dash_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from([
            "authkeyring",
            "revoke",
            "jwt",
            "--kid",
            "-RlgMD9QAMoZ",
            "--kid",
            "a,b",
        ])
        .expect("parses");
        let Command::Revoke { kids, .. } = cli.command else {
            panic!("revoke")
        };
        assert_eq!(kids, ["-RlgMD9QAMoZ", "a", "b"]);
    }

    #[test]
    fn durations_are_go_durations() {
        let cli =
            Cli::try_parse_from(["authkeyring", "token", "jwt", "--user-id", "7", "--ttl", "1h30m"]).unwrap();
        let Command::Token {
            ttl, user_id, admin, ..
        } = cli.command
        else {
            panic!("token")
        };
        assert_eq!((ttl.as_std().as_secs(), user_id, admin), (5400, 7, false));
        assert!(
            Cli::try_parse_from(["authkeyring", "token", "jwt", "--user-id", "7", "--ttl", "soon"]).is_err()
        );
    }
}
