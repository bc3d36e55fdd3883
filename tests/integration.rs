//! The one integration-test binary: drives the built `sundial` binary and the library's
//! public API. Each area is a module; helpers live in `support`.

mod support;

mod croniter;
mod next;
