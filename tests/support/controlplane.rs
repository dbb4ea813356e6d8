//! The local control plane the integration tests share, and the ways a test reaches it.
//!
//! `hack/cluster.sh` is the one place that knows how to start etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and kwok; this module only drives it. The first helper a
//! test binary calls runs `hack/cluster.sh up --owner-pid <this process>` with a state directory of
//! its own under the system temp dir, building the binaries on first use. The Rust test harness
//! exits without dropping statics, so teardown is the script's job: its watchdog stops every
//! component and removes the directory once this process has exited, whether the tests passed,
//! panicked or were killed.
//!
//! With `AUTHKEYRING_CLUSTER_DIR` set, the tests use (or start) the cluster in that directory and
//! leave it running, for a quicker edit-test loop next to `hack/cluster.sh up`.
//!
//! Every test gets a namespace of its own from [`namespace`], so tests run in parallel on one
//! control plane. Clients are made per call: a kube `Client` belongs to the Tokio runtime that
//! made it, and every `#[tokio::test]` has its own runtime.

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long a fresh namespace may take to get its `default` ServiceAccount.
const NAMESPACE_READY: Duration = Duration::from_secs(30);

/// A running control plane, as `hack/cluster.sh up` left it in its state directory.
struct ControlPlane {
    dir: PathBuf,
    kubeconfig: PathBuf,
    bin_dir: PathBuf,
}

static CONTROL_PLANE: LazyLock<Result<ControlPlane, String>> = LazyLock::new(start);

fn control_plane() -> &'static ControlPlane {
    match &*CONTROL_PLANE {
        Ok(control_plane) => control_plane,
        Err(message) => panic!("{message}"),
    }
}

fn start() -> Result<ControlPlane, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("hack/cluster.sh");
    let (dir, owner) = match std::env::var_os("AUTHKEYRING_CLUSTER_DIR") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let pid = std::process::id();
            (
                std::env::temp_dir().join(format!("authkeyring-test-{pid}")),
                Some(pid),
            )
        }
    };

    let mut command = Command::new("bash");
    command.arg(&script).arg("--dir").arg(&dir).arg("up");
    if let Some(pid) = owner {
        command.arg("--owner-pid").arg(pid.to_string());
    }
    let mut child = command
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run {}: {error}", script.display()))?;

    // The script's progress (and, on a first run, the build's) goes straight to the terminal,
    // past the harness's capture, and is kept for the failure message.
    let mut messages = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(std::io::stderr(), "{line}");
            messages.push(line);
        }
    }
    let status = child
        .wait()
        .map_err(|error| format!("waiting for {}: {error}", script.display()))?;
    if !status.success() {
        let tail = messages[messages.len().saturating_sub(40)..].join("\n");
        return Err(format!(
            "the test control plane did not start ({} up: {status}). The integration tests need \
             it; fix what the script reports and rerun, or start one yourself with \
             `hack/cluster.sh up` and set AUTHKEYRING_CLUSTER_DIR to its directory.\n{tail}",
            script.display()
        ));
    }

    let bin_dir = std::fs::read_to_string(dir.join("bin-dir")).map_err(|error| {
        format!(
            "{}/bin-dir is unreadable after a successful up: {error}",
            dir.display()
        )
    })?;
    Ok(ControlPlane {
        kubeconfig: dir.join("kubeconfig"),
        bin_dir: PathBuf::from(bin_dir.trim()),
        dir,
    })
}

/// The state directory of the control plane: logs in `logs/`, certificates in `pki/`.
pub fn state_dir() -> &'static Path {
    &control_plane().dir
}

/// The admin kubeconfig (client certificate in `system:masters`).
pub fn kubeconfig_path() -> &'static Path {
    &control_plane().kubeconfig
}

/// The directory with `kubectl`, `helm` and the control plane binaries, all at pinned versions.
pub fn bin_dir() -> &'static Path {
    &control_plane().bin_dir
}

/// A client with cluster-admin rights.
pub async fn client() -> Client {
    Client::try_from(admin_config().await).expect("a client from the test kubeconfig")
}

async fn admin_config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|error| panic!("reading the test kubeconfig {}: {error}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|error| panic!("loading the test kubeconfig {}: {error}", path.display()))
}

