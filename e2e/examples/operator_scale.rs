//! Scale benchmark of the controller (issue 4): N BackupPolicies in one namespace, all due
//! at the same schedule slot. Measures the controller's resident memory (before, at rest
//! with N policies, and after the slot), its reconcile latency (from /metrics), and how
//! late each due Backup was created and started (Running, mover Jobs created) after its
//! slot. Not a test: it prints figures; the only assertion is that every policy got
//! exactly one Backup for the slot.
//!
//!   source e2e/.local/env.sh && e2e/install-operator
//!   cargo run -p lifeboat-e2e --example operator_scale -- --policies 1000 [--jitter 2m]
//!
//! `--jitter D` gives every policy `schedule.jitter: D`; lateness is then measured from
//! each run's own start (slot plus its stable jitter). The run also measures the floor the
//! control plane sets: how long N bare ConfigMap creates take from a client with 32 in
//! flight (N Backups need at least N writes, and their Jobs and Pods more), and how long
//! the Jobs and Events of N runs take to write with no controller involved.
//!
//! Mover pods get a node selector no node matches, so that N movers do not all start on
//! the two cores of this machine; the controller's work (Backups, Jobs, status) is the
//! same: the pods simply stay Pending (Unschedulable) until the namespace is deleted.
//! For memory figures that mean something, run the operator from a release build:
//! `cargo build --release --bins && LIFEBOAT_BIN=$PWD/target/release/lifeboat e2e/local up`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{Timestamp, ToSpan, tz::TimeZone};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use lifeboat::crd::backup::{Backup, BackupPhase};
use lifeboat::crd::backup_policy::BackupPolicy;
use lifeboat_e2e::testing;
use serde_json::json;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// `--controller-pid P`: a controller run outside the cluster (e.g. under a heap profiler:
/// scale the Deployment to 0, run `heaptrack lifeboat controller ...` with the same flags),
/// measured instead of the leader Pod. `--controller-metrics URL` is its `/metrics`.
fn outside_controller() -> Option<(i32, String)> {
    let pid = arg("--controller-pid", "");
    let pid = pid.parse().ok()?;
    Some((
        pid,
        arg("--controller-metrics", "http://127.0.0.1:8080/metrics"),
    ))
}

fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("VmRSS")?
        .parse()?)
}

/// RSS in KiB of the controller process that holds the leader lease.
async fn leader_rss_kib(client: &kube::Client) -> anyhow::Result<(String, u64)> {
    if let Some((pid, _)) = outside_controller() {
        return Ok((format!("pid {pid}"), rss_kib(pid)?));
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "lifeboat-system");
    let holder = leases
        .get("lifeboat-controller")
        .await?
        .spec
        .and_then(|s| s.holder_identity)
        .context("no leader")?;
    let pod_name = holder
        .rsplit_once('_')
        .map_or(holder.as_str(), |(p, _)| p)
        .to_string();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "lifeboat-system");
    let uid = pods.get(&pod_name).await?.metadata.uid.context("pod uid")?;
    let dir = testing::node_state_dir()?.join("pods").join(&uid);
    let pid: i32 = std::fs::read_to_string(dir.join("controller.pid"))
        .with_context(|| format!("pid file of {pod_name}"))?
        .trim()
        .parse()?;
    Ok((pod_name, rss_kib(pid)?))
}

/// Sum and count of the reconcile-duration histogram per controller, from the leader.
async fn reconcile_stats(client: &kube::Client) -> anyhow::Result<BTreeMap<String, (f64, f64)>> {
    let urls = match outside_controller() {
        Some((_, url)) => vec![url],
        None => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "lifeboat-system");
            pods.list(&ListParams::default().labels("app.kubernetes.io/component=controller"))
                .await?
                .into_iter()
                .filter_map(|p| p.status.and_then(|s| s.pod_ip))
                .map(|ip| format!("http://{ip}:8080/metrics"))
                .collect()
        }
    };
    let mut out = BTreeMap::new();
    for url in urls {
        let text = std::process::Command::new("curl")
            .args(["-s", &url])
            .output()?;
        let text = String::from_utf8_lossy(&text.stdout);
        if !text.contains("lifeboat_leader 1") {
            continue;
        }
        for line in text.lines() {
            for (suffix, idx) in [("_sum{", 0), ("_count{", 1)] {
                if let Some(rest) =
                    line.strip_prefix(&format!("lifeboat_reconcile_duration_seconds{suffix}"))
                {
                    let ctl = rest.split('"').nth(1).unwrap_or_default().to_string();
                    let v: f64 = line
                        .rsplit(' ')
                        .next()
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(0.0);
                    let e = out.entry(ctl).or_insert((0.0, 0.0));
                    if idx == 0 { e.0 = v } else { e.1 = v }
                }
            }
        }
    }
    Ok(out)
}

