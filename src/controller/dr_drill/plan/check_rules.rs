//! The rules one check of a drill must follow against the drill and its policy (the
//! `InvalidCheck` reasons of `validate`).

use std::collections::BTreeSet;

use super::{is_dns_label_part, parse_opt};
use crate::crd::backup_policy::BackupPolicy;
use crate::crd::dr_drill::Check;
use kube::ResourceExt;

use crate::drill::{checks, expect};

/// Checks one check against the drill and the policy.
pub(super) fn validate_check(
    i: usize,
    c: &Check,
    restored_dbs: &BTreeSet<String>,
    volumes_restored: bool,
    policy: &BackupPolicy,
) -> Result<(), String> {
    let at = format!("spec.checks[{i}] ({})", c.name);
    let Check {
        name,
        sql,
        files,
        command,
        http,
        freshness,
        timeout,
    } = c;
    let ok_name = !name.is_empty()
        && name.len() <= 40
        && is_dns_label_part(name)
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok_name {
        return Err(format!(
            "spec.checks[{i}]: name {name:?} must be lowercase letters, digits and '-', at most 40 characters"
        ));
    }
    let kinds = [
        sql.is_some(),
        files.is_some(),
        command.is_some(),
        http.is_some(),
        freshness.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if kinds != 1 {
        return Err(format!(
            "{at}: set exactly one of sql, files, command, http and freshness ({kinds} set)"
        ));
    }
    parse_opt(&format!("{at}.timeout"), timeout.as_deref())?;
    let need_db = |db: &str| -> Result<(), String> {
        if !policy.spec.sources.databases.iter().any(|d| d.name == db) {
            return Err(format!(
                "{at}: database {db:?} is not a database source of BackupPolicy {:?}",
                policy.name_any()
            ));
        }
        if !restored_dbs.contains(db) {
            return Err(format!(
                "{at}: database {db:?} is not restored by this drill (spec.restore.databases)"
            ));
        }
        Ok(())
    };
    let need_volume = |v: &str| -> Result<(), String> {
        if !volumes_restored {
            return Err(format!(
                "{at}: volume {v:?} is not restored (spec.restore.volumes is false)"
            ));
        }
        let vols = &policy.spec.sources.volumes;
        let named = vols.iter().any(|s| s.pvc_name.as_deref() == Some(v));
        let by_selector = vols.iter().any(|s| s.selector.is_some());
        if named || by_selector {
            Ok(())
        } else {
            Err(format!(
                "{at}: volume {v:?} is not a volume source of BackupPolicy {:?}",
                policy.name_any()
            ))
        }
    };
    if let Some(s) = sql {
        need_db(&s.database)?;
        match (&s.query, s.matches_backup) {
            (Some(_), true) => {
                return Err(format!(
                    "{at}: set either query (with expect) or matchesBackup, not both"
                ));
            }
            (None, false) => {
                return Err(format!("{at}: set query (with expect) or matchesBackup"));
            }
            (Some(q), false) => {
                if q.trim().is_empty() {
                    return Err(format!("{at}: the query is empty"));
                }
                let e = s
                    .expect
                    .as_ref()
                    .ok_or_else(|| format!("{at}: a query needs an expectation (expect)"))?;
                expect::validate(e).map_err(|m| format!("{at}.expect: {m}"))?;
            }
            (None, true) => {
                if s.expect.is_some() {
                    return Err(format!("{at}: expect has no meaning with matchesBackup"));
                }
            }
        }
    }
    if let Some(f) = freshness {
        need_db(&f.database)?;
        if f.query.trim().is_empty() {
            return Err(format!("{at}: the freshness query is empty"));
        }
    }
    if let Some(f) = files {
        need_volume(&f.volume)?;
        if f.exist.is_empty() && f.checksums.is_empty() {
            return Err(format!("{at}: list paths under exist or checksums"));
        }
        for p in f.exist.iter().chain(f.checksums.iter().map(|c| &c.path)) {
            checks::check_relative(p).map_err(|m| format!("{at}: {m}"))?;
        }
        for c in &f.checksums {
            if let Some(h) = &c.sha256
                && !(h.len() == 64 && h.chars().all(|x| x.is_ascii_hexdigit()))
            {
                return Err(format!(
                    "{at}: sha256 of {} must be 64 hexadecimal digits",
                    c.path
                ));
            }
        }
    }
    if let Some(cmd) = command {
        if cmd.image.trim().is_empty() {
            return Err(format!("{at}: command.image is empty"));
        }
        for v in &cmd.volumes {
            need_volume(v)?;
        }
    }
    if let Some(h) = http {
        checks::parse_http_url(&h.url).map_err(|m| format!("{at}: {m}"))?;
        if let Some(s) = h.expect_status
            && !(100..=599).contains(&s)
        {
            return Err(format!("{at}: expectStatus {s} is not an HTTP status"));
        }
    }
    Ok(())
}
