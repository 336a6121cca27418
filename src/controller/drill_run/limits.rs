//! Container defaults for a sandbox with a ResourceQuota: a LimitRange derived from the
//! quota, so that pods without resources (ephemeral servers, movers, command checks) are
//! admitted instead of refused with "must specify cpu,memory".
//!
//! A quota on `cpu`/`memory` (or `requests.*`/`limits.*`) makes the API server refuse any
//! pod that does not set those resources. Kubernetes' own answer is a LimitRange with
//! defaults; the drill creates one next to its quota. Each container gets, by default, a
//! request of 1/16 and a limit of 1/8 of the smallest quota on that resource: room for
//! the handful of pods a drill runs at once (servers, restore movers, checks), while an
//! explicit `resources` on a server or check still wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, LimitRangeSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Name of the LimitRange in a sandbox.
pub const LIMIT_RANGE_NAME: &str = "lifeboat-sandbox-defaults";

/// Share of the quota a container requests by default.
const REQUEST_SHARE: f64 = 1.0 / 16.0;
/// Share of the quota a container may use by default.
const LIMIT_SHARE: f64 = 1.0 / 8.0;

/// Parses a Kubernetes quantity (`500m`, `2`, `1.5Gi`, `512Mi`, `1e3`, `2k`) into its
/// value in base units (cores, bytes). `None` for anything else.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let base: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        _ => return None,
    };
    (base.is_finite() && base >= 0.0).then_some(base * factor)
}

fn quantity(resource: &str, value: f64) -> Quantity {
    if resource == "cpu" {
        // At least one millicore: a zero request would mean "unset".
        Quantity(format!("{}m", ((value * 1000.0).floor() as u64).max(1)))
    } else {
        Quantity(format!(
            "{}Mi",
            ((value / (1024.0 * 1024.0)).floor() as u64).max(1)
        ))
    }
}

/// The LimitRange for a sandbox quota's `hard` map, or `None` when the quota constrains
/// neither cpu nor memory.
pub fn for_quota(hard: &BTreeMap<String, Quantity>, meta: ObjectMeta) -> Option<LimitRange> {
    let mut smallest: BTreeMap<&str, f64> = BTreeMap::new();
    for (key, q) in hard {
        let resource = key
            .strip_prefix("requests.")
            .or_else(|| key.strip_prefix("limits."))
            .unwrap_or(key);
        if resource != "cpu" && resource != "memory" {
            continue;
        }
        let Some(v) = parse(&q.0) else { continue };
        smallest
            .entry(resource)
            .and_modify(|s| *s = s.min(v))
            .or_insert(v);
    }
    if smallest.is_empty() {
        return None;
    }
    let share = |f: f64| -> BTreeMap<String, Quantity> {
        smallest
            .iter()
            .map(|(r, v)| (r.to_string(), quantity(r, v * f)))
            .collect()
    };
    Some(LimitRange {
        metadata: ObjectMeta {
            name: Some(LIMIT_RANGE_NAME.into()),
            ..meta
        },
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(share(LIMIT_SHARE)),
                default_request: Some(share(REQUEST_SHARE)),
                ..LimitRangeItem::default()
            }],
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn quantities_parse_in_base_units() {
        for (s, want) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("8Gi", 8.0 * 1024.0 * 1024.0 * 1024.0),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("2k", 2000.0),
            ("1e3", 1000.0),
            ("3G", 3e9),
        ] {
            assert_eq!(parse(s), Some(want), "{s}");
        }
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("1Xi"), None);
        assert_eq!(parse("-1"), None);
    }

    #[test]
    fn defaults_are_shares_of_the_smallest_quota_per_resource() {
        let hard = BTreeMap::from([
            ("cpu".to_string(), q("4")),
            ("limits.cpu".to_string(), q("8")),
            ("memory".to_string(), q("8Gi")),
            ("pods".to_string(), q("20")),
        ]);
        let lr = for_quota(&hard, ObjectMeta::default()).unwrap();
        let item = &lr.spec.unwrap().limits[0];
        assert_eq!(item.type_, "Container");
        let d = item.default.as_ref().unwrap();
        let r = item.default_request.as_ref().unwrap();
        assert_eq!(d["cpu"], q("500m"));
        assert_eq!(r["cpu"], q("250m"));
        assert_eq!(d["memory"], q("1024Mi"));
        assert_eq!(r["memory"], q("512Mi"));
        assert!(!d.contains_key("pods"));
        assert_eq!(lr.metadata.name.as_deref(), Some(LIMIT_RANGE_NAME));
    }

    #[test]
    fn no_cpu_or_memory_in_the_quota_needs_no_defaults() {
        let hard = BTreeMap::from([("pods".to_string(), q("20"))]);
        assert!(for_quota(&hard, ObjectMeta::default()).is_none());
        let tiny = BTreeMap::from([("cpu".to_string(), q("1m"))]);
        let lr = for_quota(&tiny, ObjectMeta::default()).unwrap();
        assert_eq!(
            lr.spec.unwrap().limits[0].default.as_ref().unwrap()["cpu"],
            q("1m")
        );
    }
}
