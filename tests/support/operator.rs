//! The operator under test: the CRD and the Helm chart installed once per test binary, and an
//! operator process per test that runs with the chart's ServiceAccount token, so that RBAC is
//! exactly what the chart grants, and watches only the test's namespace; plus reading a key ring's
//! status back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kube::config::Kubeconfig;
use tokio::sync::OnceCell;

use super::controlplane::{TestNamespace, bin_dir, helm, kubeconfig_path, kubectl, state_dir, wait_for};

/// Namespace the chart is installed into.
pub const SYSTEM_NAMESPACE: &str = "authkeyring-system";
/// The ServiceAccount the chart creates for the release `authkeyring`.
pub const SERVICE_ACCOUNT: &str = "authkeyring";

/// The status of a key ring, empty until the operator first writes one.
pub async fn status(ns: &TestNamespace, name: &str) -> authkeyring::crd::AuthKeyRingStatus {
    ns.api::<authkeyring::crd::AuthKeyRing>()
        .get(name)
        .await
        .unwrap()
        .status
        .unwrap_or_default()
}

static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// Applies the CRD from `crds/`, installs the chart, and returns a kubeconfig that authenticates
/// as the chart's ServiceAccount.
pub async fn install() -> &'static Path {
    INSTALLED
        .get_or_init(|| async {
            let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/authkeyring.yaml");
            kubectl(&["apply", "--server-side", "-f", crd])
                .await
                .expect("applying the CRD");
            kubectl(&[
                "wait",
                "--for=condition=Established",
                "crd/authkeyrings.authkeyring.dev",
                "--timeout=30s",
            ])
            .await
            .expect("the CRD becomes established");
            let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/authkeyring");
            helm(&[
                "upgrade",
                "--install",
                "authkeyring",
                chart,
                "--namespace",
                SYSTEM_NAMESPACE,
                "--create-namespace",
                "--set",
                "leaderElection=true",
            ])
            .await
            .expect("installing the chart");
            write_service_account_kubeconfig().await
        })
        .await
}

async fn write_service_account_kubeconfig() -> PathBuf {
    let token = kubectl(&[
        "create",
        "token",
        SERVICE_ACCOUNT,
        "-n",
        SYSTEM_NAMESPACE,
        "--duration=2h",
    ])
    .await
    .expect("a token for the chart's ServiceAccount");
    let mut kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("the admin kubeconfig");
    for user in &mut kubeconfig.auth_infos {
        user.auth_info =
            Some(serde_json::from_value(serde_json::json!({"token": token.trim()})).expect("a token user"));
    }
    let path = state_dir().join("operator-kubeconfig");
    std::fs::write(
        &path,
        serde_yaml::to_string(&kubeconfig).expect("kubeconfig YAML"),
    )
    .expect("writing it");
    path
}

/// A running operator process; killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    pub log: PathBuf,
    pub metrics: String,
    namespace: String,
}

impl Operator {
    /// Starts an operator that watches only `namespace`, as the chart's ServiceAccount.
    pub async fn start(namespace: &str) -> Operator {
        Operator::start_with(namespace, &[], true).await
    }

    /// Like [`Operator::start`] with extra arguments; waits for `/readyz` when `wait_ready`, else
    /// only for `/healthz` (a replica waiting for leadership is alive but not ready).
    pub async fn start_with(namespace: &str, extra: &[&str], wait_ready: bool) -> Operator {
        let kubeconfig = install().await;
        let port = free_port();
        let log = state_dir().join(format!(
            "operator-{namespace}-{}.log",
            std::time::UNIX_EPOCH.elapsed().unwrap().as_millis()
        ));
        let file = std::fs::File::create(&log).expect("operator log file");
        // The shell wrapper ends the operator when this test process ends, however it ends.
        let script = r#"
            "$AKR_BIN" operator --watch-namespace "$AKR_NS" --metrics-addr "127.0.0.1:$AKR_PORT" $AKR_EXTRA &
            child=$!
            trap 'kill $child 2>/dev/null; exit 0' TERM INT
            while kill -0 "$AKR_OWNER" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
            kill $child 2>/dev/null
            wait $child
        "#;
        let child = tokio::process::Command::new("sh")
            .args(["-c", script])
            .env("AKR_BIN", env!("CARGO_BIN_EXE_authkeyring"))
            .env("AKR_NS", namespace)
            .env("AKR_EXTRA", extra.join(" "))
            .env("AKR_PORT", port.to_string())
            .env("AKR_OWNER", std::process::id().to_string())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,authkeyring=debug")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("starting the operator");
        let metrics = format!("http://127.0.0.1:{port}");
        let ready = format!("{metrics}/{}", if wait_ready { "readyz" } else { "healthz" });
        wait_for(Duration::from_secs(30), || async {
            reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success())
        })
        .await
        .unwrap_or_else(|e| panic!("the operator never became ready: {e}; log: {}", log.display()));
        Operator {
            child,
            log,
            metrics,
            namespace: namespace.to_owned(),
        }
    }

    /// Kills the operator at once, as a crash or an evicted pod would.
    pub async fn kill(mut self) {
        if let Some(pid) = self.child.id() {
            // The wrapper's child is the operator; end both.
            let _ = std::process::Command::new("pkill")
                .args(["-KILL", "-P", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill().await;
    }

    /// The operator's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one metric sample, summed over its label sets that contain `label_filter`.
    pub async fn metric(&self, name: &str, label_filter: &str) -> f64 {
        let body = reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        body.lines()
            .filter(|l| l.starts_with(name) && l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Whether the operator reports ready (under leader election: whether it leads).
    pub async fn ready(&self) -> bool {
        let url = format!("{}/readyz", self.metrics);
        reqwest::get(&url).await.is_ok_and(|r| r.status().is_success())
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
