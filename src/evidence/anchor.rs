//! The anchor of a drill's chain: its head (sequence number, digest and location of the
//! newest report, its run and when it started), signed by the installation's key and kept
//! where tenants cannot write (a ConfigMap per drill in the controller's namespace; see
//! `super::objects`). Reports live in the tenant's bucket, which anyone holding the
//! store's credentials can rewrite; the anchor is what a consistent rewrite of the whole
//! chain, a removed newest report or a deleted DRDrill cannot change.
//!
//! One ConfigMap per drill rather than one per namespace: no write contention between the
//! drills of a namespace and no 1 MiB object limit to reach (an anchor is about 1 KiB, a
//! namespace with a thousand drills would be near it), at the price of one small object
//! per drill in the controller's namespace.

use jiff::Timestamp;

use super::Error;
use super::keys::{PublicKey, SigningKey};
use super::signature::{Envelope, Fields, SignatureProblem};

/// The head of one drill's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub namespace: String,
    pub drill: String,
    /// Sequence number of the newest report.
    pub sequence: u64,
    /// SHA-256 of the newest report's bytes.
    pub head_sha256: String,
    /// Its location (`s3://bucket/prefix/lifeboat-reports/...`): where the chain is, even
    /// after the DRDrill and its policy are gone.
    pub head_location: String,
    /// Its run.
    pub last_run: String,
    pub last_run_uid: Option<String>,
    /// When that run started.
    pub last_run_time: Option<Timestamp>,
    /// The drill's BackupPolicy when the newest report was sealed (its store holds the
    /// reports).
    pub policy: Option<String>,
    /// The first sequence number that was signed: reports before it predate signing and
    /// are covered only by the links that the first signed report's digest seals.
    pub signed_since: u64,
    /// When the anchor was last advanced.
    pub updated_at: Timestamp,
}

/// Why an anchor cannot be read or trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnchorProblem {
    #[error("{0}")]
    Signature(#[from] SignatureProblem),
    #[error("the anchor is not readable: {0}")]
    Unreadable(String),
    #[error("the anchor is for drill {0}, not {1}")]
    OtherDrill(String, String),
}

impl Anchor {
    /// The signed text.
    pub fn payload(&self) -> Result<String, Error> {
        Fields::new("anchor")
            .with("namespace", Some(&self.namespace))
            .with("drill", Some(&self.drill))
            .with("sequence", Some(self.sequence))
            .with("headSha256", Some(&self.head_sha256))
            .with("headLocation", Some(&self.head_location))
            .with("lastRun", Some(&self.last_run))
            .with("lastRunUid", self.last_run_uid.as_ref())
            .with("lastRunTime", self.last_run_time)
            .with("policy", self.policy.as_ref())
            .with("signedSince", Some(self.signed_since))
            .with("updatedAt", Some(self.updated_at))
            .render()
    }

    /// Reads a payload.
    pub fn parse(payload: &str) -> Result<Anchor, Error> {
        let f = Fields::parse(payload)?;
        if f.kind() != Some("anchor") {
            return Err(Error::Payload(format!(
                "a {:?} payload, not an anchor's",
                f.kind().unwrap_or("")
            )));
        }
        let number = |k: &str| {
            f.number(k)?
                .ok_or_else(|| Error::Payload(format!("the payload has no {k}")))
        };
        Ok(Anchor {
            namespace: f.require("namespace")?.into(),
            drill: f.require("drill")?.into(),
            sequence: number("sequence")?,
            head_sha256: f.require("headSha256")?.into(),
            head_location: f.require("headLocation")?.into(),
            last_run: f.require("lastRun")?.into(),
            last_run_uid: f.get("lastRunUid").map(str::to_string),
            last_run_time: f.time("lastRunTime")?,
            policy: f.get("policy").map(str::to_string),
            signed_since: number("signedSince")?,
            updated_at: f
                .time("updatedAt")?
                .ok_or_else(|| Error::Payload("the payload has no updatedAt".into()))?,
        })
    }

    /// Signs the anchor.
    pub fn sign(&self, key: &SigningKey) -> Result<Envelope, Error> {
        Ok(Envelope::sign(key, self.payload()?))
    }

    /// The anchor in `env`, if signed by a trusted key and about `namespace/drill`.
    pub fn open(
        env: &Envelope,
        trusted: &[PublicKey],
        namespace: &str,
        drill: &str,
    ) -> Result<Anchor, AnchorProblem> {
        let payload = env.open(trusted)?;
        let a = Anchor::parse(payload).map_err(|e| AnchorProblem::Unreadable(e.to_string()))?;
        if a.namespace != namespace || a.drill != drill {
            return Err(AnchorProblem::OtherDrill(
                format!("{}/{}", a.namespace, a.drill),
                format!("{namespace}/{drill}"),
            ));
        }
        Ok(a)
    }

