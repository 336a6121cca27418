//! Verifying a drill's chain of evidence reports. Pure: the caller reads the stored
//! objects and what it trusts ([`Trust`]: the installation's public keys, the drill's
//! signed anchor, the DrillRun records, whether the DRDrill exists); this module says
//! whether they agree and, if not, exactly where and how ([`ProblemKind`]).
//!
//! What is checked, report by report in key order (keys start with the run's start time):
//! - it parses as a report of this drill, and its key names its own run and start time;
//! - its signature file (`<key>.sig`) verifies with a trusted key and says this report's
//!   digest, run, UID, sequence number and link (required for every report from the
//!   anchor's `signedSince` on, whenever the installation has a key);
//! - `previousSha256` is the digest of the report before it, and its sequence number is
//!   that report's plus one (a gap is a removed report, a step back a reordering);
//! - its pages exist and hash to what it says;
//! - it was generated after its run started, and after its DrillRun was created; its
//!   UID, start and digest are those its DrillRun records (when the run still exists);
//!
//! and for the chain: the newest report is the head the signed anchor records (a
//! consistent rewrite of every report, a removed newest report, a report appended after
//! the head all fail here), and a DRDrill that no longer exists while its anchor does is
//! named, never passed over.
//!
//! The DrillRun records and the DRDrill's `lastReport` are tenant-writable and only
//! corroborate; signatures and the anchor are what a tenant cannot forge.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::report::{REPORT_FORMAT, Report, sha256};
use crate::evidence::anchor::Anchor;
use crate::evidence::keys::PublicKey;
use crate::evidence::signature::{Envelope, ReportStatement, SignatureProblem, signature_key};

/// A report object as read from the store.
#[derive(Clone, Debug)]
pub struct Stored {
    /// Object key relative to the repository root.
    pub key: String,
    pub bytes: Vec<u8>,
}

/// A DrillRun as the cluster records it.
#[derive(Clone, Debug, Default)]
pub struct RunRecord {
    pub uid: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// `status.report.sha256`.
    pub report_sha256: Option<String>,
}

/// Whether and what anchor was looked up.
#[derive(Clone, Debug, Default)]
pub enum AnchorInput {
    /// Not looked up (no access to the controller's namespace).
    #[default]
    NotConsulted,
    /// Looked up: there is none.
    Missing,
    /// The stored envelope (verified here).
    Present(Envelope),
}

/// What the chain is checked against.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// The installation's public keys. Empty when the installation has no evidence key
    /// (then signatures and the anchor cannot be checked, and the verdict says so).
    pub keys: Vec<PublicKey>,
    pub anchor: AnchorInput,
    /// DrillRuns by name; `None` when the cluster was not consulted.
    pub runs: Option<BTreeMap<String, RunRecord>>,
    /// Whether the DRDrill exists; `None` when unknown.
    pub drill_exists: Option<bool>,
    /// The DRDrill's `status.lastReport.sha256`, used when no anchor can be.
    pub drill_head: Option<String>,
    /// An export's window: reports that started before it may be absent (the bundle
    /// holds the last one before the window, so the first link still verifies).
    pub window_since: Option<Timestamp>,
}

/// What is wrong, in bounded categories (each one attack or accident).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// Not a report, or of an unknown format.
    Unreadable,
    /// A report of another drill.
    ForeignReport,
    /// Its key does not name its run and start time (renamed, or copied to another key).
    Renamed,
    /// No signature where the installation signs every report.
    Unsigned,
    /// Signed by a key that is not the installation's.
    UntrustedKey,
    /// The signature does not verify.
    BadSignature,
    /// The signature is valid but for other content: the report was edited after signing.
    SignatureMismatch,
    /// `previousSha256` is not the previous report's digest.
    BrokenLink,
    /// The first report links to reports that are gone.
    EarlierRemoved,
    /// Sequence numbers skip: reports between were removed.
    SequenceGap,
    /// Sequence numbers go back: reports were reordered or replayed.
    Reordered,
    PageMissing,
    PageModified,
    /// The report disagrees with its DrillRun's record (digest, start).
    RunMismatch,
    /// The report existed before its run did, or belongs to another run of that name.
    PlantedBeforeRun,
    /// The installation signs, but no anchor exists for the drill.
    AnchorMissing,
    /// The anchor does not verify.
    AnchorInvalid,
    /// The newest report is not the anchored head.
    HeadMismatch,
    /// The DRDrill no longer exists.
    DrillDeleted,
    /// Nothing to verify.
    NoReports,
}

