//! Plain-text tables that fit the terminal (its real width; `COLUMNS` when the size cannot
//! be read; never cut when the output is not a terminal), and times in the local zone with
//! its name.

use chrono::{DateTime, Utc};

pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders with two spaces between columns; while too wide, the widest column is
    /// shortened (its cells end in `…`).
    pub fn render(&self, width: usize) -> String {
        let len = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| len(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(len(cell));
            }
        }
        let gaps = 2 * widths.len().saturating_sub(1);
        while widths.iter().sum::<usize>() + gaps > width {
            let (i, widest) = widths
                .iter()
                .copied()
                .enumerate()
                .max_by_key(|(_, w)| *w)
                .unwrap_or((0, 0));
            if widest <= 8 {
                break;
            }
            widths[i] -= 1;
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                let cell = if len(cell) > *w {
                    let cut: String = cell.chars().take(w.saturating_sub(1)).collect();
                    format!("{cut}…")
                } else {
                    cell.to_string()
                };
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(&cell);
                if i + 1 < widths.len() {
                    line.push_str(&" ".repeat(w - len(&cell)));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render(output_width()));
    }
}

/// How wide a table may be: the terminal's width when stdout is one (bash does not export
/// `COLUMNS`, so it is only the fallback), unlimited when the output goes to a file or a
/// pipe, where a cut cell would lose what a script reads.
fn output_width() -> usize {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return usize::MAX;
    }
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size() {
        return usize::from(w).max(40);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c: &usize| *c >= 40)
        .unwrap_or(80)
}

/// An RFC 3339 time of the API, shown in the local zone with its abbreviation.
pub fn local_time(text: Option<&str>) -> String {
    let Some(at) = text.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "-".into();
    };
    let at = at.with_timezone(&Utc);
    match local_zone() {
        Some(zone) => at
            .with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        None => at
            .with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
    }
}

/// The local zone by name: `TZ`, else where `/etc/localtime` points.
fn local_zone() -> Option<chrono_tz::Tz> {
    if let Ok(tz) = std::env::var("TZ") {
        return tz.trim_start_matches(':').parse().ok();
    }
    let target = std::fs::read_link("/etc/localtime").ok()?;
    let text = target.to_string_lossy();
    let name = text.split("zoneinfo/").nth(1)?;
    name.parse().ok()
}

/// A duration between two API times, short (`4.2s`, `3m05s`, `2h10m`).
pub fn duration(start: Option<&str>, end: Option<&str>) -> String {
    let parse = |t: Option<&str>| t.and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let (Some(start), end) = (parse(start), parse(end)) else {
        return "-".into();
    };
    let end = end.map(|e| e.with_timezone(&Utc)).unwrap_or_else(Utc::now);
    let ms = (end - start.with_timezone(&Utc)).num_milliseconds().max(0);
    let s = ms / 1000;
    if s < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn a_table_too_wide_shortens_its_widest_column() {
        let mut t = Table::new(&["NAME", "SCHEDULES"]);
        t.row(vec!["etl".into(), "x".repeat(100)]);
        let text = t.render(40);
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        assert!(text.contains('…'), "{text}");
        assert!(text.starts_with("NAME  SCHEDULES\n"), "{text}");
    }
}
