//! Foundation scenarios against the local environment (`e2e/local up`): the node agent
//! runs real pods for a real kube-apiserver and kube-controller-manager. Each test works
//! in its own namespace and deletes it afterwards.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use lifeboat_e2e::node::snapshots;
use lifeboat_e2e::testing::{self, TestNs, create, phase, termination_message, wait_for, wait_pod};
use serde_json::json;

const LONG: Duration = Duration::from_secs(90);

fn storage_class() -> String {
    testing::env("LIFEBOAT_TEST_STORAGE_CLASS").expect("LIFEBOAT_TEST_STORAGE_CLASS")
}

fn pvc(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": storage_class(),
        "resources": {"requests": {"storage": "1Gi"}}
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec})
}

/// A run-once pod executing `script` with sh; its stdout goes to the termination message
/// (FallbackToLogsOnError covers failures).
fn script_pod(
    name: &str,
    script: &str,
    volumes: serde_json::Value,
    mounts: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "main", "image": "busybox:1.36",
                "command": ["sh", "-c", format!("{{ {script} ; }} > /dev/termination-log 2>&1")],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": mounts
            }],
            "volumes": volumes
        }
    })
}

async fn run_script(
    ns: &TestNs,
    name: &str,
    script: &str,
    volumes: serde_json::Value,
    mounts: serde_json::Value,
) -> anyhow::Result<(Pod, String)> {
    let pods: Api<Pod> = ns.api();
    create(&pods, script_pod(name, script, volumes, mounts)).await?;
    let pod = wait_pod(&pods, name, &["Succeeded", "Failed"], LONG).await?;
    let msg = termination_message(&pod, "main").unwrap_or_default();
    ensure!(phase(&pod) == "Succeeded", "pod {name} failed: {msg}");
    Ok((pod, msg))
}