/// One problem: its kind and a sentence naming what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

fn problem(kind: ProblemKind, message: String) -> Problem {
    Problem { kind, message }
}

/// The verdict on one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub key: String,
    pub run: Option<String>,
    pub sequence: Option<u64>,
    pub sha256: String,
    /// The key ID of a signature that verified.
    pub signed_by: Option<String>,
    pub problems: Vec<Problem>,
}

/// The verdict on the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub links: Vec<Link>,
    /// Problems of the chain as a whole (head, anchor, drill).
    pub problems: Vec<Problem>,
    /// What was not checked and why (no key installed, no anchor consulted, ...).
    pub notes: Vec<String>,
    /// The anchor, when it verified.
    pub anchor: Option<Anchor>,
}

impl Verdict {
    /// True when no report and no link has a problem.
    pub fn intact(&self) -> bool {
        self.problems.is_empty() && self.links.iter().all(|l| l.problems.is_empty())
    }

    /// Every problem, the chain's last.
    pub fn all_problems(&self) -> impl Iterator<Item = &Problem> {
        self.links
            .iter()
            .flat_map(|l| l.problems.iter())
            .chain(&self.problems)
    }

    /// Whether some problem is of `kind`.
    pub fn has(&self, kind: ProblemKind) -> bool {
        self.all_problems().any(|p| p.kind == kind)
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(16)]
}

/// The start time and run a report key names (`<YYYYMMDDTHHMMSSZ>-<run>.json`).
fn key_parts(key: &str) -> Option<(&str, &str)> {
    let file = key.rsplit('/').next()?.strip_suffix(".json")?;
    file.split_once('-')
}

/// Verifies the reports of drill `namespace/drill`. `reports` may come in any order;
/// `object(key)` reads a page or signature object (`None` when it does not exist).
pub fn verify(
    namespace: &str,
    drill: &str,
    mut reports: Vec<Stored>,
    object: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    trust: &Trust,
) -> Verdict {
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    let mut notes = Vec::new();
    let mut problems = Vec::new();

    // The anchor first: it says from which report on signatures are required.
    let mut anchor = None;
    match (&trust.anchor, trust.keys.is_empty()) {
        (AnchorInput::Present(env), false) => {
            match Anchor::open(env, &trust.keys, namespace, drill) {
                Ok(a) => anchor = Some(a),
                Err(e) => problems.push(problem(
                    ProblemKind::AnchorInvalid,
                    format!("the drill's anchor does not verify: {e}"),
                )),
            }
        }
        (AnchorInput::Present(_), true) => notes.push(
            "the anchor was not checked: no public key of the installation to check it with".into(),
        ),
        (AnchorInput::Missing, false) => problems.push(problem(
            ProblemKind::AnchorMissing,
            "the installation signs evidence, but no anchor records this drill's chain: the newest reports cannot be checked against it".into(),
        )),
        (AnchorInput::Missing, true) => {
            notes.push("no anchor and no public key of the installation: the anchor was not checked".into())
        }
        (AnchorInput::NotConsulted, false) => notes.push(
            "no anchor was consulted: removing the newest reports, or rewriting the whole chain with their signatures removed, is not detected without it".into(),
        ),
        (AnchorInput::NotConsulted, true) => {}
    }
    if trust.keys.is_empty() {
        notes.push(
            "signatures were not checked: no public key of the installation was available".into(),
        );
    }
    let signed_since = anchor.as_ref().map(|a| a.signed_since);

    let mut links: Vec<Link> = Vec::new();
    let mut prev: Option<(String, Option<u64>)> = None;
    for (i, s) in reports.iter().enumerate() {
        let sha = sha256(&s.bytes);
        let mut p = Vec::new();
        let parsed: Option<Report> = match serde_json::from_slice::<Report>(&s.bytes) {
            Ok(r) => Some(r),
            Err(e) => {
                p.push(problem(
                    ProblemKind::Unreadable,
                    format!("not a readable drill report: {e}"),
                ));
                None
            }
        };
        let mut signed_by = None;
        if let Some(r) = &parsed {
            check_identity(r, &s.key, namespace, drill, &mut p);
            signed_by = check_signature(r, s, &sha, trust, signed_since, object, &mut p);
            check_link(r, i, prev.as_ref(), trust, &mut notes, &mut p);
            check_pages(r, object, &mut p);
            check_run(r, &sha, trust, &mut p);
        }
        links.push(Link {
            key: s.key.clone(),
            run: parsed.as_ref().map(|r| r.run.clone()),
            sequence: parsed.as_ref().and_then(|r| r.sequence),
            sha256: sha.clone(),
            signed_by,
            problems: p,
        });
        prev = Some((sha, parsed.and_then(|r| r.sequence)));
    }

    match &anchor {
        Some(a) => check_head(a, &links, &mut problems),
        None => check_drill_head(trust.drill_head.as_deref(), &links, &mut problems),
    }
    if trust.drill_exists == Some(false) {
        let peeked = match &trust.anchor {
            AnchorInput::Present(env) => anchor.clone().or_else(|| Anchor::peek(env)),
            _ => None,
        };
        problems.push(problem(
            ProblemKind::DrillDeleted,
            match peeked {
                Some(a) => format!(
                    "DRDrill {namespace}/{drill} does not exist, but the installation's anchor records {} report(s), the last of run {}{}: the drill was deleted; its reports are checked against the anchor",
                    a.sequence,
                    a.last_run,
                    a.last_run_time
                        .map(|t| format!(" started {t}"))
                        .unwrap_or_default()
                ),
                None => format!(
                    "DRDrill {namespace}/{drill} does not exist: its reports are all that is left"
                ),
            },
        ));
    }
    Verdict {
        links,
        problems,
        notes,
        anchor,
    }
}

