//! DR drills without Kubernetes: expectations and the evaluation of checks against
//! restored data, RTO/RPO measurement, and the evidence report with its hash chain (how it
//! is built, rendered, stored next to the repository and verified). The controllers
//! (`controller::dr_drill`, `controller::drill_run`) decide *when*; the movers
//! (`mover::check`, `mover::report`) and the CLI (`lifeboat drill ...`) call in here to do.

pub mod chain;
pub mod checks;
pub mod expect;
pub mod html;
pub mod immutability;
pub mod kpi;
pub mod measure;
pub mod pod_security;
pub mod report;
pub mod store;
