//! Which `Host:` names the API answers, against DNS rebinding: a web page on
//! `evil.example` that re-points its own name at 127.0.0.1 makes the browser send
//! `Host: evil.example:4280` to the daemon, and the page may then read the answers
//! (status, parameters, logs). Such a name is refused with 421 before any handler runs.
//!
//! Accepted: `localhost` and loopback addresses (`127.0.0.1`, `[::1]`) with any port; the
//! listen address itself (its IP, with its port or none; when listening on every address,
//! `0.0.0.0` or `[::]`, any IP address with that port, since rebinding needs a name); and
//! each name given with `--allow-host` (with any port, or only the port it names). A
//! request without a `Host` (HTTP/1.0 tools) is accepted: browsers always send one.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::header;
use axum::http::uri::Authority;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// The names a request may reach the daemon by.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    listen: SocketAddr,
    /// `--allow-host` names, lower case, each with the port it requires (if any).
    extra: Vec<(String, Option<u16>)>,
}

/// An `--allow-host` value that is not `NAME` or `NAME:PORT`.
#[derive(Debug, thiserror::Error)]
#[error("--allow-host {0:?}: give a host name or address, optionally with :PORT (e.g. sundial.internal or sundial.internal:4280)")]
pub struct BadAllowedHost(String);

impl AllowedHosts {
    /// `listen` is the address the daemon listens on; `extra` are the `--allow-host`
    /// values. Errors on a value that is not a host with an optional port.
    pub fn new(listen: SocketAddr, extra: &[String]) -> Result<AllowedHosts, BadAllowedHost> {
        let extra = extra
            .iter()
            .map(|value| {
                split(value)
                    .filter(|(name, _)| !name.is_empty())
                    .ok_or_else(|| BadAllowedHost(value.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(AllowedHosts { listen, extra })
    }

    /// The same names with the address the listener really got (port 0 picks one).
    pub fn listening_on(self, listen: SocketAddr) -> AllowedHosts {
        AllowedHosts { listen, ..self }
    }

    /// Whether a request whose `Host` is `host` may be answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split(host) else {
            return false;
        };
        if name == "localhost" {
            return true;
        }
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let listen_port = port.is_none_or(|p| p == self.listen.port());
            let listen_ip = ip == self.listen.ip() || self.listen.ip().is_unspecified();
            if ip.is_loopback() || (listen_ip && listen_port) {
                return true;
            }
        }
        self.extra
            .iter()
            .any(|(allowed, only)| *allowed == name && only.is_none_or(|only| Some(only) == port))
    }
}

/// `NAME[:PORT]` as (lower-case name without a trailing dot, port); `None` when it is not
/// a bare authority (user info, a path, a bad port).
fn split(host: &str) -> Option<(String, Option<u16>)> {
    let authority: Authority = host.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let port = match &authority.as_str()[host.len()..] {
        "" => None,
        rest => Some(rest.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    Some((host.trim_end_matches('.').to_ascii_lowercase(), port))
}

/// The middleware: refuses a request whose `Host` is not allowed with 421.
pub async fn check(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let host = match request.headers().get(header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("\u{fffd}").to_string()),
        None => request.uri().authority().map(|a| a.as_str().to_string()),
    };
    match host {
        Some(host) if !state.hosts.allows(&host) => ApiError::MisdirectedHost(host).into_response(),
        _ => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        AllowedHosts::new(listen.parse().unwrap(), &extra).unwrap()
    }

    #[test]
    fn loopback_names_and_the_listen_address_pass() {
        let h = hosts("127.0.0.1:4280", &[]);
        for ok in [
            "127.0.0.1:4280",
            "127.0.0.1",
            "localhost:4280",
            "LOCALHOST",
            "localhost.:9",
            "[::1]:4280",
            "[::1]",
            "127.0.0.2:1",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
    }

    #[test]
    fn rebinding_names_are_refused() {
        let h = hosts("127.0.0.1:4280", &[]);
        for bad in [
            "evil.example:4280",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:4280",
            "user@localhost",
            "localhost:",
            "localhost:99999",
            "",
            "localhost/x",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_match_by_name_and_port_if_given() {
        let h = hosts("0.0.0.0:4280", &["Sundial.Internal", "box:4280"]);
        assert!(h.allows("sundial.internal:8080"));
        assert!(h.allows("sundial.internal"));
        assert!(h.allows("box:4280"));
        assert!(!h.allows("box:80"));
        assert!(!h.allows("box"));
        // Every address of the machine is the listen address here.
        assert!(h.allows("192.168.1.5:4280"));
        assert!(!h.allows("192.168.1.5:80"));
        assert!(!h.allows("other.internal:4280"));
    }

    #[test]
    fn a_specific_listen_address_passes_only_with_its_port() {
        let h = hosts("192.168.1.5:4280", &[]);
        assert!(h.allows("192.168.1.5:4280"));
        assert!(h.allows("192.168.1.5"));
        assert!(!h.allows("192.168.1.5:4281"));
        assert!(!h.allows("192.168.1.6:4280"));
    }

    #[test]
    fn a_bad_allow_host_names_the_flag() {
        let err = AllowedHosts::new("127.0.0.1:1".parse().unwrap(), &["a/b".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--allow-host \"a/b\": give a host name or address, optionally with :PORT (e.g. sundial.internal or sundial.internal:4280)"
        );
    }
}