fn check_identity(r: &Report, key: &str, namespace: &str, drill: &str, p: &mut Vec<Problem>) {
    if r.format != REPORT_FORMAT {
        p.push(problem(
            ProblemKind::Unreadable,
            format!("unknown format {:?}", r.format),
        ));
    }
    if r.namespace != namespace || r.drill != drill {
        p.push(problem(
            ProblemKind::ForeignReport,
            format!(
                "belongs to drill {}/{}, not {namespace}/{drill}",
                r.namespace, r.drill
            ),
        ));
    }
    let file = key.rsplit('/').next().unwrap_or_default();
    match key_parts(key) {
        Some((_, run)) if run != r.run => p.push(problem(
            ProblemKind::Renamed,
            format!("its run {:?} does not match its name {file:?}", r.run),
        )),
        Some((stamp, _)) => {
            if let Some(t) = &r.start_time
                && t.0.strftime("%Y%m%dT%H%M%SZ").to_string() != stamp
            {
                p.push(problem(
                    ProblemKind::Renamed,
                    format!(
                        "its name {file:?} says the run started at {stamp}, the report says {}: it was moved in the chain",
                        t.0
                    ),
                ));
            }
        }
        None => p.push(problem(
            ProblemKind::Renamed,
            format!("its name {file:?} is not <start>-<run>.json"),
        )),
    }
    if let Some(t) = &r.start_time
        && let Ok(g) = r.generated_at.parse::<Timestamp>()
        && g < t.0
    {
        p.push(problem(
            ProblemKind::PlantedBeforeRun,
            format!(
                "generated at {g}, before its run started at {}: it was written before the run",
                t.0
            ),
        ));
    }
}

