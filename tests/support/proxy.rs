//! A TCP proxy the test controls, to cut one daemon off its database: [`Proxy::cut`]
//! stops relaying in both directions while keeping every connection open (a partition:
//! nothing is refused or reset, the bytes just stop, as when a network path dies), and
//! [`Proxy::heal`] lets them flow again. New connections made during a cut are accepted
//! and held the same way.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Relays 127.0.0.1:(a free port) to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut2, stop2) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let cut = cut2.clone();
                let stop = stop2.clone();
                std::thread::spawn(move || {
                    wait_while_cut(&cut, &stop);
                    let Ok(server) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let pairs = [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ];
                    for (from, to) in pairs {
                        let (cut, stop) = (cut.clone(), stop.clone());
                        std::thread::spawn(move || relay(from, to, &cut, &stop));
                    }
                });
            }
        });
        Proxy { addr, cut, stop }
    }

    /// The port to connect to instead of the upstream's.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Stops relaying; connections stay open.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Relays again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Holds the caller while the proxy is cut (the condition is the test's switch, polled).
fn wait_while_cut(cut: &AtomicBool, stop: &AtomicBool) {
    while cut.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Copies `from` to `to`; what arrives during a cut is held until the heal.
fn relay(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, stop: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        wait_while_cut(cut, stop);
        if stop.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
