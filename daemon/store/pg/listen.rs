//! The listener: a thread of its own with a connection of its own that `LISTEN`s on the
//! cluster's channels ([`super::dispatch::READY`], [`super::dispatch::WAKE`],
//! [`super::dispatch::CANCEL`]) and hands
//! each notification to the engine. A lost connection is made again (every second while
//! the server does not answer), and each (re)connection is followed by a wake-up on every
//! channel, so nothing sent in a gap is missed: the engine looks at the store then, as it
//! also does every tick.

use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use tokio::sync::mpsc;

use super::dispatch::{CANCEL, READY, WAKE};
use super::Target;

/// The channels listened on.
const CHANNELS: [&str; 3] = [READY, WAKE, CANCEL];

/// How long one wait for notifications lasts before the thread looks whether the engine
/// still listens, and checks its connection.
const WAIT: Duration = Duration::from_secs(1);

/// Starts the listener; it ends when `tx`'s receiver is dropped.
pub fn start(target: Arc<Target>, tx: mpsc::UnboundedSender<&'static str>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sundial-listen".into())
        .spawn(move || {
            while !tx.is_closed() {
                if let Err(e) = listen(&target, &tx) {
                    tracing::debug!(
                        "the cluster's listener lost its connection: {}",
                        super::describe_error(&e)
                    );
                    std::thread::sleep(WAIT);
                }
            }
        })
        .map(drop)
}

/// One connection's life: LISTEN, a wake-up on each channel, then every notification.
fn listen(
    target: &Target,
    tx: &mpsc::UnboundedSender<&'static str>,
) -> Result<(), postgres::Error> {
    let mut client = target.connect()?;
    let statements: Vec<String> = CHANNELS.iter().map(|c| format!("LISTEN {c}")).collect();
    client.batch_execute(&statements.join("; "))?;
    for channel in CHANNELS {
        let _ = tx.send(channel);
    }
    let mut idle = Duration::ZERO;
    while !tx.is_closed() {
        let mut heard = false;
        {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(WAIT);
            while let Some(n) = waiting.next()? {
                heard = true;
                if let Some(channel) = CHANNELS.iter().find(|c| **c == n.channel()) {
                    let _ = tx.send(channel);
                }
            }
        }
        // A quiet connection is asked something now and then, so a dead one is noticed.
        idle = if heard { Duration::ZERO } else { idle + WAIT };
        if idle >= 5 * WAIT {
            client.simple_query("SELECT 1")?;
            idle = Duration::ZERO;
        }
    }
    Ok(())
}
