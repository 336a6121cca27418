//! The Kubernetes objects that hold the evidence key and the anchors, all in the
//! controller's namespace: their names, labels and contents, built and read here (pure;
//! the controller and the CLI do the API calls).
//!
//! | object | name | data |
//! |---|---|---|
//! | Secret (controller only) | `<release>-evidence-signing-key` | `private-key.pem` |
//! | ConfigMap (readable by all) | `<release>-evidence-public-key` | `public-key.pem` (trusted keys, current first), `key-id` |
//! | ConfigMap per drill | `lifeboat-anchor-<20 hex of SHA-256("ns/drill")>` | `anchor.json` (signed envelope) |
//!
//! Objects are found by the label `lifeboat.dev/evidence` (`signing-key`, `public-key`,
//! `anchor`), so the CLI needs the controller's namespace but not the release name.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;
use sha2::{Digest, Sha256};

use super::Error;
use super::anchor::Anchor;
use super::keys::{PublicKey, SigningKey};
use super::signature::Envelope;
use crate::crd::{annotations, labels};

/// `lifeboat.dev/evidence` value of the signing key's Secret.
pub const SIGNING_KEY: &str = "signing-key";
/// `lifeboat.dev/evidence` value of the public key's ConfigMap.
pub const PUBLIC_KEY: &str = "public-key";
/// `lifeboat.dev/evidence` value of anchors.
pub const ANCHOR: &str = "anchor";
/// Data key of the private key in the Secret.
pub const PRIVATE_KEY_PEM: &str = "private-key.pem";
/// Data key of the trusted public keys in the ConfigMap.
pub const PUBLIC_KEY_PEM: &str = "public-key.pem";
/// Data key of the anchor envelope.
pub const ANCHOR_JSON: &str = "anchor.json";

/// Label selector of one kind of evidence object.
pub fn selector(kind: &str) -> String {
    format!("{}={kind}", labels::EVIDENCE)
}

fn meta(name: String, namespace: &str, kind: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([
            (labels::NAME.to_string(), "lifeboat".to_string()),
            (labels::COMPONENT.to_string(), "evidence".to_string()),
            (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
            (labels::EVIDENCE.to_string(), kind.to_string()),
        ])),
        ..ObjectMeta::default()
    }
}

/// Name of the Secret holding an installation's signing key.
pub fn signing_key_name(release: &str) -> String {
    format!("{release}-evidence-signing-key")
}

/// Name of the ConfigMap publishing an installation's public keys.
pub fn public_key_name(release: &str) -> String {
    format!("{release}-evidence-public-key")
}

/// The Secret holding a new signing key.
pub fn signing_key_secret(release: &str, namespace: &str, key: &SigningKey) -> Secret {
    Secret {
        metadata: meta(signing_key_name(release), namespace, SIGNING_KEY),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            PRIVATE_KEY_PEM.to_string(),
            ByteString(key.to_pem().into_bytes()),
        )])),
        immutable: Some(true),
        ..Secret::default()
    }
}

/// The signing key in a Secret.
pub fn signing_key_of(secret: &Secret) -> Result<SigningKey, Error> {
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PRIVATE_KEY_PEM))
        .ok_or_else(|| Error::Key(format!("the Secret has no {PRIVATE_KEY_PEM}")))?;
    SigningKey::from_pem(&String::from_utf8_lossy(&pem.0))
}