/// `--keep`: leave the namespace (and its Backups and Jobs) for inspection.
fn keep() -> bool {
    std::env::args().any(|a| a == "--keep")
}

type Seen =
    std::sync::Arc<std::sync::Mutex<BTreeMap<String, (Option<Timestamp>, Option<Timestamp>)>>>;

/// When each Backup was first seen, and first seen Running, by a watch.
fn observe_backups(api: Api<Backup>) -> Seen {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let seen: Seen = Default::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).applied_objects());
        while let Some(ev) = events.next().await {
            let Ok(b) = ev else { continue };
            let now = Timestamp::now();
            let running = b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Running);
            let mut map = seen.lock().expect("lock");
            let e = map.entry(b.name_any()).or_default();
            e.0.get_or_insert(now);
            if running {
                e.1.get_or_insert(now);
            }
        }
    });
    out
}

/// A scratch namespace for a floor measurement (left over from an interrupted run is fine).
async fn create_namespace(nss: &Api<Namespace>, ns: &str) {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let _ = nss.create(&PostParams::default(), &namespace).await;
}

/// Deletes a scratch namespace and waits until it is gone, so the next measurement does
/// not share the control plane with its cleanup.
async fn remove_namespace(nss: &Api<Namespace>, ns: &str) -> anyhow::Result<()> {
    nss.delete(ns, &DeleteParams::default()).await?;
    testing::wait_for(
        "the floor namespace gone",
        Duration::from_secs(300),
        || async { Ok(nss.get_opt(ns).await?.is_none().then_some(())) },
    )
    .await
}

/// How long `n` bare ConfigMap creates take with 32 in flight: the write throughput the
/// control plane offers any controller on this machine.
async fn write_floor(client: &kube::Client, n: usize) -> anyhow::Result<f64> {
    use futures::{StreamExt, TryStreamExt};
    let ns = "scale-floor";
    let nss: Api<Namespace> = Api::all(client.clone());
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_string()),
        ..Default::default()
    };
    create_namespace(&nss, ns).await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    let t = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let cms = cms.clone();
            let cm = k8s_openapi::api::core::v1::ConfigMap {
                metadata: meta(&format!("c{i:04}")),
                ..Default::default()
            };
            async move { cms.create(&PostParams::default(), &cm).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    remove_namespace(&nss, ns).await?;
    println!("floor: {n} ConfigMap creates with 32 in flight took {secs:.2} s");
    Ok(secs)
}

