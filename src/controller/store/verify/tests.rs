//! The verification's decisions, one reconcile at a time: `World::step` feeds the status
//! back as the next reconcile reads it.

use super::*;
use crate::controller::access::observe::testing::{owned_by, uid};
use crate::crd::common::{Failure, ScheduleSpec};
use crate::crd::store::S3Spec;
use crate::jobs::result::RESULT_VERSION;
use k8s_openapi::api::batch::v1::{JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, PodSpec,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

struct World {
    spec: BackupStoreSpec,
    status: StoreStatus,
    ready: bool,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    config: Config,
    now: Timestamp,
}

impl World {
    /// A store created at 02:30 that verifies daily at 03:00, 100% of the data.
    fn new() -> Self {
        World {
            spec: BackupStoreSpec {
                s3: S3Spec {
                    bucket: "b".into(),
                    endpoint: Some("http://s3.local:9000".into()),
                    ..S3Spec::default()
                },
                verify: Some(StoreVerify {
                    schedule: ScheduleSpec {
                        cron: "0 3 * * *".into(),
                        ..ScheduleSpec::default()
                    },
                    read_data_subset: Some("100%".into()),
                }),
                ..BackupStoreSpec::default()
            },
            status: StoreStatus::default(),
            ready: true,
            jobs: vec![],
            pods: vec![],
            config: Config::for_tests(),
            now: ts("2026-12-01T02:40:00Z"),
        }
    }

    fn step(&mut self) -> Plan {
        let o = Observed {
            namespace: Some("shop"),
            name: "s3",
            uid: "store-uid",
            created: ts("2026-12-01T02:30:00Z"),
            generation: Some(1),
            spec: &self.spec,
            ready: self.ready,
            jobs: &self.jobs,
            pods: &self.pods,
            config: &self.config,
            now: self.now,
        };
        plan(&o, &mut self.status)
    }

    fn at(&mut self, t: &str) -> &mut Self {
        self.now = ts(t);
        self
    }

    fn condition(&self) -> Option<(String, String, String)> {
        conditions::get(&self.status.conditions, condition::DATA_VERIFIED)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    /// The Job the plan created, as the API server would hold it (with a UID).
    fn created(&mut self, p: &Plan) -> String {
        let mut j = p.create.clone().expect("a verify Job");
        j.metadata.uid = Some(uid(&j.name_any()));
        let name = j.name_any();
        self.jobs.push(j);
        name
    }

    fn finish(&mut self, name: &str, ok: bool, result: &MoverResult) {
        let j = self.jobs.iter_mut().find(|j| j.name_any() == name).unwrap();
        j.status = Some(JobStatus {
            conditions: Some(vec![JobCondition {
                type_: if ok { "Complete" } else { "Failed" }.into(),
                status: "True".into(),
                ..JobCondition::default()
            }]),
            ..JobStatus::default()
        });
        self.pods
            .push(owned_by(pod(name, Some(result.to_message()), None), name));
    }
}

fn pod(job: &str, message: Option<String>, waiting: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job}-x")),
            creation_timestamp: Some(Time(ts("2026-12-01T03:00:01Z"))),
            ..ObjectMeta::default()
        },
        // The Job's ServiceAccount, as the job controller copies it.
        spec: Some(PodSpec {
            service_account_name: Some("lifeboat-mover".into()),
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "mover".into(),
                state: Some(ContainerState {
                    terminated: message.map(|m| ContainerStateTerminated {
                        exit_code: 0,
                        message: Some(m),
                        finished_at: Some(Time(ts("2026-12-01T03:04:00Z"))),
                        ..ContainerStateTerminated::default()
                    }),
                    waiting: waiting.map(|r| ContainerStateWaiting {
                        reason: Some(r.into()),
                        message: Some("image not found".into()),
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn result(failure: Option<(&str, &str)>) -> MoverResult {
    let mut details = serde_json::Map::new();
    details.insert("packs".into(), 40.into());
    details.insert("packsRead".into(), 40.into());
    details.insert("bytesRead".into(), (3u64 << 20).into());
    MoverResult {
        v: RESULT_VERSION,
        details,
        failure: failure.map(|(reason, message)| Failure {
            reason: reason.into(),
            message: message.into(),
        }),
        ..MoverResult::default()
    }
}

#[test]
fn a_slot_after_the_store_was_made_starts_one_job_in_the_controllers_namespace() {
    let mut w = World::new();
    // 02:40: the first slot (03:00) has not come.
    let p = w.step();
    assert!(p.create.is_none());
    assert_eq!(
        w.status
            .verify
            .as_ref()
            .unwrap()
            .next_verify_time
            .as_deref(),
        Some("2026-12-01T03:00:00Z")
    );
    assert_eq!(p.wake, Some(Duration::from_secs(20 * 60)));
    assert!(w.condition().is_none(), "nothing verified yet");
    // 03:00: the slot's Job, on a copy of the store's Secrets named like it.
    let p = w.at("2026-12-01T03:00:05Z").step();
    let job = p.create.as_ref().expect("the 03:00 Job");
    let name = job.name_any();
    assert_eq!(name, "verify-shop-s3-202612010300");
    assert_eq!(job.namespace().as_deref(), Some("lifeboat-system"));
    assert!(job.metadata.owner_references.is_none());
    assert_eq!(job.annotations()[annotations::OWNER_UID], "store-uid");
    assert_eq!(job.labels()[labels::JOB_TYPE], JOB_TYPE);
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(
        MoverCommand::parse(&args).unwrap(),
        MoverCommand::Verify(VerifyRepository {
            read_data_subset: Some("100%".into())
        })
    );
    let secrets: Vec<String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|s| s.name.clone())
        .collect();
    assert!(
        !secrets.is_empty() && secrets.iter().all(|s| *s == name),
        "{secrets:?}"
    );
    assert_eq!(
        w.status.verify.as_ref().unwrap().job.as_deref(),
        Some(name.as_str())
    );
    // The status write was lost: the next reconcile adopts the Job, creates none.
    w.created(&p);
    w.status.verify.as_mut().unwrap().job = None;
    w.status.verify.as_mut().unwrap().last_schedule_time = None;
    let p = w.at("2026-12-01T03:00:06Z").step();
    assert!(p.create.is_none());
    assert!(p.delete.is_empty());
    assert_eq!(
        w.status.verify.as_ref().unwrap().job.as_deref(),
        Some(name.as_str())
    );
    assert_eq!(p.wake, Some(POLL));
}

#[test]
fn a_passed_run_sets_data_verified_and_the_next_slot_runs_again() {
    let mut w = World::new();
    let p = w.at("2026-12-01T03:00:05Z").step();
    let name = w.created(&p);
    w.finish(&name, true, &result(None));
    let p = w.at("2026-12-01T03:05:00Z").step();
    let (status, reason, message) = w.condition().unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Verified"));
    assert_eq!(
        message,
        "read 40 of 40 pack(s) (3.0 MiB) and checked every index, snapshot and tree: no damage"
    );
    // The Job stays until a status without it is stored, then goes.
    assert!(p.delete.is_empty());
    assert_eq!(p.wake, Some(POLL));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "DataVerified" && !e.warning)
    );
    assert_eq!(p.finished, Some("Passed"));
    let p = w.at("2026-12-01T03:05:10Z").step();
    assert_eq!(p.delete, vec![name.clone()]);
    assert!(p.events.is_empty() && p.finished.is_none());
    let v = w.status.verify.clone().unwrap();
    assert_eq!(v.last_result.as_deref(), Some("Passed"));
    assert_eq!(v.last_passed_time, Some(Time(ts("2026-12-01T03:04:00Z"))));
    assert!(v.job.is_none());
    // The Job is gone; nothing until the next day's slot.
    w.jobs.clear();
    w.pods.clear();
    assert!(w.at("2026-12-01T12:00:00Z").step().create.is_none());
    let p = w.at("2026-12-02T03:00:00Z").step();
    assert_eq!(p.create.unwrap().name_any(), "verify-shop-s3-202612020300");
}

#[test]
fn damage_fails_the_condition_with_the_movers_reason_and_a_warning() {
    let mut w = World::new();
    let p = w.at("2026-12-01T03:00:05Z").step();
    let name = w.created(&p);
    let damaged = "repository s3:.../b: check found 1 error(s), first: pack 5f3a: blob 09c2 does not match its hash";
    w.finish(
        &name,
        false,
        &result(Some(("RepositoryCorrupted", damaged))),
    );
    let p = w.at("2026-12-01T03:05:00Z").step();
    let (status, reason, message) = w.condition().unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        ("False", "RepositoryCorrupted", damaged)
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "DataVerificationFailed" && e.warning)
    );
    let v = w.status.verify.clone().unwrap();
    assert_eq!(v.last_result.as_deref(), Some("RepositoryCorrupted"));
    assert!(v.last_passed_time.is_none());
    // A reason the mover may not give is not passed through as a condition reason.
    let mut w = World::new();
    let p = w.at("2026-12-01T03:00:05Z").step();
    let name = w.created(&p);
    w.finish(&name, false, &result(Some(("Something new", "x"))));
    w.at("2026-12-01T03:05:00Z").step();
    assert_eq!(w.condition().unwrap().1, "VerifyFailed");
}

#[test]
fn a_job_that_cannot_start_or_vanishes_ends_the_run_with_its_reason() {
    let mut w = World::new();
    let p = w.at("2026-12-01T03:00:05Z").step();
    let name = w.created(&p);
    w.pods
        .push(owned_by(pod(&name, None, Some("ImagePullBackOff")), &name));
    let p = w.at("2026-12-01T03:01:00Z").step();
    assert_eq!(w.condition().unwrap().1, "MoverCannotStart");
    assert!(p.delete.is_empty());
    assert_eq!(w.step().delete, vec![name]);
    // A Job whose pods are refused (no pod at all) gives up after two minutes.
    w.jobs.clear();
    w.pods.clear();
    let p = w.at("2026-12-01T12:00:00Z").step();
    assert!(p.create.is_none(), "the 03:00 slot was handled");
    w.status.verify.as_mut().unwrap().last_schedule_time = None;
    let p = w.at("2026-12-01T12:00:01Z").step();
    let name = w.created(&p);
    w.jobs.last_mut().unwrap().metadata.creation_timestamp = Some(Time(ts("2026-12-01T12:00:01Z")));
    w.at("2026-12-01T12:01:30Z").step();
    assert!(
        w.status.verify.as_ref().unwrap().job.is_some(),
        "still waiting"
    );
    w.at("2026-12-01T12:02:02Z").step();
    let (_, reason, message) = w.condition().unwrap();
    assert_eq!(reason, "MoverCannotStart");
    assert!(message.contains("has had no pod for 2m"), "{message}");
    assert!(w.status.verify.as_ref().unwrap().job.is_none(), "{name}");
    // The next slot's Job is deleted by someone while it runs.
    w.jobs.clear();
    w.pods.clear();
    w.at("2026-12-02T03:00:00Z").step();
    let p = w.at("2026-12-02T03:00:30Z").step();
    assert!(p.create.is_none());
    assert_eq!(w.condition().unwrap().1, "JobVanished");
}

#[test]
fn no_run_while_the_store_is_not_ready_and_none_once_verify_is_off() {
    let mut w = World::new();
    w.ready = false;
    assert!(w.at("2026-12-01T03:00:05Z").step().create.is_none());
    // Ready again later that day: the missed slot runs then.
    w.ready = true;
    let p = w.at("2026-12-01T09:00:00Z").step();
    let name = w.created(&p);
    // Turned off mid-run: the Job goes, the status and condition too.
    w.spec.verify = None;
    let p = w.step();
    assert_eq!(p.delete, vec![name]);
    assert!(w.status.verify.is_none());
    assert!(w.condition().is_none());
}

#[test]
fn an_invalid_schedule_is_a_condition_not_a_run() {
    let mut w = World::new();
    w.spec.verify.as_mut().unwrap().schedule.cron = "61 * * * *".into();
    let p = w.at("2026-12-01T03:00:05Z").step();
    assert!(p.create.is_none());
    assert_eq!(w.condition().unwrap().1, "InvalidSchedule");
}