async fn with_ns<F, Fut>(prefix: &str, body: F) -> anyhow::Result<()>
where
    F: FnOnce(TestNs) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<TestNs>>,
{
    let ns = TestNs::create(prefix).await?;
    let name = ns.name.clone();
    let client = ns.client.clone();
    let result = body(ns).await;
    let cleanup = TestNs { client, name }.delete().await;
    let ns = result?;
    drop(ns);
    cleanup
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn job_writes_pvc_and_second_pod_reads_it() -> anyhow::Result<()> {
    with_ns("e2e-pvc", |ns| async move {
        let token = format!("payload-{:016x}", rand::random::<u64>());
        create(&ns.api::<PersistentVolumeClaim>(), pvc("data", json!({}))).await?;
        let jobs: Api<Job> = ns.api();
        let created = Instant::now();
        create(&jobs, json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "writer"},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "w", "image": "busybox:1.36",
                    "command": ["sh", "-c", "echo \"$TOKEN\" > /data/file.txt && sync && sleep 1"],
                    "env": [{"name": "TOKEN", "value": token}],
                    "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}}
        })).await?;
        let pods: Api<Pod> = ns.api();
        let running_at = std::sync::Mutex::new(None);
        let job = wait_for("job writer to complete", LONG, || async {
            if running_at.lock().expect("lock").is_none() {
                let ps = testing::job_pods(&pods, "writer").await?;
                if ps
                    .iter()
                    .any(|p| matches!(phase(p), "Running" | "Succeeded"))
                {
                    *running_at.lock().expect("lock") = Some(created.elapsed());
                }
            }
            let j = jobs.get("writer").await?;
            let done = j
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True"
                    })
                });
            Ok(done.then_some(j))
        })
        .await?;
        let succeeded_at = created.elapsed();
        ensure!(
            job.status.as_ref().and_then(|s| s.succeeded) == Some(1),
            "job did not succeed: {:?}",
            job.status
        );
        eprintln!(
            "timing: job created -> pod running {:?} -> job complete {:?}",
            running_at.lock().expect("lock").unwrap_or_default(),
            succeeded_at
        );

        let (_, msg) = run_script(
            &ns,
            "reader",
            "cat /data/file.txt",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]),
            json!([{"name": "d", "mountPath": "/data"}]),
        )
        .await?;
        ensure!(
            msg.trim() == token,
            "reader saw {msg:?}, expected {token:?}"
        );

        // reclaimPolicy Delete: deleting the claim removes the PV and its directory.
        let claims: Api<PersistentVolumeClaim> = ns.api();
        let pv = claims
            .get("data")
            .await?
            .spec
            .and_then(|s| s.volume_name)
            .context("bound volume")?;
        let dir = testing::node_state_dir()?.join("volumes").join(&pv);
        ensure!(
            dir.join("file.txt").is_file(),
            "volume data not at {}",
            dir.display()
        );
        ns.api::<Pod>()
            .delete("reader", &DeleteParams::default())
            .await?;
        for p in testing::job_pods(&ns.api(), "writer").await? {
            ns.api::<Pod>()
                .delete(
                    &p.metadata.name.unwrap_or_default(),
                    &DeleteParams::default(),
                )
                .await?;
        }
        claims.delete("data", &DeleteParams::default()).await?;
        let pvs: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(ns.client.clone());
        wait_for("the PV to be deleted", LONG, || async {
            Ok(pvs.get_opt(&pv).await?.is_none().then_some(()))
        })
        .await?;
        ensure!(!dir.exists(), "volume directory left at {}", dir.display());
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn failing_container_fails_job_with_exit_code_and_message() -> anyhow::Result<()> {
    with_ns("e2e-fail", |ns| async move {
        let jobs: Api<Job> = ns.api();
        create(&jobs, json!({
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "boom"},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "logs", "image": "busybox:1.36", "terminationMessagePolicy": "FallbackToLogsOnError",
                     "command": ["sh", "-c", "echo preparing; echo 'database unreachable: connection refused' >&2; exit 3"]},
                    {"name": "file", "image": "busybox:1.36", "terminationMessagePath": "/tmp/result",
                     "command": ["sh", "-c", "printf '{\"error\":\"quota\"}' > /tmp/result; exit 7"]}
                ]}}}
        })).await?;
        let job = wait_for("job boom to fail", LONG, || async {
            let j = jobs.get("boom").await?;
            let failed = j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                cs.iter().any(|c| c.type_ == "Failed" && c.status == "True")
            });
            Ok(failed.then_some(j))
        })
        .await?;
        ensure!(job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) == 0);
        let pods = testing::job_pods(&ns.api(), "boom").await?;
        ensure!(pods.len() == 1, "backoffLimit 0 means one pod, got {}", pods.len());
        let pod = &pods[0];
        ensure!(phase(pod) == "Failed", "pod phase {}", phase(pod));
        let logs = testing::terminated(pod, "logs").context("container logs terminated")?;
        ensure!(logs.exit_code == 3 && logs.reason.as_deref() == Some("Error"), "{logs:?}");
        let m = logs.message.unwrap_or_default();
        ensure!(m.contains("database unreachable: connection refused") && m.contains("preparing"), "fallback message {m:?}");
        let file = testing::terminated(pod, "file").context("container file terminated")?;
        ensure!(file.exit_code == 7, "{file:?}");
        ensure!(file.message.as_deref() == Some("{\"error\":\"quota\"}"), "file message {:?}", file.message);
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn service_account_without_rights_gets_403_and_a_role_grants_access() -> anyhow::Result<()> {
    with_ns("e2e-rbac", |ns| async move {
        create(&ns.api::<ServiceAccount>(), json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "norights"}})).await?;
        let script = r#"SA=/var/run/secrets/kubernetes.io/serviceaccount
curl -sS -o /tmp/body -w '%{http_code}\n' --cacert $SA/ca.crt -H "Authorization: Bearer $(cat $SA/token)" \
  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat $SA/namespace)/secrets"
