//! Log lines for journald: when stderr is the journal's stream, each line starts with
//! its syslog priority (`<3>` error, `<4>` warn, `<6>` info, `<7>` debug and trace), as
//! sd-daemon(3) describes, and carries no timestamp (the journal stamps every entry).
//! journald reads the prefix per line, so a message of several lines gets it on each.

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// True when `$JOURNAL_STREAM` (`<device>:<inode>`, set by systemd when stdout or stderr
/// is connected to the journal) names the file that stderr is. A value inherited by a
/// process whose stderr was redirected elsewhere does not match.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some(stderr) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .and_then(|fd| std::fs::File::from(fd).metadata().ok())
    else {
        return false;
    };
    parse_stream(&value) == Some((stderr.dev(), stderr.ino()))
}

/// `<device>:<inode>` as decimal numbers.
fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// A `tracing-subscriber` event format: `<N>message key=value`, no timestamp, no level
/// word (the priority says it), the prefix repeated on every line of the message.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = format!("<{}>", priority(*event.metadata().level()));
        let mut text = String::new();
        ctx.format_fields(Writer::new(&mut text), event)?;
        for line in text.lines() {
            writer.write_str(&prefix)?;
            writer.write_str(line)?;
            writer.write_char('\n')?;
        }
        if text.is_empty() {
            writeln!(writer, "{prefix}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_stream("8:x"), None);
        assert_eq!(parse_stream("8"), None);
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
