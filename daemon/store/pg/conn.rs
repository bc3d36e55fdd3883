//! One connection to PostgreSQL on its own OS thread ([`Conn`]), each call bounded in
//! time.
//!
//! Why a thread: the `postgres` client runs a private tokio runtime and blocks on it,
//! which panics on a thread that drives tokio tasks (the engine's and the API's). Why a
//! time limit: a server that stops answering (a cut network, a stuck server) must not
//! hold the caller forever. A call that gets no answer within its limit is
//! [`StoreError::Unavailable`]; its worker thread is left behind (it ends when its
//! statement does, or when the server's timeouts end the session) and the next call
//! connects anew, as `source/bounded.rs` does with stuck git reads.
//!
//! Each worker has a generation number: a batch is bound to the worker that began it, so a
//! write of a batch never runs on a new connection outside its transaction.

use std::cell::{Cell, RefCell};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use postgres::Client;

use super::super::StoreError;
use super::Target;

type Job = Box<dyn FnOnce(&mut Client) + Send>;

struct Worker {
    jobs: mpsc::Sender<Job>,
    generation: u64,
}

/// A connection on its own thread, connected on first use and again after it failed.
pub(in crate::store) struct Conn {
    target: Arc<Target>,
    limit: Duration,
    worker: RefCell<Option<Worker>>,
    generations: Cell<u64>,
}

impl Conn {
    /// A connection to `target` whose calls each get `limit`.
    pub fn new(target: Arc<Target>, limit: Duration) -> Conn {
        Conn {
            target,
            limit,
            worker: RefCell::new(None),
            generations: Cell::new(0),
        }
    }

    /// The database in words, without the password.
    pub fn what(&self) -> &str {
        &self.target.what
    }

    /// The generation of the worker now connected (connecting one if none is).
    pub fn generation(&self) -> Result<u64, StoreError> {
        self.connected()?;
        Ok(self.worker.borrow().as_ref().map_or(0, |w| w.generation))
    }

    /// Runs `f` on the connection's thread within the call limit.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.call_within(self.limit, None, f)
    }

    /// Runs `f` within `limit`; with `generation` set, only on that worker (a batch's),
    /// never on a new connection.
    pub fn call_within<R: Send + 'static>(
        &self,
        limit: Duration,
        generation: Option<u64>,
        f: impl FnOnce(&mut Client) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        match generation {
            None => self.connected()?,
            Some(g) if self.worker.borrow().as_ref().map(|w| w.generation) == Some(g) => {}
            Some(_) => {
                return Err(self.unavailable(
                    "the connection was lost during a transaction, which was undone".into(),
                ))
            }
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let answer = f(client);
            // Whatever the error said, a connection the server ended is replaced.
            let closed = client.is_closed() || answer.as_ref().is_err_and(broke);
            let _ = tx.send((answer, closed));
        });
        let sent = match self.worker.borrow().as_ref() {
            Some(worker) => worker.jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            self.worker.replace(None);
            return Err(self.unavailable("the connection closed".into()));
        }
        match rx.recv_timeout(limit) {
            Ok((answer, closed)) => {
                if closed {
                    self.worker.replace(None);
                }
                answer
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.worker.replace(None);
                Err(self.unavailable(format!("no answer within {} s", limit.as_secs_f64())))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.worker.replace(None);
                Err(self.unavailable("the connection's thread ended".into()))
            }
        }
    }

    /// Connects a worker unless one is connected.
    fn connected(&self) -> Result<(), StoreError> {
        if self.worker.borrow().is_some() {
            return Ok(());
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let target = self.target.clone();
        let spawned = std::thread::Builder::new()
            .name("sundial-pg".into())
            .spawn(move || {
                let mut client = match target.connect() {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                for job in queue {
                    job(&mut client);
                }
            });
        if let Err(e) = spawned {
            return Err(self.unavailable(format!("cannot start its thread: {e}")));
        }
        // The connect has its own timeout (`connect_timeout`); this bounds the rest.
        match ready_rx.recv_timeout(CONNECT_LIMIT) {
            Ok(Ok(())) => {
                let generation = self.generations.get() + 1;
                self.generations.set(generation);
                self.worker.replace(Some(Worker { jobs, generation }));
                Ok(())
            }
            Ok(Err(e)) => Err(self.unavailable(super::describe_error(&e))),
            Err(_) => Err(self.unavailable(format!(
                "no connection within {} s",
                CONNECT_LIMIT.as_secs()
            ))),
        }
    }

    fn unavailable(&self, detail: String) -> StoreError {
        StoreError::Unavailable {
            what: self.target.what.clone(),
            detail,
        }
    }
}

/// The longest a connection may take to be made.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// Whether an error says the connection itself broke (closed, an I/O error, a FATAL
/// error or a connection failure): the next call connects anew.
fn broke(error: &StoreError) -> bool {
    matches!(error, StoreError::Pg(e) if super::super::connection_lost(e))
}
