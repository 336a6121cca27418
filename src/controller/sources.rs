//! Turns a policy's declared sources into concrete units of work (one PVC, one database,
//! the manifests), and says precisely what is wrong when that is impossible. Pure: the
//! PVCs of the namespace are an argument.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::crd::backup::SourceKind;
use crate::crd::backup_policy::{DatabaseSource, Sources, VolumeSource};

/// One thing a run backs up.
#[derive(Clone, Debug, PartialEq)]
pub enum Unit<'a> {
    Volume {
        pvc: String,
        source: &'a VolumeSource,
    },
    Database {
        source: &'a DatabaseSource,
    },
    Manifests,
}

impl Unit<'_> {
    /// The unit's name in Backup status and in snapshot tags.
    pub fn name(&self) -> &str {
        match self {
            Unit::Volume { pvc, .. } => pvc,
            Unit::Database { source } => &source.name,
            Unit::Manifests => "manifests",
        }
    }

    pub fn kind(&self) -> SourceKind {
        match self {
            Unit::Volume { .. } => SourceKind::Volume,
            Unit::Database { .. } => SourceKind::Database,
            Unit::Manifests => SourceKind::Manifests,
        }
    }
}

/// Why sources cannot be resolved: a bounded reason and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
    /// True when only a spec change can fix it; false when the cluster may catch up
    /// (a PVC that does not exist yet).
    pub permanent: bool,
}

fn invalid(reason: &'static str, message: String) -> Problem {
    Problem {
        reason,
        message,
        permanent: true,
    }
}

