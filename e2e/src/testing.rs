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
    /// Creates `<prefix>-<random>`.
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let client = client().await?;
        let suffix: u32 = rand::random();
        let name = format!("{prefix}-{:08x}", suffix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("lifeboat.dev/e2e".to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
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
