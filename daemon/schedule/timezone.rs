//! Time zone names: IANA names and the legacy aliases chrono-tz knows (`EST`, `US/Eastern`).
//!
//! A name is matched exactly (as tzdata spells it); a wrong name gets up to three
//! suggestions: a case-insensitive match first, then names whose last part matches, then
//! names within a small edit distance.

use chrono_tz::{Tz, TZ_VARIANTS};

use super::ScheduleError;

/// Parses an IANA time zone name (or a legacy alias chrono-tz knows).
///
/// Errors with [`ScheduleError::UnknownTimezone`], carrying close names to suggest.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    let trimmed = name.trim();
    trimmed
        .parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone {
            name: name.to_string(),
            suggestions: suggestions(trimmed),
        })
}

fn suggestions(name: &str) -> Vec<String> {
    let wanted = name.to_ascii_lowercase().replace(' ', "_");
    let mut scored: Vec<(usize, &str)> = TZ_VARIANTS
        .iter()
        .filter_map(|tz| {
            let candidate = tz.name();
            let lower = candidate.to_ascii_lowercase();
            let last = lower.rsplit('/').next().unwrap_or(&lower);
            let score = if lower == wanted {
                0
            } else if last == wanted || wanted.rsplit('/').next() == Some(last) {
                1
            } else {
                let distance = edit_distance(&lower, &wanted).min(edit_distance(last, &wanted));
                if distance > 3 {
                    return None;
                }
                1 + distance
            };
            Some((score, candidate))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, name)| name.to_string())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iana_and_legacy_names() {
        assert_eq!(
            parse_timezone("America/New_York").unwrap(),
            Tz::America__New_York
        );
        assert_eq!(parse_timezone("US/Eastern").unwrap(), Tz::US__Eastern);
        assert_eq!(parse_timezone("EST").unwrap(), Tz::EST);
        assert_eq!(parse_timezone("UTC").unwrap(), Tz::UTC);
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        let err = parse_timezone("america/new_york").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"america/new_york\"; did you mean America/New_York?"
        );
        let err = parse_timezone("Europe/Berln").unwrap_err();
        assert!(err.to_string().contains("Europe/Berlin"), "{err}");
        let err = parse_timezone("Mars/Olympus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown time zone \"Mars/Olympus\"; use an IANA name such as Europe/Berlin or UTC"
        );
    }
}
