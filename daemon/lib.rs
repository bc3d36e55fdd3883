//! sundial: a declarative GitOps scheduler.
//!
//! Data flows `source → manifest → validate → reconcile → scheduler → runner → store`;
//! see `DESIGN.md`. The modules below are public only as far as the integration
//! tests and the binary need them.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod explain;
pub mod manifest;
mod memory;
pub mod notify;
pub mod reconcile;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod sla;
pub mod source;
pub mod store;
pub mod systemd;
pub mod template;
pub mod validate;