cat /tmp/body"#;
        let pod = |name: &str| {
            let mut p = script_pod(name, script, json!([]), json!([]));
            p["spec"]["serviceAccountName"] = json!("norights");
            p
        };
        let incluster = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "serviceAccountName": "norights",
                "containers": [{"name": "main", "image": "lifeboat.dev/e2e-incluster-check:dev"}]}});
        let pods: Api<Pod> = ns.api();
        create(&pods, incluster("kube-rs-denied")).await?;
        create(&pods, pod("denied")).await?;
        let p = wait_pod(&pods, "denied", &["Succeeded", "Failed"], LONG).await?;
        let msg = termination_message(&p, "main").unwrap_or_default();
        ensure!(msg.starts_with("403"), "expected 403, got {msg:?}");
        let who = format!("system:serviceaccount:{}:norights", ns.name);
        ensure!(msg.contains(&who) && msg.contains("forbidden"), "body does not name {who}: {msg}");

        create(&ns.api::<Role>(), json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "read-secrets"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]})).await?;
        create(&ns.api::<RoleBinding>(), json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "read-secrets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "norights", "namespace": ns.name}]})).await?;
        create(&pods, pod("allowed")).await?;
        let p = wait_pod(&pods, "allowed", &["Succeeded", "Failed"], LONG).await?;
        let msg = termination_message(&p, "main").unwrap_or_default();
        ensure!(msg.starts_with("200"), "expected 200 after the RoleBinding, got {msg:?}");
        // The same through kube-rs's in-cluster configuration (what the operator uses).
        let p = wait_pod(&pods, "kube-rs-denied", &["Succeeded", "Failed"], LONG).await?;
        let msg = termination_message(&p, "main").unwrap_or_default();
        ensure!(msg.starts_with("list secrets: 403") && msg.contains("norights"), "kube-rs in-cluster before the grant: {msg:?}");
        create(&pods, incluster("kube-rs-allowed")).await?;
        let p = wait_pod(&pods, "kube-rs-allowed", &["Succeeded", "Failed"], LONG).await?;
        let msg = termination_message(&p, "main").unwrap_or_default();
        ensure!(msg.starts_with("list secrets: 200"), "kube-rs in-cluster after the grant: {msg:?}");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn secret_projected_token_and_readonly_volumes() -> anyhow::Result<()> {
    with_ns("e2e-vol", |ns| async move {
        let password = format!("s3cr3t-{:08x}", rand::random::<u32>());
        create(&ns.api::<Secret>(), json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
            "stringData": {"password": password, "user": "backup"}})).await?;
        create(&ns.api::<ConfigMap>(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
            "data": {"mode": "fast", "ignored": "x"}})).await?;
        create(&ns.api::<PersistentVolumeClaim>(), pvc("data", json!({}))).await?;
        let pods: Api<Pod> = ns.api();
        let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
        let script = format!(r#"set -u
echo "password=$(cat /etc/creds/password)"
echo "perm=$(stat -c %a /etc/creds/user)"
echo "mode=$(cat /etc/cfg/settings/mode.conf)"
echo "subpath=$(cat /opt/lifeboat-e2e/mode.conf)"
ls /etc/cfg/settings | tr '\n' ' '; echo
echo "env_pw=$PW"
echo "ns=$(cat {sa}/namespace)"
test -s {sa}/ca.crt && echo "ca=ok"
echo "aud_token=$(cat {sa}/aud-token)"
touch /etc/creds/new 2>/dev/null && echo "secret=writable" || echo "secret=readonly"
touch /data-ro/new 2>/dev/null && echo "pvc_ro=writable" || echo "pvc_ro=readonly"
touch /data/new && echo "pvc_rw=writable"
echo "uid=$(id -u) gid=$(id -g)"
echo "scratch=$(touch /scratch/x && echo ok)"
code=$(curl -sS -o /dev/null -w '%{{http_code}}' --cacert {sa}/ca.crt -H "Authorization: Bearer $(cat {sa}/token)" https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$(cat {sa}/namespace)/pods)
echo "api=$code""#);
        let mut pod = script_pod("vols", &script,
            json!([
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o640}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "mode", "path": "settings/mode.conf"}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "kube-api-access", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"serviceAccountToken": {"path": "aud-token", "audience": "lifeboat-test", "expirationSeconds": 600}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}
            ]),
            json!([
                {"name": "creds", "mountPath": "/etc/creds", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "data", "mountPath": "/data-ro", "readOnly": true},
                {"name": "data", "mountPath": "/data"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "kube-api-access", "mountPath": sa, "readOnly": true},
                {"name": "cfg-all", "mountPath": "/opt/lifeboat-e2e/mode.conf", "subPath": "mode"}
            ]));
        pod["spec"]["volumes"].as_array_mut().context("volumes")?.push(json!({"name": "cfg-all", "configMap": {"name": "cfg"}}));
        pod["spec"]["automountServiceAccountToken"] = json!(false);
        pod["spec"]["securityContext"] = json!({"runAsUser": 4321, "runAsGroup": 4321, "fsGroup": 4321});
        pod["spec"]["containers"][0]["env"] = json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]);
        create(&pods, pod).await?;
        let p = wait_pod(&pods, "vols", &["Succeeded", "Failed"], LONG).await?;
        let msg = termination_message(&p, "main").unwrap_or_default();
        ensure!(phase(&p) == "Succeeded", "pod failed: {msg}");
        let get = |k: &str| {
            msg.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
                .unwrap_or_default()
        };
        ensure!(get("password") == password, "{msg}");
        ensure!(get("env_pw") == password, "{msg}");
        ensure!(get("perm") == "640", "{msg}");
        ensure!(get("mode") == "fast" && msg.contains("mode.conf"), "{msg}");
        ensure!(get("subpath") == "fast", "{msg}");
        ensure!(get("ns") == ns.name && get("ca") == "ok", "{msg}");
        ensure!(get("secret") == "readonly" && get("pvc_ro") == "readonly" && get("pvc_rw") == "writable", "{msg}");
        ensure!(msg.contains("uid=4321 gid=4321") && get("scratch") == "ok", "{msg}");
        // The default service account has no rights on pods: the projected token is
        // accepted (so 403, not 401).
        ensure!(get("api") == "403", "{msg}");
        // The audience-bound token validates for its audience only, bound to the pod.
        let reviews: Api<TokenReview> = Api::all(ns.client.clone());
        let review = |aud: &str| TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec { token: Some(get("aud_token")), audiences: Some(vec![aud.to_string()]) },
            status: None,
        };
        let ok = reviews.create(&PostParams::default(), &review("lifeboat-test")).await?;
        let st = ok.status.context("token review status")?;
        ensure!(st.authenticated == Some(true), "audience token rejected: {st:?}");
        let user = st.user.context("token review user")?;
        ensure!(user.username.as_deref() == Some(&format!("system:serviceaccount:{}:default", ns.name)[..]), "{user:?}");
        let extra = user.extra.unwrap_or_default();
        ensure!(extra.get("authentication.kubernetes.io/pod-name").is_some_and(|v| v.contains(&"vols".to_string())), "token not bound to the pod: {extra:?}");
        let bad = reviews.create(&PostParams::default(), &review("someone-else")).await?;
        ensure!(bad.status.and_then(|s| s.authenticated) != Some(true), "token accepted for a foreign audience");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn volume_snapshot_restores_identical_content() -> anyhow::Result<()> {
    with_ns("e2e-snap", |ns| async move {
        create(&ns.api::<PersistentVolumeClaim>(), pvc("src", json!({}))).await?;
        let manifest = "cd /data && find . \\( -type f -o -type l \\) -print | sort | while read f; do if [ -L \"$f\" ]; then echo \"L $f -> $(readlink \"$f\")\"; else echo \"F $f $(stat -c '%a %u %Y' \"$f\") $(sha256sum < \"$f\" | cut -c1-64)\"; fi; done";
        let fill = format!("mkdir -p /data/sub/deep && head -c 1048576 /dev/urandom > /data/blob && echo hello > /data/sub/deep/a.txt && chmod 600 /data/sub/deep/a.txt && chown 4321 /data/blob && ln -s sub/deep/a.txt /data/link && touch -d '2020-01-02 03:04:05' /data/blob && {manifest}");
        let vol = json!([{"name": "d", "persistentVolumeClaim": {"claimName": "src"}}]);
        let mnt = json!([{"name": "d", "mountPath": "/data"}]);
        let (_, before) = run_script(&ns, "fill", &fill, vol, mnt.clone()).await?;
        ensure!(before.lines().count() == 3, "unexpected manifest {before}");

        let snaps: Api<DynamicObject> = Api::namespaced_with(ns.client.clone(), &ns.name, &snapshots::snapshot_resource());
        let class = testing::env("LIFEBOAT_TEST_SNAPSHOT_CLASS")?;
        let vs = |name: &str, claim: &str| -> anyhow::Result<DynamicObject> {
            Ok(serde_json::from_value(json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                "metadata": {"name": name},
                "spec": {"volumeSnapshotClassName": class, "source": {"persistentVolumeClaimName": claim}}}))?)
        };
        snaps.create(&PostParams::default(), &vs("snap", "src")?).await?;
        let ready = wait_for("snapshot readyToUse", LONG, || async {
            let s = snaps.get("snap").await?;
            Ok((s.data["status"]["readyToUse"] == json!(true)).then_some(s))
        })
        .await?;
        let content = ready.data["status"]["boundVolumeSnapshotContentName"].as_str().context("bound content")?.to_string();
        ensure!(ready.data["status"]["restoreSize"] == json!("1Gi"), "{:?}", ready.data["status"]);
        ensure!(ready.data["status"]["creationTime"].is_string());
        let contents: Api<DynamicObject> = Api::all_with(ns.client.clone(), &snapshots::content_resource());
        let c = contents.get(&content).await?;
        ensure!(c.data["status"]["readyToUse"] == json!(true) && c.data["spec"]["volumeSnapshotRef"]["name"] == json!("snap"), "{:?}", c.data);

        // Change the source after the snapshot: the restore must show the old content.
        run_script(&ns, "mutate", "echo changed > /data/sub/deep/a.txt && rm /data/blob",
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "src"}}]), mnt.clone()).await?;
        create(&ns.api::<PersistentVolumeClaim>(), pvc("restored", json!({
            "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}}))).await?;
        let (_, after) = run_script(&ns, "verify", manifest,
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "restored"}}]), mnt).await?;
        ensure!(after == before, "restored content differs:\nbefore:\n{before}\nafter:\n{after}");

        // An error is reported, like the real snapshot controller does.
        snaps.create(&PostParams::default(), &vs("broken", "no-such-pvc")?).await?;
        let err = wait_for("snapshot error", LONG, || async {
            let s = snaps.get("broken").await?;
            Ok(s.data["status"]["error"]["message"].as_str().map(String::from))
        })
        .await?;
        ensure!(err.contains("no-such-pvc"), "{err}");
        let s = snaps.get("broken").await?;
        ensure!(s.data["status"]["readyToUse"] != json!(true));

        // Deleting the snapshot removes its content and the copy (deletionPolicy Delete).
        let dir = testing::node_state_dir()?.join("snapshots").join(&content);
        ensure!(dir.is_dir(), "snapshot data missing at {}", dir.display());
        snaps.delete("snap", &DeleteParams::default()).await?;
        wait_for("snapshot and content deleted", LONG, || async {
            let gone = snaps.get_opt("snap").await?.is_none() && contents.get_opt(&content).await?.is_none();
            Ok(gone.then_some(()))
        })
        .await?;
        ensure!(!dir.exists(), "snapshot data left at {}", dir.display());
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn deployment_behind_service_answers_by_name() -> anyhow::Result<()> {
    with_ns("e2e-svc", |ns| async move {
        create(&ns.api::<ConfigMap>(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "site"},
            "data": {"hello.txt": "hello from the web pod\n"}})).await?;
        // A pod started before the Service exists must learn its name (hosts kept current).
        let pods: Api<Pod> = ns.api();
        create(&pods, script_pod("early", "for i in $(seq 150); do getent hosts web && exit 0; sleep 0.2; done; echo never resolved; exit 1", json!([]), json!([]))).await?;
        wait_pod(&pods, "early", &["Running"], LONG).await?;
        let deployments: Api<Deployment> = ns.api();
        create(&deployments, json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 3,
                "containers": [{"name": "http", "image": "python:3.11",
                  "command": ["python3", "-m", "http.server", "8080", "--bind", "$(POD_IP)", "--directory", "/srv"],
                  "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                  "ports": [{"name": "http", "containerPort": 8080}],
                  "readinessProbe": {"httpGet": {"path": "/hello.txt", "port": "http"}, "periodSeconds": 1},
                  "volumeMounts": [{"name": "site", "mountPath": "/srv"}]}],
                "volumes": [{"name": "site", "configMap": {"name": "site"}}]}}}
        })).await?;
        // Same labels, serves different content, never Ready (exec probe): must get no traffic.
        create(&ns.api::<ConfigMap>(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"},
            "data": {"hello.txt": "WRONG: unready pod\n"}})).await?;
        create(&ns.api::<Pod>(), json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unready", "labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "http", "image": "python:3.11",
                "command": ["python3", "-m", "http.server", "8080", "--bind", "$(POD_IP)", "--directory", "/srv"],
                "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f /srv/ready"]}, "periodSeconds": 1},
                "volumeMounts": [{"name": "site", "mountPath": "/srv"}]}],
              "volumes": [{"name": "site", "configMap": {"name": "other"}}]}})).await?;
        create(&ns.api::<Service>(), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})).await?;
        wait_for("deployment available", LONG, || async {
            let d = deployments.get("web").await?;
            Ok((d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)).then_some(()))
        })
        .await?;
        let fqdn = format!("web.{}.svc.cluster.local", ns.name);
        let (_, msg) = run_script(&ns, "client",
            &format!("curl -sS --max-time 5 http://web/hello.txt && curl -sS --max-time 5 http://{fqdn}/hello.txt && for i in 1 2 3 4 5 6; do curl -sS --max-time 5 http://web/hello.txt; done && getent hosts web"),
            json!([]), json!([])).await?;
        ensure!(msg.matches("hello from the web pod").count() == 8 && !msg.contains("WRONG"), "client got {msg:?}");
        let unready = ns.api::<Pod>().get("unready").await?;
        ensure!(phase(&unready) == "Running", "unready pod phase {}", phase(&unready));
        let ready = unready.status.and_then(|s| s.container_statuses).and_then(|c| c.first().map(|c| c.ready));
        ensure!(ready == Some(false), "the exec probe should keep the pod unready");
        let svc = ns.api::<Service>().get("web").await?;
        let ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        ensure!(msg.contains(&ip), "hosts entry for web is not the clusterIP {ip}: {msg}");
        let early = wait_pod(&pods, "early", &["Succeeded", "Failed"], LONG).await?;
        let seen = termination_message(&early, "main").unwrap_or_default();
        ensure!(phase(&early) == "Succeeded" && seen.contains(&ip), "running pod did not learn the Service name: {seen:?}");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn deleting_a_running_pod_kills_its_processes() -> anyhow::Result<()> {
    with_ns("e2e-kill", |ns| async move {
        let pods: Api<Pod> = ns.api();
        // Ignores SIGTERM (the ignore is inherited by its children), so only SIGKILL after
        // the grace period ends it.
        create(&pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
            "spec": {"terminationGracePeriodSeconds": 3, "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]}})).await?;
        let pod = wait_pod(&pods, "stubborn", &["Running"], LONG).await?;
        let uid = pod.metadata.uid.clone().context("uid")?;
        let pid_file = testing::node_state_dir()?.join("pods").join(&uid).join("main.pid");
        let pid: i32 = wait_for("container pid file", LONG, || async {
            Ok(std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()))
        })
        .await?;
        ensure!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} not running");
        let started = Instant::now();
        pods.delete("stubborn", &DeleteParams::default()).await?;
        wait_for("pod gone from the API", LONG, || async { Ok(pods.get_opt("stubborn").await?.is_none().then_some(())) }).await?;
        let took = started.elapsed();
        ensure!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still alive after deletion");
        ensure!(took >= Duration::from_secs(3), "deleted in {took:?}: the grace period was not honoured");
        ensure!(!pid_file.parent().unwrap().exists(), "pod state dir left behind");
        eprintln!("timing: TERM-ignoring pod deleted (grace 3 s) in {took:?}");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn unschedulable_and_unknown_image_pods_report_reasons() -> anyhow::Result<()> {
    with_ns("e2e-sched", |ns| async move {
        let pods: Api<Pod> = ns.api();
        create(&pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere"},
            "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}})).await?;
        create(&pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"},
            "spec": {"containers": [{"name": "main", "image": "registry.example/unknown:1"}]}})).await?;
        let reason = wait_for("PodScheduled=False", LONG, || async {
            let p = pods.get("elsewhere").await?;
            Ok(p.status.and_then(|s| s.conditions).and_then(|cs| {
                cs.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False").and_then(|c| c.reason)
            }))
        })
        .await?;
        ensure!(reason == "Unschedulable");
        let waiting = wait_for("image pull failure", LONG, || async {
            let p = pods.get("noimage").await?;
            Ok(p.status.and_then(|s| s.container_statuses).and_then(|cs| {
                cs.into_iter().next().and_then(|c| c.state).and_then(|s| s.waiting).filter(|w| {
                    matches!(w.reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff"))
                })
            }))
        })
        .await?;
        ensure!(waiting.message.unwrap_or_default().contains("registry.example/unknown"));
        ensure!(phase(&pods.get("noimage").await?) == "Pending");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn postgres_and_mariadb_images_serve_through_services() -> anyhow::Result<()> {
    with_ns("e2e-db", |ns| async move {
        let deployments: Api<Deployment> = ns.api();
        let db = |name: &str, image: &str, port: i32, env: serde_json::Value, mount: &str| json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
              "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "terminationGracePeriodSeconds": 10,
                "containers": [{"name": "db", "image": image, "env": env,
                  "ports": [{"name": "db", "containerPort": port}],
                  "readinessProbe": {"tcpSocket": {"port": "db"}, "periodSeconds": 1},
                  "volumeMounts": [{"name": "data", "mountPath": mount}]}],
                "volumes": [{"name": "data", "emptyDir": {}}]}}}
        });
        create(&deployments, db("pg", "postgres:15", 5432,
            json!([{"name": "POSTGRES_PASSWORD", "value": "pgpw"}, {"name": "POSTGRES_DB", "value": "app"},
                   {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}]), "/var/lib/postgresql/data")).await?;
        create(&deployments, db("maria", "mariadb:10.11", 3306,
            json!([{"name": "MARIADB_ROOT_PASSWORD", "value": "rootpw"}, {"name": "MARIADB_DATABASE", "value": "app"},
                   {"name": "MARIADB_USER", "value": "app"}, {"name": "MARIADB_PASSWORD", "value": "apppw"}]), "/var/lib/mysql")).await?;
        for (name, port) in [("pg", 5432), ("maria", 3306)] {
            create(&ns.api::<Service>(), json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": "db"}]}})).await?;
        }
        for name in ["pg", "maria"] {
            wait_for(&format!("deployment {name} available"), Duration::from_secs(180), || async {
                let d = deployments.get(name).await?;
                Ok((d.status.as_ref().and_then(|s| s.available_replicas) == Some(1)).then_some(()))
            })
            .await?;
        }
        let (_, msg) = run_script(&ns, "client",
            "PGPASSWORD=pgpw psql -h pg -U postgres -d app -Atc 'select 40+2' && mariadb -h maria -u app -papppw app -N -e 'select 6*7'",
            json!([]), json!([])).await?;
        ensure!(msg.lines().filter(|l| l.trim() == "42").count() == 2, "database answers: {msg:?}");
        Ok(ns)
    })
    .await
}

#[tokio::test]
#[ignore = "needs e2e/local"]
async fn init_containers_env_from_and_restart_on_failure() -> anyhow::Result<()> {
    with_ns("e2e-init", |ns| async move {
        create(&ns.api::<ConfigMap>(), json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"GREETING": "hi", "TARGET": "world"}})).await?;
        let pods: Api<Pod> = ns.api();
        create(&pods, json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ordered"},
            "spec": {"restartPolicy": "OnFailure",
                "initContainers": [
                    {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first >> /work/order"], "volumeMounts": [{"name": "w", "mountPath": "/work"}]},
                    {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo second >> /work/order"], "volumeMounts": [{"name": "w", "mountPath": "/work"}]}
                ],
                "containers": [{"name": "main", "image": "busybox", "workingDir": "/work",
                    "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                    "env": [{"name": "MSG", "value": "$(CFG_GREETING) $(CFG_TARGET)"}],
                    // Fails on the first run, succeeds after the restart.
                    "command": ["sh", "-c", "if [ ! -e attempt ]; then touch attempt; exit 1; fi; printf '%s|%s|%s' \"$(pwd)\" \"$MSG\" \"$(tr '\\n' ,  < order)\" > /dev/termination-log"],
                    "volumeMounts": [{"name": "w", "mountPath": "/work"}]}],
                "volumes": [{"name": "w", "emptyDir": {}}]}})).await?;
        let pod = wait_pod(&pods, "ordered", &["Succeeded", "Failed"], Duration::from_secs(60)).await?;
        ensure!(phase(&pod) == "Succeeded", "phase {}", phase(&pod));
        let st = pod.status.clone().context("status")?;
        let main = st.container_statuses.context("statuses")?.into_iter().next().context("main")?;
        ensure!(main.restart_count == 1, "restartCount {}", main.restart_count);
        let last = main.last_state.and_then(|l| l.terminated).context("lastState.terminated")?;
        ensure!(last.exit_code == 1, "{last:?}");
        let msg = termination_message(&pod, "main").unwrap_or_default();
        ensure!(msg == "/work|hi world|first,second,", "{msg:?}");
        let inits = st.init_container_statuses.context("init statuses")?;
        ensure!(inits.iter().all(|c| c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0 && t.reason.as_deref() == Some("Completed"))), "{inits:?}");
        Ok(ns)
    })
    .await
}