/// Checks the signature; returns the key ID when it verified.
fn check_signature(
    r: &Report,
    s: &Stored,
    sha: &str,
    trust: &Trust,
    signed_since: Option<u64>,
    object: &mut dyn FnMut(&str) -> Option<Vec<u8>>,
    p: &mut Vec<Problem>,
) -> Option<String> {
    let required = !trust.keys.is_empty()
        && match (signed_since, r.sequence) {
            (Some(since), Some(q)) => q >= since,
            // Unnumbered reports predate signing; they are covered by the links.
            (Some(_), None) => false,
            (None, _) => true,
        };
    let sig_key = signature_key(&s.key);
    let Some(bytes) = object(&sig_key) else {
        if required {
            p.push(problem(
                ProblemKind::Unsigned,
                format!(
                    "not signed (no {}): the installation signs every report{}",
                    sig_key.rsplit('/').next().unwrap_or(&sig_key),
                    signed_since
                        .map(|n| format!(" from #{n} on"))
                        .unwrap_or_default()
                ),
            ));
        }
        return None;
    };
    if trust.keys.is_empty() {
        return None;
    }
    let env = match Envelope::from_bytes(&bytes) {
        Ok(e) => e,
        Err(e) => {
            p.push(problem(ProblemKind::BadSignature, e.to_string()));
            return None;
        }
    };
    let payload = match env.open(&trust.keys) {
        Ok(pl) => pl,
        Err(e) => {
            let kind = match e {
                SignatureProblem::UntrustedKey(..) => ProblemKind::UntrustedKey,
                _ => ProblemKind::BadSignature,
            };
            p.push(problem(kind, e.to_string()));
            return None;
        }
    };
    let st = match ReportStatement::parse(payload) {
        Ok(st) => st,
        Err(e) => {
            p.push(problem(ProblemKind::BadSignature, e.to_string()));
            return None;
        }
    };
    let mut diffs = Vec::new();
    if st.report_sha256 != sha {
        diffs.push(format!(
            "a report hashing to {}…, this one hashes to {}…: it was edited after signing",
            short(&st.report_sha256),
            short(sha)
        ));
    }
    if (st.namespace.as_str(), st.drill.as_str(), st.run.as_str())
        != (r.namespace.as_str(), r.drill.as_str(), r.run.as_str())
    {
        diffs.push(format!(
            "run {}/{}/{}, this report is of {}/{}/{}",
            st.namespace, st.drill, st.run, r.namespace, r.drill, r.run
        ));
    }
    if st.run_uid != r.run_uid {
        diffs.push(format!(
            "run UID {:?}, the report says {:?}",
            st.run_uid, r.run_uid
        ));
    }
    if st.sequence != r.sequence {
        diffs.push(format!(
            "sequence {:?}, the report says {:?}",
            st.sequence, r.sequence
        ));
    }
    if st.previous_sha256 != r.previous_sha256 {
        diffs.push("another previous report than the one this report links to".into());
    }
    if st.start_time != r.start_time.as_ref().map(|t| t.0) {
        diffs.push(format!(
            "a run started at {:?}, the report says {:?}",
            st.start_time,
            r.start_time.as_ref().map(|t| t.0)
        ));
    }
    if let Some(g) = &r.signer
        && g.key_id != env.key_id
    {
        diffs.push(format!(
            "key {}, the report names signer {}",
            env.key_id, g.key_id
        ));
    }
    if diffs.is_empty() {
        Some(env.key_id)
    } else {
        p.push(problem(
            ProblemKind::SignatureMismatch,
            format!("the signature is for {}", diffs.join("; ")),
        ));
        None
    }
}

fn check_link(
    r: &Report,
    index: usize,
    prev: Option<&(String, Option<u64>)>,
    trust: &Trust,
    notes: &mut Vec<String>,
    p: &mut Vec<Problem>,
) {
    match (prev, &r.previous_sha256) {
        (None, None) => {}
        (None, Some(h)) => {
            let before_window = match (trust.window_since, &r.start_time) {
                (Some(since), Some(t)) => t.0 < since,
                _ => false,
            };
            if before_window && index == 0 {
                notes.push(format!(
                    "the chain continues before this bundle's window: {} report(s) before #{} are not included",
                    r.sequence.map_or(0, |q| q.saturating_sub(1)),
                    r.sequence.unwrap_or(0)
                ));
            } else {
                p.push(problem(
                    ProblemKind::EarlierRemoved,
                    format!(
                        "links to a previous report ({}…) that is not in the store: reports before it were removed",
                        short(h)
                    ),
                ));
            }
        }
        (Some((want, _)), None) => p.push(problem(
            ProblemKind::BrokenLink,
            format!(
                "broken link: it names no previous report, but the previous one hashes to {}…",
                short(want)
            ),
        )),
        (Some((want, _)), Some(h)) if h != want => p.push(problem(
            ProblemKind::BrokenLink,
            format!(
                "broken link: previousSha256 is {}…, but the previous report hashes to {}…",
                short(h),
                short(want)
            ),
        )),
        _ => {}
    }
    if let (Some((_, Some(before))), Some(q)) = (prev, r.sequence) {
        if q <= *before {
            p.push(problem(
                ProblemKind::Reordered,
                format!(
                    "report #{q} comes after #{before}: the reports were reordered or replayed"
                ),
            ));
        } else if q > before + 1 {
            p.push(problem(
                ProblemKind::SequenceGap,
                format!(
                    "report #{q} follows #{before}: {} report(s) between them were removed",
                    q - before - 1
                ),
            ));
        }
    }
}

fn check_pages(r: &Report, object: &mut dyn FnMut(&str) -> Option<Vec<u8>>, p: &mut Vec<Problem>) {
    if r.page.is_none() {
        p.push(problem(ProblemKind::PageMissing, "names no page".into()));
    }
    for pr in [&r.page, &r.html].into_iter().flatten() {
        match object(&pr.key) {
            None => p.push(problem(
                ProblemKind::PageMissing,
                format!("its page {} is missing", pr.key),
            )),
            Some(bytes) if sha256(&bytes) != pr.sha256 => p.push(problem(
                ProblemKind::PageModified,
                format!(
                    "its page {} was modified (hashes to {}…, the report says {}…)",
                    pr.key,
                    short(&sha256(&bytes)),
                    short(&pr.sha256)
                ),
            )),
            Some(_) => {}
        }
    }
}