/// How long the writes a run causes at the least take for `n` runs, with 32 in flight and
/// no controller involved: one Job (whose Pod the controller manager then creates) and two
/// Events each. A run also needs its Backup and two status writes, so this is a lower
/// bound on how fast `n` runs due at one instant can all be started on this machine.
async fn run_floor(client: &kube::Client, n: usize) -> anyhow::Result<f64> {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::events::v1::Event;
    let ns = "scale-floor-runs";
    let nss: Api<Namespace> = Api::all(client.clone());
    create_namespace(&nss, ns).await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let t = Instant::now();
    futures::stream::iter(0..3 * n)
        .map(|i| {
            let (jobs, events) = (jobs.clone(), events.clone());
            async move {
                let name = format!("r{:04}", i / 3);
                if i % 3 == 0 {
                    // Pinned to no node, like the bench's movers: the Pod stays Pending.
                    let job: Job = serde_json::from_value(json!({
                        "metadata": {"name": name},
                        "spec": {"backoffLimit": 0, "template": {"spec": {
                            "restartPolicy": "Never",
                            "nodeSelector": {"lifeboat.dev/bench": "no-such-node"},
                            "containers": [{"name": "c", "image": "lifeboat.dev/lifeboat:dev",
                                            "command": ["true"]}]}}}
                    }))?;
                    jobs.create(&PostParams::default(), &job).await?;
                } else {
                    let ev: Event = serde_json::from_value(json!({
                        "metadata": {"name": format!("{name}.{i}")},
                        "eventTime": Timestamp::now().to_string(),
                        "type": "Normal", "reason": "Floor", "action": "Bench",
                        "note": "write floor", "reportingController": "lifeboat.dev/bench",
                        "reportingInstance": "bench",
                        "regarding": {"kind": "Job", "namespace": ns, "name": name}
                    }))?;
                    events.create(&PostParams::default(), &ev).await?;
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let secs = t.elapsed().as_secs_f64();
    remove_namespace(&nss, ns).await?;
    println!(
        "floor: {n} Jobs and {} Events with 32 in flight took {secs:.2} s",
        2 * n
    );
    Ok(secs)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = arg("--policies", "1000").parse()?;
    let ns = arg("--namespace", "scale-bench");
    let client = testing::client().await?;
    // Right after an install the new pod may still be waiting for the lease.
    let floor = write_floor(&client, n).await?;
    let floor_runs = run_floor(&client, n).await?;
    let (pod, rss0) = testing::wait_for("a leader", Duration::from_secs(60), || async {
        Ok(leader_rss_kib(&client).await.ok())
    })
    .await?;
    println!("leader {pod}: RSS before {:.1} MiB", rss0 as f64 / 1024.0);

    // Namespace, a Ready store (the bucket and repository already made by the store).
    let nss: Api<Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    let pp = PatchParams::apply("scale-bench").force();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets.patch("s3-creds", &pp, &Patch::Apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": testing::env("LIFEBOAT_TEST_S3_ACCESS_KEY")?, "AWS_SECRET_ACCESS_KEY": testing::env("LIFEBOAT_TEST_S3_SECRET_KEY")?}}))).await?;
    secrets
        .patch(
            "repo-pass",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-pass"},
        "stringData": {"password": "scale-bench-password-0123456789abcdef"}}),
            ),
        )
        .await?;
    let s3 = std::process::Command::new(testing::env("LIFEBOAT_BIN")?)
        .args(["repo", "init", "--s3-create-bucket"])
        .env(
            "LIFEBOAT_REPOSITORY",
            format!(
                "s3:{}/scale-bench/repo",
                testing::env("LIFEBOAT_TEST_S3_ENDPOINT")?
            ),
        )
        .env("LIFEBOAT_PASSWORD", "scale-bench-password-0123456789abcdef")
        .env(
            "AWS_ACCESS_KEY_ID",
            testing::env("LIFEBOAT_TEST_S3_ACCESS_KEY")?,
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            testing::env("LIFEBOAT_TEST_S3_SECRET_KEY")?,
        )
        .output()?;
    if !s3.status.success() && !String::from_utf8_lossy(&s3.stderr).contains("already exists") {
        bail!("repo init: {}", String::from_utf8_lossy(&s3.stderr));
    }
    let stores: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<lifeboat::crd::store::BackupStore>(&()),
    );
    stores.patch("s3", &pp, &Patch::Apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupStore", "metadata": {"name": "s3"},
        "spec": {"s3": {"endpoint": testing::env("LIFEBOAT_TEST_S3_ENDPOINT")?, "bucket": "scale-bench", "prefix": "repo", "credentials": {"name": "s3-creds"}},
                 "repositoryPassword": {"name": "repo-pass", "key": "password"}}}))).await?;

    // N policies due at the same slot, at least 90 s after they exist.
    // `--spread M`: policy i is due at the first slot plus (i mod M) minutes; M = 1 (the
    // default) makes all N due at once, the worst case.
    let spread: i64 = arg("--spread", "1").parse::<i64>()?.max(1);
    let jitter = arg("--jitter", "");
    let slot = (Timestamp::now() + 150.seconds()).to_zoned(TimeZone::UTC);
    let slot = slot.with().second(0).subsec_nanosecond(0).build()?;
    let slot_of = |i: usize| -> anyhow::Result<jiff::Zoned> {
        Ok(slot.checked_add(((i as i64) % spread).minutes())?)
    };
    let cron = format!(
        "{} {} * * * (spread over {spread} minute(s), jitter {jitter:?})",
        slot.minute(),
        slot.hour()
    );
    println!(
        "creating {n} policies on {cron:?} (slot {})",
        slot.timestamp()
    );
    let policies: Api<BackupPolicy> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    for i in 0..n {
        let name = format!("p{i:04}");
        let mut schedule =
            json!({"cron": format!("{} {} * * *", slot_of(i)?.minute(), slot_of(i)?.hour())});
        if !jitter.is_empty() {
            schedule["jitter"] = json!(jitter);
        }
        policies.patch(&name, &pp, &Patch::Apply(json!({"apiVersion": "lifeboat.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": name},
            "spec": {"storeRef": {"name": "s3"}, "schedule": schedule,
                     "sources": {"databases": [{"name": "db", "engine": "postgres", "host": "127.0.0.1", "port": 9, "database": "x", "credentials": {"name": "repo-pass", "usernameKey": "password"}}]},
                     "mover": {"nodeSelector": {"lifeboat.dev/bench": "no-such-node"}}}}))).await?;
    }
    println!("created in {:.1} s", t.elapsed().as_secs_f64());
    testing::wait_for("every policy Ready", Duration::from_secs(300), || async {
        let ready = policies
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        Ok((ready == n).then_some(()))
    })
    .await?;
    let at_rest = reconcile_stats(&client).await?;
    let (_, rss1) = leader_rss_kib(&client).await?;
    println!(
        "all {n} policies Ready; leader RSS at rest {:.1} MiB",
        rss1 as f64 / 1024.0
    );

    let jitter_max = if jitter.is_empty() {
        Duration::ZERO
    } else {
        lifeboat::schedule::duration::parse(&jitter)?
    };
    let until_slot = Duration::try_from(slot.timestamp().duration_since(Timestamp::now()))
        .unwrap_or_default()
        + Duration::from_secs(60 * (spread as u64 - 1))
        + jitter_max;
    // Timestamps in objects are whole seconds; a watch started before the slot sees each
    // Backup appear and turn Running to the millisecond (a little late, never early).
    let seen = observe_backups(Api::namespaced(client.clone(), &ns));
    tokio::time::sleep(until_slot).await;
    let result = async {
        let backups: Api<Backup> = Api::namespaced(client.clone(), &ns);
        testing::wait_for(
            "a Running Backup per policy",
            Duration::from_secs(600),
            || async {
                let list = backups.list(&Default::default()).await?.items;
                let running = list
                    .iter()
                    .filter(|b| {
                        b.status.as_ref().and_then(|s| s.phase) == Some(BackupPhase::Running)
                    })
                    .count();
                Ok((running >= n).then_some(()))
            },
        )
        .await?;
        let list = backups.list(&Default::default()).await?.items;
        let (_, rss2) = leader_rss_kib(&client).await?;
        anyhow::Ok((list, rss2))
    }
    .await;
    let (list, rss2) = result?;
    let after = reconcile_stats(&client).await?;
    if !keep() {
        nss.delete(&ns, &DeleteParams::default()).await?;
    }
    let mut per_policy: BTreeMap<String, usize> = BTreeMap::new();
    let (mut created, mut started) = (Vec::new(), Vec::new());
    for b in &list {
        *per_policy
            .entry(b.spec.policy_ref.name.clone())
            .or_default() += 1;
        let (seen_at, running_at) = seen
            .lock()
            .expect("lock")
            .get(&b.name_any())
            .copied()
            .unwrap_or_default();
        let c = seen_at.context("a Backup the watch never saw")?;
        let own_slot = b
            .spec
            .scheduled_time
            .as_ref()
            .map_or(slot.timestamp(), |t| t.0);
        // The run's own start: its slot plus the policy's stable jitter for that slot.
        let spec = lifeboat::crd::common::ScheduleSpec {
            cron: "* * * * *".into(),
            jitter: (!jitter.is_empty()).then(|| jitter.clone()),
            ..Default::default()
        };
        let identity = format!("{ns}/{}", b.spec.policy_ref.name);
        let delay = lifeboat::schedule::Schedule::new(&spec, &identity)?.jitter_for(own_slot);
        let own_slot = own_slot + jiff::SignedDuration::try_from(delay)?;
        created.push(c.duration_since(own_slot).as_secs_f64());
        if let Some(s) = running_at {
            started.push(s.duration_since(own_slot).as_secs_f64());
        }
    }
    if per_policy.len() != n || per_policy.values().any(|c| *c != 1) {
        bail!(
            "expected exactly one Backup per policy, got {} policies with runs, max {}",
            per_policy.len(),
            per_policy.values().max().unwrap_or(&0)
        );
    }
    created.sort_by(f64::total_cmp);
    started.sort_by(f64::total_cmp);
    println!(
        "\n## Controller at scale: {n} BackupPolicies due over {spread} slot(s) (local 1.20 control plane, 2 cores)\n"
    );
    println!("| figure | value |\n|---|---|");
    println!(
        "| floor: {n} bare ConfigMap creates, 32 in flight, no controller work | {floor:.2} s |\n| floor: {n} Jobs (Pods created by the controller manager) and {} Events, 32 in flight, no controller work | {floor_runs:.2} s |",
        2 * n
    );
    println!(
        "| leader RSS before / {n} policies at rest / after the slot ({n} Backups, {n} Jobs) | {:.1} / {:.1} / {:.1} MiB |",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0
    );
    println!(
        "| Backup seen by a watch after its own start (slot + jitter): p50 / p99 / max | {:.2} / {:.2} / {:.2} s |",
        percentile(&created, 0.5),
        percentile(&created, 0.99),
        percentile(&created, 1.0)
    );
    println!(
        "| Backup seen Running (mover Job created) after its own start: p50 / p99 / max | {:.2} / {:.2} / {:.2} s |",
        percentile(&started, 0.5),
        percentile(&started, 0.99),
        percentile(&started, 1.0)
    );
    for (ctl, (sum, count)) in &after {
        let (s0, c0) = at_rest.get(ctl).copied().unwrap_or((0.0, 0.0));
        if count - c0 > 0.0 {
            println!(
                "| {ctl} reconciles around the slot: count / mean | {:.0} / {:.1} ms |",
                count - c0,
                1000.0 * (sum - s0) / (count - c0)
            );
        }
    }
    if !keep() {
        println!("\nnamespace {ns} deleted");
    }
    Ok(())
}