/// Checks the shape of the sources. The CRD's CEL rules refuse most of this at admission
/// now (no source, pvcName and selector, duplicate names, an empty host); this stays as
/// defence in depth for objects stored before the rules, or a CRD installed without them.
/// Selectors are checked only here.
pub fn validate(sources: &Sources) -> Result<(), Problem> {
    let Sources {
        volumes,
        databases,
        manifests,
    } = sources;
    if volumes.is_empty() && databases.is_empty() && manifests.is_none() {
        return Err(invalid(
            "NoSources",
            "spec.sources names no volumes, databases or manifests".into(),
        ));
    }
    for (i, v) in volumes.iter().enumerate() {
        match (&v.pvc_name, &v.selector) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return Err(invalid(
                    "InvalidSource",
                    format!("spec.sources.volumes[{i}]: set exactly one of pvcName and selector"),
                ));
            }
        }
        if let Some(sel) = &v.selector {
            Selector::try_from(sel.clone()).map_err(|e| {
                invalid(
                    "InvalidSource",
                    format!("spec.sources.volumes[{i}].selector: {e}"),
                )
            })?;
        }
    }
    let mut names = BTreeSet::new();
    for (i, d) in databases.iter().enumerate() {
        if !names.insert(d.name.as_str()) {
            return Err(invalid(
                "InvalidSource",
                format!("spec.sources.databases[{i}]: duplicate name {:?}", d.name),
            ));
        }
        if d.host.trim().is_empty() {
            return Err(invalid(
                "InvalidSource",
                format!("spec.sources.databases[{i}] ({}): host is empty", d.name),
            ));
        }
    }
    if let Some(sel) = manifests.as_ref().and_then(|m| m.selector.clone()) {
        Selector::try_from(sel).map_err(|e| {
            invalid(
                "InvalidSource",
                format!("spec.sources.manifests.selector: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Resolves the sources against the namespace's PVCs. Every volume source must match at
/// least one PVC that is not being deleted; a PVC matched twice is backed up once.
pub fn resolve<'a>(
    sources: &'a Sources,
    pvcs: &[PersistentVolumeClaim],
) -> Result<Vec<Unit<'a>>, Problem> {
    validate(sources)?;
    let live: Vec<&PersistentVolumeClaim> = pvcs
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let mut units = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, v) in sources.volumes.iter().enumerate() {
        let matched: Vec<String> = match (&v.pvc_name, &v.selector) {
            (Some(name), _) => {
                if !live.iter().any(|p| p.name_any() == *name) {
                    return Err(Problem {
                        reason: "PVCNotFound",
                        message: format!(
                            "spec.sources.volumes[{i}]: PersistentVolumeClaim {name:?} does not exist"
                        ),
                        permanent: false,
                    });
                }
                vec![name.clone()]
            }
            (None, Some(sel)) => {
                let selector = Selector::try_from(sel.clone()).expect("validated above");
                let m: Vec<String> = live
                    .iter()
                    .filter(|p| selector.matches(p.labels()))
                    .map(|p| p.name_any())
                    .collect();
                if m.is_empty() {
                    return Err(Problem {
                        reason: "NoVolumesMatched",
                        message: format!(
                            "spec.sources.volumes[{i}].selector ({selector}) matches no PersistentVolumeClaim"
                        ),
                        permanent: false,
                    });
                }
                m
            }
            (None, None) => unreachable!("validated above"),
        };
        for pvc in matched {
            if seen.insert(pvc.clone()) {
                units.push(Unit::Volume { pvc, source: v });
            }
        }
    }
    units.extend(
        sources
            .databases
            .iter()
            .map(|source| Unit::Database { source }),
    );
    if sources.manifests.is_some() {
        units.push(Unit::Manifests);
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::backup_policy::{DatabaseEngine, ManifestSource};
    use crate::crd::common::DatabaseCredentialsRef;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use std::collections::BTreeMap;

    fn pvc(name: &str, labels: &[(&str, &str)]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        }
    }

    fn by_name(n: &str) -> VolumeSource {
        VolumeSource {
            pvc_name: Some(n.into()),
            ..VolumeSource::default()
        }
    }

    fn by_label(k: &str, v: &str) -> VolumeSource {
        VolumeSource {
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(k.into(), v.into())])),
                ..LabelSelector::default()
            }),
            ..VolumeSource::default()
        }
    }

    fn db(name: &str) -> DatabaseSource {
        DatabaseSource {
            name: name.into(),
            engine: DatabaseEngine::Postgres,
            host: "pg".into(),
            credentials: DatabaseCredentialsRef {
                name: "pg".into(),
                ..DatabaseCredentialsRef::default()
            },
            ..DatabaseSource::default()
        }
    }

    #[test]
    fn resolves_names_selectors_databases_and_manifests_once_each() {
        let sources = Sources {
            volumes: vec![by_name("data"), by_label("app", "shop")],
            databases: vec![db("orders")],
            manifests: Some(ManifestSource::default()),
        };
        let pvcs = [
            pvc("data", &[("app", "shop")]),
            pvc("uploads", &[("app", "shop")]),
            pvc("other", &[("app", "blog")]),
        ];
        let units = resolve(&sources, &pvcs).unwrap();
        let names: Vec<_> = units.iter().map(|u| (u.kind(), u.name())).collect();
        assert_eq!(
            names,
            [
                (SourceKind::Volume, "data"),
                (SourceKind::Volume, "uploads"),
                (SourceKind::Database, "orders"),
                (SourceKind::Manifests, "manifests"),
            ]
        );
    }

    #[test]
    fn precise_reasons_for_bad_sources() {
        let cases: Vec<(Sources, &str, bool)> = vec![
            (Sources::default(), "NoSources", true),
            (
                Sources {
                    volumes: vec![VolumeSource::default()],
                    ..Sources::default()
                },
                "InvalidSource",
                true,
            ),
            (
                Sources {
                    databases: vec![db("a"), db("a")],
                    ..Sources::default()
                },
                "InvalidSource",
                true,
            ),
            (
                Sources {
                    volumes: vec![by_name("missing")],
                    ..Sources::default()
                },
                "PVCNotFound",
                false,
            ),
            (
                Sources {
                    volumes: vec![by_label("app", "nothing")],
                    ..Sources::default()
                },
                "NoVolumesMatched",
                false,
            ),
        ];
        let pvcs = [pvc("data", &[("app", "shop")])];
        for (sources, reason, permanent) in cases {
            let p = resolve(&sources, &pvcs).unwrap_err();
            assert_eq!(
                (p.reason, p.permanent),
                (reason, permanent),
                "{}",
                p.message
            );
        }
    }

    #[test]
    fn terminating_pvcs_do_not_count() {
        let mut gone = pvc("data", &[]);
        gone.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let sources = Sources {
            volumes: vec![by_name("data")],
            ..Sources::default()
        };
        assert_eq!(
            resolve(&sources, &[gone]).unwrap_err().reason,
            "PVCNotFound"
        );
    }
}
