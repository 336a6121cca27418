//! Helpers shared by the cluster scenario tests: a client from the environment, a
//! throwaway namespace per test, and waiting for conditions with a deadline.

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

/// Reads a required LIFEBOAT_TEST_* (or other) variable, failing with a hint.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run `e2e/local up` and `source e2e/.local/env.sh` first")
    })
}

/// A client for the cluster named by KUBECONFIG.
pub async fn client() -> anyhow::Result<Client> {
    let path = env("KUBECONFIG")?;
    crate::node::client_from_kubeconfig(std::path::Path::new(&path))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A namespace named after the test with a random suffix; delete it with [`TestNs::delete`].
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    /// Creates `<prefix>-<random>`, enforcing the `baseline` Pod Security level (and
    /// warning at `restricted`): an application namespace whose volumes are backed up runs
    /// Lifeboat's volume mover, which reads files of every owner as root.
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        Self::create_with_pod_security(prefix, "baseline").await
    }

    /// Creates `<prefix>-<random>` enforcing Pod Security level `level` (`restricted`,
    /// `baseline` or `privileged`), so that a pod breaking it fails the test instead of
    /// passing unnoticed.
    pub async fn create_with_pod_security(prefix: &str, level: &str) -> anyhow::Result<Self> {
        let client = client().await?;
        let suffix: u32 = rand::random();
        let name = format!("{prefix}-{:08x}", suffix);
        let labels = [
            ("lifeboat.dev/e2e", "true"),
            ("pod-security.kubernetes.io/enforce", level),
            ("pod-security.kubernetes.io/warn", "restricted"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        // Pods are refused until the controller-manager has made the namespace's default
        // ServiceAccount, as on any fresh namespace (tokens come from the TokenRequest API).
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(client.clone(), &name);
        wait_for(
            &format!("the default service account of {name}"),
            Duration::from_secs(60),
            || async { Ok(sas.get_opt("default").await?.map(|_| ())) },
        )
        .await?;
        Ok(TestNs { client, name })
    }

    /// A namespaced API in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (the controller-manager removes what is inside).
    pub async fn delete(self) -> anyhow::Result<()> {
        Api::<Namespace>::all(self.client.clone())
            .delete(&self.name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting namespace {}", self.name))?;
        Ok(())
    }
}

/// Polls `f` until it returns `Some`, or fails after `timeout` with `what` in the message.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates an object from JSON in the given API.
pub async fn create<K>(api: &Api<K>, value: serde_json::Value) -> anyhow::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).context("building object from JSON")?;
    api.create(&PostParams::default(), &obj)
        .await
        .context("creating object")
}

/// The pod's phase.
pub fn phase(pod: &k8s_openapi::api::core::v1::Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Waits until the pod reaches one of `phases`.
pub async fn wait_pod(
    api: &Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> anyhow::Result<k8s_openapi::api::core::v1::Pod> {
    let last = std::sync::Mutex::new(String::new());
    let what = format!("pod {name} to reach {phases:?}");
    let res = wait_for(&what, timeout, || async {
        let p = api.get_opt(name).await?;
        Ok(p.and_then(|p| {
            *last.lock().expect("lock") = phase(&p).to_string();
            phases.contains(&phase(&p)).then_some(p)
        }))
    })
    .await;
    res.with_context(|| format!("last phase {:?}", last.lock().expect("lock")))
}

/// The termination message of a pod's container (terminated state).
pub fn termination_message(
    pod: &k8s_openapi::api::core::v1::Pod,
    container: &str,
) -> Option<String> {
    terminated(pod, container).and_then(|t| t.message)
}

/// The terminated state of a pod's container, if it ended.
pub fn terminated(
    pod: &k8s_openapi::api::core::v1::Pod,
    container: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)?
        .state
        .as_ref()?
        .terminated
        .clone()
}

/// Pods of a Job (by the job-name label).
pub async fn job_pods(
    api: &Api<k8s_openapi::api::core::v1::Pod>,
    job: &str,
) -> anyhow::Result<Vec<k8s_openapi::api::core::v1::Pod>> {
    Ok(api
        .list(&kube::api::ListParams::default().labels(&format!("job-name={job}")))
        .await?
        .items)
}

/// The node agent's state directory of the running environment.
pub fn node_state_dir() -> anyhow::Result<std::path::PathBuf> {
    Ok(std::path::PathBuf::from(env("LIFEBOAT_LOCAL_DIR")?).join("node"))
}

/// A bound token for ServiceAccount `ns/sa`, from the TokenRequest API (clusters since 1.24
/// no longer give ServiceAccounts a token Secret). Valid for an hour.
pub async fn service_account_token(client: &Client, ns: &str, sa: &str) -> anyhow::Result<String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let status = sas
        .create_token_request(sa, &PostParams::default(), &req)
        .await
        .with_context(|| format!("requesting a token for serviceaccount {ns}/{sa}"))?
        .status
        .context("TokenRequest without a status")?;
    Ok(status.token)
}

/// A kubeconfig file for the environment's API server that authenticates as
/// ServiceAccount `ns/sa` (a real identity: RBAC and admission treat it like any user's).
pub async fn kubeconfig_for_service_account(
    client: &Client,
    ns: &str,
    sa: &str,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let token = service_account_token(client, ns, sa).await?;
    let cfg = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": env("LIFEBOAT_TEST_APISERVER")?,
            "certificate-authority": env("LIFEBOAT_LOCAL_CA")?}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "local", "user": sa, "namespace": ns}}],
        "current-context": sa,
    });
    let f = tempfile::NamedTempFile::new()?;
    std::fs::write(f.path(), serde_json::to_vec(&cfg)?)?;
    Ok(f)
}