/// A client that authenticates as the ServiceAccount `name` in `namespace`, with a one-hour token
/// from the TokenRequest API, so that what it may do is exactly what RBAC grants that account.
pub async fn service_account_client(namespace: &str, name: &str) -> Client {
    let accounts: Api<ServiceAccount> = Api::namespaced(client().await, namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|error| panic!("requesting a token for ServiceAccount {namespace}/{name}: {error}"));
    let token = response
        .status
        .expect("a TokenRequest response carries a status")
        .token;

    let mut config = admin_config().await;
    // Built from the kubeconfig's own `user` shape, which keeps the token in a secret string.
    config.auth_info = serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))
        .expect("a kubeconfig user with a token");
    Client::try_from(config).expect("a client with a ServiceAccount token")
}

/// A namespace that lives as long as this value: deleted (without waiting) when it is dropped,
/// also when the test panics. Keep it bound for the whole test; `let _ = namespace(..)` would
/// delete it at once.
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin client, clone of the one that made the namespace.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An admin `Api` for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates the object written as JSON (kind `K`, no namespace needed) in this namespace as
    /// admin, and returns it as stored; panics with the API server's reason if that fails.
    pub async fn create<K>(&self, object: serde_json::Value) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(object)
            .unwrap_or_else(|error| panic!("not a valid {}: {error}", K::kind(&Default::default())));
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "creating {} {}: {error}",
                    K::kind(&Default::default()),
                    object.name_any()
                )
            })
    }
}

impl Drop for TestNamespace {
    // Drop cannot await, and the test's runtime may be gone; kubectl needs neither.
    fn drop(&mut self) {
        let Ok(control_plane) = &*CONTROL_PLANE else {
            return;
        };
        let _ = Command::new(control_plane.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&control_plane.kubeconfig)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .args(["--request-timeout=10s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Creates a namespace named `<prefix>-<random suffix>` and waits until pods can be created in it
/// (its `default` ServiceAccount exists).
pub async fn namespace(prefix: &str) -> TestNamespace {
    let client = client().await;
    let namespace = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            labels: Some(
                [(
                    "app.kubernetes.io/part-of".to_owned(),
                    "authkeyring-tests".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let created = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|error| panic!("creating a namespace {prefix}-*: {error}"));
    let name = created
        .metadata
        .name
        .expect("the API server names a generated namespace");
    let namespace = TestNamespace { name, client };

    let accounts: Api<ServiceAccount> = namespace.api();
    wait_for(NAMESPACE_READY, || async {
        matches!(accounts.get_opt("default").await, Ok(Some(_)))
    })
    .await
    .unwrap_or_else(|error| {
        panic!(
            "namespace {} never got its default ServiceAccount: {error}",
            namespace.name
        )
    });
    namespace
}

/// The condition given to [`wait_for`] did not hold before the deadline.
#[derive(Debug)]
pub struct TimedOut {
    pub after: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "condition not met within {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}

/// Polls `condition` every 200 ms until it returns true or `timeout` has passed. A check that
/// hangs counts against the timeout too.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(true) = tokio::time::timeout_at(deadline, condition()).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(TimedOut { after: timeout });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `kubectl` or `helm` run that could not start or exited unsuccessfully.
pub struct CommandFailed {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` failed ({}): {}",
            self.command,
            self.status,
            self.stderr.trim_end()
        )
    }
}

// `unwrap` and `expect` print Debug; keep stderr readable there.
impl fmt::Debug for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CommandFailed {}

/// Runs the pinned `kubectl` against the control plane as admin; returns its stdout.
pub async fn kubectl(args: &[&str]) -> Result<String, CommandFailed> {
    run_tool("kubectl", args).await
}

/// Runs the pinned `helm` against the control plane as admin, with its cache, config and data
/// directories inside the state directory; returns its stdout. Relative chart paths start at the
/// crate root (`tests/fixtures/...`).
pub async fn helm(args: &[&str]) -> Result<String, CommandFailed> {
    run_tool("helm", args).await
}

async fn run_tool(tool: &str, args: &[&str]) -> Result<String, CommandFailed> {
    let control_plane = control_plane();
    let helm_home = control_plane.dir.join("helm");
    let output = tokio::process::Command::new(control_plane.bin_dir.join(tool))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KUBECONFIG", &control_plane.kubeconfig)
        .env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let command = format!("{tool} {}", args.join(" "));
    match output {
        Ok(output) if output.status.success() => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        Ok(output) => Err(CommandFailed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Err(error) => Err(CommandFailed {
            command,
            status: "not started".to_owned(),
            stderr: error.to_string(),
        }),
    }
}
