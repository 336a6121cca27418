//! Evidence an auditor can trust without trusting the tenant's bucket: the installation's
//! Ed25519 key (`keys`), signed statements and the `<report>.json.sig` files
//! (`signature`), the signed head of each drill's chain kept in the controller's namespace
//! (`anchor`, `objects`), sealing a written report (`seal`: check it against the run's
//! record, sign it, advance the anchor), and the export bundle (`bundle`).
//!
//! Verifying a chain is `crate::drill::chain`'s; this module supplies what it checks
//! against. Nothing here calls the Kubernetes API: the controller
//! (`crate::controller::evidence`, the report Job in `crate::mover::report`; see
//! docs/evidence.md) and the CLI (`lifeboat evidence`, `lifeboat drill
//! verify-chain`) read and write the objects.

pub mod anchor;
pub mod bundle;
pub mod keys;
pub mod objects;
pub mod seal;
pub mod signature;

use crate::repo::StoreError;

/// What can go wrong with evidence. Bounded categories ([`Error::category`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key that cannot be read or made.
    #[error("evidence key: {0}")]
    Key(String),
    /// A signed payload that cannot be written or read.
    #[error("signed payload: {0}")]
    Payload(String),
    /// An anchor object that cannot be read.
    #[error("anchor: {0}")]
    Anchor(String),
    /// A report that would fork the anchored chain.
    #[error("refusing to fork the chain: {0}")]
    Fork(String),
    /// A stored report that is not what the run recorded: not signed.
    #[error("refusing to sign: {0}")]
    NotAsRecorded(String),
    /// An export bundle that cannot be written or read.
    #[error("bundle: {0}")]
    Bundle(String),
    /// The report store could not be read or written.
    #[error("report store: {0}")]
    Store(#[from] StoreError),
}

impl Error {
    /// A static PascalCase name for metrics, Events and exit codes.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Key(_) => "EvidenceKeyInvalid",
            Error::Payload(_) => "EvidencePayloadInvalid",
            Error::Anchor(_) => "AnchorInvalid",
            Error::Fork(_) => "ChainFork",
            Error::NotAsRecorded(_) => "ReportNotAsRecorded",
            Error::Bundle(_) => "BundleInvalid",
            Error::Store(e) => crate::repo::Error::Storage(e.clone()).category(),
        }
    }

    /// Whether retrying may help (only the store's own transient failures).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_transient())
    }
}