    /// The anchor's fields without checking any signature (to name a drill whose anchor
    /// does not verify).
    pub fn peek(env: &Envelope) -> Option<Anchor> {
        Anchor::parse(&env.payload).ok()
    }
}

/// The new head, once a report has been sealed.
#[derive(Clone, Debug)]
pub struct NewHead<'a> {
    pub namespace: &'a str,
    pub drill: &'a str,
    pub sequence: u64,
    pub sha256: &'a str,
    pub previous_sha256: Option<&'a str>,
    pub location: &'a str,
    pub run: &'a str,
    pub run_uid: Option<&'a str>,
    pub run_time: Option<Timestamp>,
    pub policy: Option<&'a str>,
}

/// The anchor after `head`, which must follow `previous` (the next sequence number,
/// linked to its digest): the controller never anchors a fork. The first anchor of a
/// drill starts wherever its chain is (`signedSince` = that report's sequence).
pub fn advance(
    previous: Option<&Anchor>,
    head: &NewHead<'_>,
    now: Timestamp,
) -> Result<Anchor, Error> {
    let signed_since = match previous {
        None => head.sequence,
        Some(p)
            if p.sequence + 1 == head.sequence && head.previous_sha256 == Some(&p.head_sha256) =>
        {
            p.signed_since
        }
        Some(p) => {
            return Err(Error::Fork(format!(
                "report {} of run {} (sequence {}, previous {}) does not follow the anchored head, sequence {} ({})",
                head.sha256,
                head.run,
                head.sequence,
                head.previous_sha256.unwrap_or("none"),
                p.sequence,
                p.head_sha256
            )));
        }
    };
    Ok(Anchor {
        namespace: head.namespace.into(),
        drill: head.drill.into(),
        sequence: head.sequence,
        head_sha256: head.sha256.into(),
        head_location: head.location.into(),
        last_run: head.run.into(),
        last_run_uid: head.run_uid.map(str::to_string),
        last_run_time: head.run_time,
        policy: head.policy.map(str::to_string),
        signed_since,
        updated_at: now,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn anchor() -> Anchor {
        Anchor {
            namespace: "shop".into(),
            drill: "orders".into(),
            sequence: 4,
            head_sha256: "cd".repeat(32),
            head_location: "s3://b/p/lifeboat-reports/shop/orders/x.json".into(),
            last_run: "orders-4".into(),
            last_run_uid: Some("u4".into()),
            last_run_time: Some("2026-11-22T15:00:00Z".parse().unwrap()),
            policy: Some("shop".into()),
            signed_since: 1,
            updated_at: "2026-11-22T15:03:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn anchors_round_trip_signed() {
        let key = SigningKey::generate().unwrap();
        let env = anchor().sign(&key).unwrap();
        let a = Anchor::open(&env, &[key.public().clone()], "shop", "orders").unwrap();
        assert_eq!(a, anchor());
        assert!(matches!(
            Anchor::open(&env, &[key.public().clone()], "shop", "payments"),
            Err(AnchorProblem::OtherDrill(..))
        ));
        let mut edited = env.clone();
        edited.payload = edited.payload.replace("sequence: 4", "sequence: 2");
        assert!(matches!(
            Anchor::open(&edited, &[key.public().clone()], "shop", "orders"),
            Err(AnchorProblem::Signature(SignatureProblem::BadSignature(_)))
        ));
        assert_eq!(Anchor::peek(&edited).unwrap().sequence, 2);
    }

    #[test]
    fn the_anchor_only_advances_along_the_chain() {
        let now: Timestamp = "2026-11-29T15:03:00Z".parse().unwrap();
        let prev = anchor();
        let sha = "ef".repeat(32);
        let next = NewHead {
            namespace: "shop",
            drill: "orders",
            sequence: 5,
            sha256: &sha,
            previous_sha256: Some(&prev.head_sha256),
            location: "s3://b/p/lifeboat-reports/shop/orders/y.json",
            run: "orders-5",
            run_uid: Some("u5"),
            run_time: None,
            policy: Some("shop"),
        };
        let a = advance(Some(&prev), &next, now).unwrap();
        assert_eq!(
            (a.sequence, a.signed_since, a.last_run.as_str()),
            (5, 1, "orders-5")
        );
        // A gap, a replay of the head's sequence, a wrong link: refused.
        for (seq, link) in [
            (6, Some(prev.head_sha256.as_str())),
            (4, Some(prev.head_sha256.as_str())),
            (5, Some("00")),
            (5, None),
        ] {
            let h = NewHead {
                sequence: seq,
                previous_sha256: link,
                ..next.clone()
            };
            assert!(
                matches!(advance(Some(&prev), &h, now), Err(Error::Fork(_))),
                "{seq} {link:?}"
            );
        }
        // The first anchor of a chain that predates signing starts where the chain is.
        let first = advance(
            None,
            &NewHead {
                sequence: 7,
                ..next
            },
            now,
        )
        .unwrap();
        assert_eq!(first.signed_since, 7);
    }
}
