//! `{{ ... }}` placeholders, as Prefect writes them in prefect.yaml (DESIGN.md
//! "Templating"). Pure text functions: finding and classifying placeholders (for
//! `validate`) and rendering them (for a run, with the daemon's environment).
//!
//! Kinds: `{{ $NAME }}` reads the environment when a run starts; `{{ step.field }}` names
//! an earlier pull step's output; `{{ prefect.variables.x }}` / `{{ prefect.blocks.x }}`
//! live on a Prefect server; `{{ flow_run.x }}` exists only under Prefect. sundial resolves
//! the first two and explains the others.

/// What a placeholder asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    /// `{{ $NAME }}`.
    Env(String),
    /// `{{ prefect.variables.x }}`, `{{ prefect.blocks.x.y }}`.
    PrefectServer(String),
    /// `{{ flow_run.id }}` and the like.
    FlowRun(String),
    /// `{{ id.field }}`: an earlier step's output (a pull step, or a build step's).
    StepOutput { step: String, field: String },
    /// Anything else.
    Other(String),
}

impl Placeholder {
    fn classify(inner: &str) -> Placeholder {
        let inner = inner.trim();
        if let Some(name) = inner.strip_prefix('$') {
            return Placeholder::Env(name.trim().to_string());
        }
        if inner.starts_with("prefect.variables.") || inner.starts_with("prefect.blocks.") {
            return Placeholder::PrefectServer(inner.to_string());
        }
        if inner.starts_with("flow_run.") || inner.starts_with("deployment.") {
            return Placeholder::FlowRun(inner.to_string());
        }
        match inner.split_once('.') {
            Some((step, field)) if is_name(step) && is_name(field) => Placeholder::StepOutput {
                step: step.to_string(),
                field: field.to_string(),
            },
            _ => Placeholder::Other(inner.to_string()),
        }
    }

    /// The text as written, for messages: `{{ $NAME }}`.
    pub fn written(&self) -> String {
        let inner = match self {
            Placeholder::Env(name) => format!("${name}"),
            Placeholder::PrefectServer(t) | Placeholder::FlowRun(t) | Placeholder::Other(t) => {
                t.clone()
            }
            Placeholder::StepOutput { step, field } => format!("{step}.{field}"),
        };
        format!("{{{{ {inner} }}}}")
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Every placeholder in `text`, in order.
pub fn placeholders(text: &str) -> Vec<Placeholder> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        found.push(Placeholder::classify(&after[..close]));
        rest = &after[close + 2..];
    }
    found
}

/// `text` with every placeholder replaced by `lookup`'s answer; the first placeholder it
/// cannot answer is the error.
pub fn render(
    text: &str,
    lookup: &dyn Fn(&Placeholder) -> Option<String>,
) -> Result<String, Placeholder> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let placeholder = Placeholder::classify(&after[..close]);
        let value = lookup(&placeholder).ok_or(placeholder)?;
        out.push_str(&rest[..open]);
        out.push_str(&value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders `{{ $NAME }}` from the process environment (what a run does when it starts).
pub fn render_env(text: &str) -> Result<String, Placeholder> {
    render(text, &|p| match p {
        Placeholder::Env(name) => std::env::var(name).ok(),
        _ => None,
    })
}

/// Why a command cannot be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// An unclosed quote or a trailing backslash.
    #[error(transparent)]
    Syntax(#[from] shell_words::ParseError),
    /// Removing quotes or backslashes would put a `{` or `}` next to a placeholder, or make
    /// `{{ ... }}` out of text that was none: the run would then resolve a different
    /// placeholder than the one validated.
    #[error("in `{word}`, removing quotes or backslashes joins braces into a different `{{{{ }}}}` placeholder")]
    Braces { word: String },
    /// Every private-use character is in the command, so none can mark placeholders.
    #[error("the command holds every private-use character (U+E000 to U+F8FF)")]
    NoMark,
}

/// Splits a command into argv like a POSIX shell, without one, keeping each `{{ ... }}`
/// whole (its inner spaces are not word breaks). Each word holds exactly the placeholders
/// written in it, so a run renders what `validate` checked; when quote or backslash
/// removal would make another one (`{\{$X}}`, `{"{{ $X }}"`), that is
/// [`SplitError::Braces`].
pub fn split_command(command: &str) -> Result<Vec<String>, SplitError> {
    let mark = free_mark(command).ok_or(SplitError::NoMark)?;
    let mut protected = Vec::new();
    let mut masked = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        masked.push_str(&rest[..open]);
        masked.push(mark);
        masked.push_str(&protected.len().to_string());
        masked.push(mark);
        protected.push(&rest[open..open + close + 2]);
        rest = &rest[open + close + 2..];
    }
    masked.push_str(rest);
    let words = shell_words::split(&masked)?;
    words
        .into_iter()
        .map(|masked_word| {
            let mut word = String::with_capacity(masked_word.len());
            let mut written = Vec::new();
            let mut pieces = masked_word.split(mark);
            word.push_str(pieces.next().unwrap_or_default());
            // The mark always comes in pairs around an index: index, then text, repeated.
            while let (Some(index), Some(text)) = (pieces.next(), pieces.next()) {
                let original = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| protected.get(i))
                    .copied()
                    .unwrap_or_default();
                word.push_str(original);
                written.extend(placeholders(original));
                word.push_str(text);
            }
            if placeholders(&word) != written {
                return Err(SplitError::Braces { word });
            }
            Ok(word)
        })
        .collect()
}

