//! Serving the [`router`](super::router) over HTTP/1.1 on a TCP listener, with the limits
//! a daemon needs when any local user can open connections to it (no token is needed to
//! connect; issue 12.5).
//!
//! Contract:
//! - A request head (request line and headers) must arrive in full within
//!   [`Limits::header_timeout`] of the moment the server starts waiting for it, also
//!   between the requests of a keep-alive connection: a half-sent request or an idle
//!   keep-alive connection is closed then.
//! - A connection on which no byte moves for [`Limits::idle_timeout`] while the server
//!   waits to read (a request body sent drop by drop) or to write (a client that never
//!   reads its answer) is closed.
//! - At most [`Limits::max_connections`] connections are served at once. One more is
//!   accepted, answered `503` with a JSON body at once (when the socket takes it without
//!   waiting) and closed, so it holds its descriptor for no time: the descriptors under
//!   the open-file limit stay for runs, the store and git. [`max_connections_for`] sizes
//!   the default from that limit.
//! - A failing `accept` (the process is out of descriptors: `EMFILE`) is logged at most
//!   once a minute and retried after a short pause; it never ends serving.
//! - [`serve`] returns once `stop` turns true and the open connections have finished the
//!   request they were serving (idle ones close at once), or after [`STOP_WAIT`].
//! - [`spawn`] serves on a thread and runtime of its own (whose blocking pool does the
//!   reads), so nothing the engine's thread does (a retention pass over a million rows)
//!   holds an answer back, and answers take nothing from the engine's thread.
//!
//! Non-goals: HTTP/2 and TLS (put a reverse proxy in front for those).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

/// How long [`serve`] waits at stop for open connections to finish.
pub const STOP_WAIT: Duration = Duration::from_secs(3);

/// The pause after a failed `accept` before the next one.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How often a repeated problem (refused connections, failed accepts) is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The limits of [`serve`]; see the module contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default timeouts, with at most `max_connections` connections.
    pub fn new(max_connections: usize) -> Limits {
        Limits {
            header_timeout: Limits::HEADER_TIMEOUT,
            idle_timeout: Limits::IDLE_TIMEOUT,
            max_connections: max_connections.max(1),
        }
    }
}

/// The default connection cap for a soft open-file limit of `open_files`: a quarter of
/// it (three quarters stay for runs, the store, git and the watcher), between 16 and 1024.
pub fn max_connections_for(open_files: u64) -> usize {
    usize::try_from(open_files / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 1024)
}

/// [`serve`] on a thread named `sundial-api` with its own runtime; the thread ends when
/// [`serve`] returns (join it after sending `stop`).
pub fn spawn(
    listener: std::net::TcpListener,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("sundial-api".into())
        .spawn(move || {
            runtime.block_on(async move {
                // Registered with this runtime's reactor, not the one that bound it.
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, router, limits, stop).await,
                    Err(e) => tracing::error!("HTTP: cannot serve on the listener: {e}"),
                }
            });
            // A read stuck in the blocking pool must not hold the exit.
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
}

/// Serves `router` on `listener` until `stop` turns true; see the module contract.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = Throttle::default();
    let mut failed = Throttle::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                if let Some(count) = failed.note() {
                    tracing::warn!(
                        "HTTP: cannot accept connections ({e}; {count} times in the last minute); retrying"
                    );
                }
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let (router, stop) = (router.clone(), stop.clone());
                tokio::spawn(async move {
                    connection(stream, router, limits, stop).await;
                    drop(slot);
                });
            }
            Err(_) => {
                if let Some(count) = refused.note() {
                    tracing::warn!(
                        "HTTP: {} connections are open, the most --max-connections allows; \
                         refused {count} more in the last minute",
                        limits.max_connections
                    );
                }
                refuse(&stream, limits.max_connections);
            }
        }
    }
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(STOP_WAIT, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("HTTP: connections still open {STOP_WAIT:?} after the stop; closing them");
    }
}

/// Serves one connection until it closes, times out, or the server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Idle::new(stream, limits.idle_timeout));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(io, TowerToHyperService::new(router));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("HTTP: connection closed: {e}");
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Answers a connection over the cap without waiting for it: the 503 goes out if the
/// socket takes it at once, then the connection is closed.
fn refuse(stream: &TcpStream, max: usize) {
    let body = format!(
        "{{\"error\":\"the daemon already serves {max} connections, the most it allows \
         (--max-connections); try again shortly\"}}"
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Counts events and says when one should be logged: the first, then at most one per
/// [`WARN_EVERY`], with how many happened since the last.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    fn note(&mut self) -> Option<u64> {
        self.count += 1;
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// A stream that fails with `TimedOut` when the server waits on it (to read or to write)
/// and no byte has moved for `idle`. A wait that nobody polls (a handler running) does
/// not count: only the server's reads and writes arm it.
struct Idle<T> {
    io: T,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    fn new(io: T, idle: Duration) -> Idle<T> {
        Idle {
            io,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Called when the stream is not ready: pending, or the idle time is up.
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no byte moved for {:?}", self.idle),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn after<R>(
        &mut self,
        poll: Poll<io::Result<R>>,
        progress: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(Ok(value)) => {
                if progress {
                    self.moved();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.io).poll_read(cx, buf);
        let progress = buf.filled().len() > before;
        this.after(poll, progress, cx)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        let progress = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        this.after(poll, progress, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        let progress = matches!(poll, Poll::Ready(Ok(n)) if n > 0);
        this.after(poll, progress, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.after(poll, false, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_three_quarters_of_the_descriptors() {
        assert_eq!(max_connections_for(1024), 256);
        assert_eq!(max_connections_for(20), 16);
        assert_eq!(max_connections_for(1 << 20), 1024);
    }

    #[test]
    fn a_throttle_logs_the_first_event_then_counts() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.note(), Some(1));
        assert_eq!(throttle.note(), None);
        assert_eq!(throttle.note(), None);
        throttle.last = Some(Instant::now() - WARN_EVERY);
        assert_eq!(throttle.note(), Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_and_a_talking_one_does_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut stream = Idle::new(ours, Duration::from_secs(60));
        let mut buf = [0u8; 8];
        theirs.write_all(b"GET").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 3);
        tokio::time::advance(Duration::from_secs(59)).await;
        theirs.write_all(b" /").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);
        let silent = tokio::time::timeout(Duration::from_secs(120), stream.read(&mut buf));
        let err = silent.await.expect("the idle timeout fired").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    /// The thread that started the server (the engine's) is blocked the whole time: the
    /// API answers all the same, and stops when told.
    #[tokio::test]
    async fn the_api_answers_while_the_thread_that_started_it_is_blocked() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = spawn(
            listener.into_std().unwrap(),
            router,
            Limits::new(4),
            stop_rx,
        )
        .unwrap();
        let (answered_tx, answered) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            let _ = answered_tx.send(answer);
        });
        // Blocks this runtime's only thread until the answer comes (or 10 s pass).
        let answer = answered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer:?}");
        assert!(answer.ends_with("ok\n"), "{answer:?}");
        stop_tx.send(true).unwrap();
        server.join().unwrap();
    }
}
