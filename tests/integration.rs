//! The one integration-test binary: every test drives the built `sundial` binary (or the
//! library's public API) with real files, real git repositories and real tools
//! (pre-commit, check-jsonschema, croniter, systemd-analyze). Each area is a module; helpers live in
//! `support`.

mod support;

mod api;
mod bench;
mod chaos;
mod client;
mod cluster;
mod croniter;
mod daemon;
mod dashboard;
mod dashboard_alerts;
mod edges;
mod explain;
mod faults;
mod fds;
mod gitfaults;
mod invariants;
mod limits;
mod next;
mod notifications;
mod pause;
mod policies;
mod postgres;
mod precommit;
mod prefect;
mod prestart;
mod promises;
mod quickstart;
mod recovery;
mod schemathesis;
mod slas;
mod systemd;
mod validate;
