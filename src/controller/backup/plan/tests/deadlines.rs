//! Waits that end: a mover Job whose pods are never created fails after
//! `POD_CREATE_TIMEOUT` instead of at the Job's own deadline (hours later).

use super::*;
use crate::controller::access::observe::POD_CREATE_TIMEOUT;

#[test]
fn a_mover_job_without_a_pod_fails_after_the_pod_create_timeout() {
    let cases = [
        // (age of the Job, has a pod, fails)
        (POD_CREATE_TIMEOUT - Duration::from_secs(1), false, false),
        (POD_CREATE_TIMEOUT, false, true),
        (POD_CREATE_TIMEOUT * 10, true, false),
    ];
    for (age, with_pod, fails) in cases {
        let mut w = World::new(CopyMethod::Direct, None);
        w.step();
        let created = ts(NOW) - jiff::SignedDuration::try_from(age).unwrap();
        let mut j = job(DB_JOB, None);
        j.metadata.creation_timestamp = Some(Time(created));
        w.jobs = vec![j, job(VOL_JOB, None)];
        if with_pod {
            w.pods = vec![pod(DB_JOB, "Pending", None, None)];
        }
        let p = w.step();
        let db = p.status.sources.iter().find(|s| s.name == "pg").unwrap();
        if fails {
            let f = db.failure.as_ref().unwrap();
            assert_eq!(f.reason, "MoverCannotStart", "{age:?}");
            assert!(f.message.contains("has had no pod for 2m"), "{}", f.message);
            assert_eq!(p.delete_jobs, vec![DB_JOB.to_string()]);
        } else {
            assert_eq!(db.phase, SourcePhase::Running, "{age:?} pod={with_pod}");
            assert!(p.delete_jobs.is_empty());
        }
    }
}