/// The ConfigMap publishing the trusted keys; `keys[0]` signs now, the others signed
/// before a rotation and still verify older reports.
pub fn public_key_config_map(release: &str, namespace: &str, keys: &[PublicKey]) -> ConfigMap {
    ConfigMap {
        metadata: meta(public_key_name(release), namespace, PUBLIC_KEY),
        data: Some(BTreeMap::from([
            (
                PUBLIC_KEY_PEM.to_string(),
                keys.iter().map(PublicKey::to_pem).collect::<String>(),
            ),
            (
                "key-id".to_string(),
                keys.first().map(|k| k.id().to_string()).unwrap_or_default(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

/// The trusted keys a ConfigMap publishes.
pub fn public_keys_of(cm: &ConfigMap) -> Result<Vec<PublicKey>, Error> {
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get(PUBLIC_KEY_PEM))
        .ok_or_else(|| Error::Key(format!("the ConfigMap has no {PUBLIC_KEY_PEM}")))?;
    PublicKey::all_from_pem(pem)
}

/// The name of a drill's anchor: a digest, because `namespace/drill` may be longer than a
/// name and `-` cannot separate names that contain `-`.
pub fn anchor_name(namespace: &str, drill: &str) -> String {
    let h = hex::encode(Sha256::digest(format!("{namespace}/{drill}").as_bytes()));
    format!("lifeboat-anchor-{}", &h[..20])
}

/// The ConfigMap holding a drill's signed anchor.
pub fn anchor_config_map(controller_namespace: &str, anchor: &Anchor, env: &Envelope) -> ConfigMap {
    let mut m = meta(
        anchor_name(&anchor.namespace, &anchor.drill),
        controller_namespace,
        ANCHOR,
    );
    let l = m.labels.get_or_insert_default();
    l.insert(labels::DRILL_NAMESPACE.into(), anchor.namespace.clone());
    l.insert(
        labels::DRILL.into(),
        crate::jobs::label_value(&anchor.drill),
    );
    m.annotations = Some(BTreeMap::from([(
        annotations::DRILL_REF.to_string(),
        format!("{}/{}", anchor.namespace, anchor.drill),
    )]));
    ConfigMap {
        metadata: m,
        data: Some(BTreeMap::from([(
            ANCHOR_JSON.to_string(),
            String::from_utf8(env.to_bytes()).expect("JSON is UTF-8"),
        )])),
        ..ConfigMap::default()
    }
}

/// The envelope in an anchor ConfigMap (not yet verified: see `Anchor::open`).
pub fn anchor_envelope_of(cm: &ConfigMap) -> Result<Envelope, Error> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(ANCHOR_JSON))
        .ok_or_else(|| Error::Anchor(format!("the ConfigMap has no {ANCHOR_JSON}")))?;
    Envelope::from_bytes(text.as_bytes()).map_err(|e| Error::Anchor(e.to_string()))
}

/// `namespace/drill` an anchor ConfigMap names (from its annotation).
pub fn anchor_drill_of(cm: &ConfigMap) -> Option<(String, String)> {
    let r = cm
        .metadata
        .annotations
        .as_ref()?
        .get(annotations::DRILL_REF)?;
    let (ns, d) = r.split_once('/')?;
    Some((ns.to_string(), d.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_and_carry_their_selector_labels() {
        let key = SigningKey::generate().unwrap();
        let s = signing_key_secret("lifeboat", "lifeboat-system", &key);
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("lifeboat-evidence-signing-key")
        );
        assert_eq!(signing_key_of(&s).unwrap().public(), key.public());
        let old = SigningKey::generate().unwrap();
        let cm = public_key_config_map(
            "lifeboat",
            "lifeboat-system",
            &[key.public().clone(), old.public().clone()],
        );
        assert_eq!(
            public_keys_of(&cm).unwrap(),
            vec![key.public().clone(), old.public().clone()]
        );
        assert_eq!(cm.data.as_ref().unwrap()["key-id"], key.public().id());
        assert_eq!(
            cm.metadata.labels.as_ref().unwrap()[labels::EVIDENCE],
            PUBLIC_KEY
        );

        let a = crate::evidence::anchor::tests::anchor();
        let env = a.sign(&key).unwrap();
        let cm = anchor_config_map("lifeboat-system", &a, &env);
        assert_eq!(cm.metadata.name, Some(anchor_name("shop", "orders")));
        assert_eq!(anchor_envelope_of(&cm).unwrap(), env);
        assert_eq!(
            anchor_drill_of(&cm),
            Some(("shop".to_string(), "orders".to_string()))
        );
        let n = anchor_name("shop", "orders");
        assert!(n.len() <= 63 && n != anchor_name("shop-orders", ""), "{n}");
        assert_ne!(anchor_name("a-b", "c"), anchor_name("a", "b-c"));
    }
}
