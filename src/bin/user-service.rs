//! The user-service binary: reads its configuration, serves the profile API until SIGTERM or
//! SIGINT, then lets in-flight requests finish.
//!
//! Exit codes: 0 after a clean stop, 1 when the service fails at run time (database unreachable,
//! port taken, shutdown overran), 2 for command-line errors, 78 (EX_CONFIG) for a configuration
//! that cannot work.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use authkeyring::service::Service;
use authkeyring::service::config::Settings;
use authkeyring::telemetry;
use clap::Parser;

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

const EXIT_CONFIG: u8 = 78;

const AFTER_HELP: &str = "\
Verification keys come from the first of these that is set:
  AUTH_KEYRING_DIR  a mounted AuthKeyRing Secret or JWKS ConfigMap; jwks.json is reloaded on change
  JWT_JWKS          a JWK Set as JSON
  JWT_SECRET        the single HS256 secret of the original service

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 usage error, 78 configuration error.";

/// Serves user profiles to callers holding a JWT signed by an AuthKeyRing key.
#[derive(Parser)]
#[command(name = "user-service", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.settings.log_format, "info,sqlx=warn");

    let config = match cli.settings.into_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(error = %error, "configuration error");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("user-service: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "user-service failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: authkeyring::service::config::Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let service = Service::start(config)
        .await
        .context("starting the user-service")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, version = env!("CARGO_PKG_VERSION"), "user-service serving");

    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        stop_signal().await;
        let _ = stopping_tx.send(());
    };
    let serve = tokio::spawn(service.serve(listener, shutdown));

    // The grace period starts with the signal, not with the process.
    let served = tokio::select! {
        served = serve => served,
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => anyhow::bail!("in-flight requests did not finish within {SHUTDOWN_GRACE:?} of the stop signal"),
    };
    served
        .context("the server task failed")?
        .context("serving HTTP")?;
    tracing::info!("user-service stopped");
    Ok(())
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; stopping on SIGINT only");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("stop signal received; finishing in-flight requests");
}