/// A private-use character that `command` does not hold, to mark placeholders with.
fn free_mark(command: &str) -> Option<char> {
    const FIRST: u32 = 0xE000;
    const LAST: u32 = 0xF8FF;
    let mut used = vec![false; (LAST - FIRST + 1) as usize];
    for c in command.chars() {
        if let Some(slot) = (c as u32)
            .checked_sub(FIRST)
            .and_then(|i| used.get_mut(i as usize))
        {
            *slot = true;
        }
    }
    let free = used.iter().position(|u| !u)?;
    char::from_u32(FIRST + free as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_classified() {
        assert_eq!(
            placeholders("a {{ $TOKEN }} b {{prefect.blocks.secret.x}} {{ clone-step.directory }} {{ flow_run.id }} {{ 1 + 2 }}"),
            vec![
                Placeholder::Env("TOKEN".into()),
                Placeholder::PrefectServer("prefect.blocks.secret.x".into()),
                Placeholder::StepOutput { step: "clone-step".into(), field: "directory".into() },
                Placeholder::FlowRun("flow_run.id".into()),
                Placeholder::Other("1 + 2".into()),
            ]
        );
    }

    #[test]
    fn rendering_substitutes_or_names_the_missing_one() {
        let lookup = |p: &Placeholder| match p {
            Placeholder::Env(n) if n == "A" => Some("1".to_string()),
            _ => None,
        };
        assert_eq!(render("x={{ $A }}/{{$A}}", &lookup), Ok("x=1/1".into()));
        assert_eq!(
            render("{{ $B }}", &lookup),
            Err(Placeholder::Env("B".into()))
        );
        assert_eq!(
            render("no placeholders }} {{", &lookup),
            Ok("no placeholders }} {{".into())
        );
    }

    #[test]
    fn commands_split_around_placeholders() {
        assert_eq!(
            split_command("python -m etl --token {{ $TOKEN }} 'a b'").unwrap(),
            vec!["python", "-m", "etl", "--token", "{{ $TOKEN }}", "a b"]
        );
        assert_eq!(
            split_command("echo pre{{ $X }}post").unwrap(),
            vec!["echo", "pre{{ $X }}post"]
        );
        assert_eq!(
            split_command("echo '{{ $X }}' \"a {{ $Y }}\"").unwrap(),
            vec!["echo", "{{ $X }}", "a {{ $Y }}"]
        );
    }

    #[test]
    fn removing_a_backslash_or_quotes_never_makes_a_new_placeholder() {
        // Found by fuzzing: `{\{}}` split into `{{}}`, a placeholder the text does not
        // have, so a run resolved what `validate` never saw.
        for command in [
            "{\\{}}",
            "echo {\\{$X}}",
            "echo {\"\"{prefect.variables.x}}",
            "echo {'{{ $X }}'",
            "w{'{x'}}",
        ] {
            assert!(
                matches!(split_command(command), Err(SplitError::Braces { .. })),
                "{command:?}: {:?}",
                split_command(command)
            );
        }
        // Braces that stay apart from a placeholder are fine, and stay text.
        assert_eq!(
            split_command("echo { '{{ $X }}' }").unwrap(),
            vec!["echo", "{", "{{ $X }}", "}"]
        );
        assert_eq!(
            split_command("echo {\\{ $X }}").unwrap(),
            vec!["echo", "{{", "$X", "}}"]
        );
        assert_eq!(
            split_command("echo \"{{ $X }}\"}").unwrap(),
            vec!["echo", "{{ $X }}}"]
        );
    }

    #[test]
    fn the_placeholder_mark_is_a_character_the_command_does_not_hold() {
        // `\u{E000}0\u{E000}` was the mark of the first placeholder, and was replaced by it.
        assert_eq!(
            split_command("a\u{E000}0\u{E000} {{ $X }}").unwrap(),
            vec!["a\u{E000}0\u{E000}", "{{ $X }}"]
        );
    }
}
