//! Diagnostics are data: where (file, line, column, JSON Pointer), what (a stable code and
//! a message) and what to do (help). Rendering lives in `render`, so the daemon's status
//! API and every output format of `sundial validate` show the same facts.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A stable identifier of a class of problem; scripts and tests match on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    YamlSyntax,
    TabIndent,
    DuplicateKey,
    NotUtf8,
    TooLarge,
    TooDeep,
    MergeConflict,
    TooManyProblems,
    NotAManifest,
    Prefect2Spec,
    Type,
    Required,
    OutOfRange,
    UnknownKey,
    MisplacedKey,
    IgnoredKey,
    Yaml11Boolean,
    PlaceholderDeployment,
    MissingName,
    NoEntrypoint,
    InvalidCommand,
    ScheduleKind,
    ScheduleConflict,
    DuplicateSchedule,
    InvalidCron,
    InvalidTimezone,
    InvalidRrule,
    InvalidInterval,
    InvalidAnchor,
    NeverFires,
    DuplicateDeployment,
    Parameters,
    ParameterSchema,
    InvalidEnv,
    NodeLabels,
    WorkingDir,
    PullStep,
    Template,
    Notification,
    Sla,
    PrefectDifference,
    Entrypoint,
    RepositoryRoot,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "yaml-syntax",
            Code::TabIndent => "tab-indent",
            Code::DuplicateKey => "duplicate-key",
            Code::NotUtf8 => "not-utf8",
            Code::TooLarge => "too-large",
            Code::TooDeep => "too-deep",
            Code::MergeConflict => "merge-conflict",
            Code::TooManyProblems => "too-many-problems",
            Code::NotAManifest => "not-a-manifest",
            Code::Prefect2Spec => "prefect2-spec",
            Code::Type => "type",
            Code::Required => "required",
            Code::OutOfRange => "out-of-range",
            Code::UnknownKey => "unknown-key",
            Code::MisplacedKey => "misplaced-key",
            Code::IgnoredKey => "ignored-key",
            Code::Yaml11Boolean => "yaml11-boolean",
            Code::PlaceholderDeployment => "placeholder-deployment",
            Code::MissingName => "missing-name",
            Code::NoEntrypoint => "no-entrypoint",
            Code::InvalidCommand => "invalid-command",
            Code::ScheduleKind => "schedule-kind",
            Code::ScheduleConflict => "schedule-conflict",
            Code::DuplicateSchedule => "duplicate-schedule",
            Code::InvalidCron => "invalid-cron",
            Code::InvalidTimezone => "invalid-timezone",
            Code::InvalidRrule => "invalid-rrule",
            Code::InvalidInterval => "invalid-interval",
            Code::InvalidAnchor => "invalid-anchor",
            Code::NeverFires => "never-fires",
            Code::DuplicateDeployment => "duplicate-deployment",
            Code::Parameters => "parameters",
            Code::ParameterSchema => "parameter-schema",
            Code::InvalidEnv => "invalid-env",
            Code::NodeLabels => "node-labels",
            Code::WorkingDir => "working-dir",
            Code::PullStep => "pull-step",
            Code::Template => "template",
            Code::Notification => "notification",
            Code::Sla => "sla",
            Code::PrefectDifference => "prefect-difference",
            Code::Entrypoint => "entrypoint",
            Code::RepositoryRoot => "repository-root",
        }
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One finding, anchored to a node of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    /// 1-based; 0 when the problem is the file as a whole (it could not be read).
    pub line: usize,
    pub column: usize,
    /// How many characters to underline on `line`.
    pub width: usize,
    /// JSON Pointer of the offending node ("" for the document).
    pub pointer: String,
    pub code: Code,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The message and, when there is one, the help, as one sentence pair.
    pub fn message_with_help(&self) -> String {
        match &self.help {
            Some(help) => format!("{}; {help}", self.message),
            None => self.message.clone(),
        }
    }
}