fn check_run(r: &Report, sha: &str, trust: &Trust, p: &mut Vec<Problem>) {
    let Some(rec) = trust.runs.as_ref().and_then(|m| m.get(&r.run)) else {
        return;
    };
    if rec.uid.is_some() && rec.uid != r.run_uid {
        p.push(problem(
            ProblemKind::PlantedBeforeRun,
            format!(
                "it is of run UID {}, DrillRun {} has UID {}: written for another run of that name, or before the run existed",
                r.run_uid.as_deref().unwrap_or("(none)"),
                r.run,
                rec.uid.as_deref().unwrap_or("")
            ),
        ));
    }
    if let (Some(c), Ok(g)) = (rec.created, r.generated_at.parse::<Timestamp>())
        && g < c
    {
        p.push(problem(
            ProblemKind::PlantedBeforeRun,
            format!(
                "generated at {g}, before DrillRun {} was created at {c}",
                r.run
            ),
        ));
    }
    if let (Some(t), Some(rt)) = (rec.start_time, &r.start_time)
        && t != rt.0
    {
        p.push(problem(
            ProblemKind::RunMismatch,
            format!(
                "says its run started at {}, DrillRun {} says {t}",
                rt.0, r.run
            ),
        ));
    }
    if let Some(recorded) = &rec.report_sha256
        && recorded != sha
    {
        p.push(problem(
            ProblemKind::RunMismatch,
            format!(
                "modified: it hashes to {}…, but DrillRun {} recorded {}…",
                short(sha),
                r.run,
                short(recorded)
            ),
        ));
    }
}

fn check_head(a: &Anchor, links: &[Link], problems: &mut Vec<Problem>) {
    let head = || {
        format!(
            "#{} of run {} ({}…)",
            a.sequence,
            a.last_run,
            short(&a.head_sha256)
        )
    };
    let Some(last) = links.last() else {
        problems.push(problem(
            ProblemKind::NoReports,
            format!(
                "no reports in the store, but the installation's anchor records {} report(s) up to {}",
                a.sequence,
                head()
            ),
        ));
        return;
    };
    if last.sha256 == a.head_sha256 {
        return;
    }
    let message = match links.iter().position(|l| l.sha256 == a.head_sha256) {
        Some(i) => format!(
            "the anchored head is {} but {} report(s) follow it in the store: added after the last sealed run (planted?)",
            head(),
            links.len() - 1 - i
        ),
        None => match last.sequence {
            Some(q) if q < a.sequence => format!(
                "the anchor records {} as the newest report, the store ends at #{q}: the newest reports were removed",
                head()
            ),
            Some(q) if q > a.sequence => format!(
                "the store's newest report is #{q}, after the anchored head {}, which is not in the store: the chain was rewritten",
                head()
            ),
            _ => format!(
                "the store's newest report {} is not the anchored head {}: the chain was rewritten",
                last.key.rsplit('/').next().unwrap_or(&last.key),
                head()
            ),
        },
    };
    problems.push(problem(ProblemKind::HeadMismatch, message));
}

/// Without an anchor: the DRDrill's record of its last report (tenant-writable).
fn check_drill_head(head: Option<&str>, links: &[Link], problems: &mut Vec<Problem>) {
    match (head, links.last()) {
        (Some(head), None) => problems.push(problem(
            ProblemKind::NoReports,
            format!(
                "no reports in the store, but the DRDrill records a last report {}…",
                short(head)
            ),
        )),
        (Some(head), Some(last)) if head != last.sha256 => {
            let at = links.iter().position(|l| l.sha256 == head);
            problems.push(problem(
                ProblemKind::HeadMismatch,
                match at {
                    Some(i) => format!(
                        "the DRDrill's last report ({}…) is {} but {} report(s) follow it",
                        short(head),
                        links[i].key,
                        links.len() - 1 - i
                    ),
                    None => format!(
                        "the DRDrill's last report ({}…) is not in the store: the newest report was modified or removed",
                        short(head)
                    ),
                },
            ));
        }
        (None, None) => problems.push(problem(
            ProblemKind::NoReports,
            "no reports in the store".into(),
        )),
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests;
