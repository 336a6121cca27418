//! `lifeboat-incluster-check`: a test-only program run inside a pod (image
//! `lifeboat.dev/e2e-incluster-check`) that uses kube-rs's in-cluster configuration, as the
//! operator does, and reports what the API allows its service account: one line
//! `list secrets: <HTTP status>` on stdout and in /dev/termination-log.

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let config = kube::Config::incluster()?;
    let ns = config.default_namespace.clone();
    let client = kube::Client::try_from(config)?;
    let api: kube::Api<Secret> = kube::Api::namespaced(client, &ns);
    let line = match api.list(&ListParams::default()).await {
        Ok(list) => format!("list secrets: 200 ({} items) in {ns}", list.items.len()),
        Err(kube::Error::Api(s)) => format!("list secrets: {} {}", s.code, s.message),
        Err(e) => format!("list secrets: error {e}"),
    };
    println!("{line}");
    let _ = std::fs::write("/dev/termination-log", &line);
    Ok(())
}
