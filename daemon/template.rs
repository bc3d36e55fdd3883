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

/// Splits a command into argv like a POSIX shell, without one, keeping each `{{ ... }}`
/// whole (its inner spaces are not word breaks).
pub fn split_command(command: &str) -> Result<Vec<String>, shell_words::ParseError> {
    const MARK: char = '\u{E000}';
    let mut protected = Vec::new();
    let mut masked = String::with_capacity(command.len());
    let mut rest = command;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            break;
        };
        masked.push_str(&rest[..open]);
        masked.push(MARK);
        masked.push_str(&protected.len().to_string());
        masked.push(MARK);
        protected.push(rest[open..open + close + 2].to_string());
        rest = &rest[open + close + 2..];
    }
    masked.push_str(rest);
    let words = shell_words::split(&masked)?;
    Ok(words
        .into_iter()
        .map(|w| {
            let mut word = w;
            for (i, original) in protected.iter().enumerate() {
                word = word.replace(&format!("{MARK}{i}{MARK}"), original);
            }
            word
        })
        .collect())
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
    }
}
