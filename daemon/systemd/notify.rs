//! The sd_notify protocol without libsystemd: one datagram of `KEY=VALUE` lines to the
//! unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract name written with a
//! leading `@`). The environment is read once at start and left as it is, so the jobs the
//! daemon starts inherit it unchanged (systemd only listens to the main process anyway:
//! `NotifyAccess=main`).

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go: an unbound datagram socket and the manager's address.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The socket as `$NOTIFY_SOCKET` spelled it, for messages.
    name: String,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for; `Ok(None)` when it is unset or empty (not
    /// started by a service manager). Errors: a value that is neither a path nor an
    /// abstract name (e.g. `vsock:`), or a socket that cannot be created.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(name) if !name.is_empty() => Notifier::new(&name).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `name`: `/path/to/socket` or `@abstract-name`.
    pub fn new(name: &str) -> io::Result<Notifier> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("NOTIFY_SOCKET={name}: only a path or an @abstract name is supported"),
            ));
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            name: name.to_string(),
        })
    }

    /// Sends `message` (newline-separated `KEY=VALUE` assignments) as one datagram.
    pub fn send(&self, message: &str) -> io::Result<()> {
        self.socket.send_to_addr(message.as_bytes(), &self.addr)?;
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second handle on the same socket (for a thread).
    pub fn try_clone(&self) -> io::Result<Notifier> {
        Ok(Notifier {
            socket: self.socket.try_clone()?,
            addr: self.addr.clone(),
            name: self.name.clone(),
        })
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// advises, when `watchdog_pid` (the value of `$WATCHDOG_PID`) is unset or names us.
/// `None` when there is no watchdog or it is meant for another process.
pub fn watchdog_interval(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    our_pid: u32,
) -> Option<Duration> {
    let usec: u64 = watchdog_usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = watchdog_pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec) / 2)
}

/// [`watchdog_interval`] from this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// `CLOCK_MONOTONIC` in microseconds, for `MONOTONIC_USEC=` next to `RELOADING=1`.
pub fn monotonic_usec() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => {
            let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
            secs * 1_000_000 + nanos / 1_000
        }
        // CLOCK_MONOTONIC always exists on Linux; 0 makes systemd ignore the field.
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_interval_is_half_of_watchdog_usec() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("400000"), Some("7"), 7),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn a_watchdog_for_another_process_or_none_at_all_is_ignored() {
        assert_eq!(watchdog_interval(Some("400000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("400000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn a_notify_socket_is_a_path_or_an_abstract_name() {
        assert!(Notifier::new("/run/systemd/notify").is_ok());
        assert!(Notifier::new("@sundial-test").is_ok());
        let err = Notifier::new("vsock:2:1234").err().expect("unsupported");
        assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        let name = format!("sundial-notify-unit-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .send("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
