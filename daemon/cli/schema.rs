//! `sundial schema`: prints the manifest JSON Schema that `validate` uses.

use std::io::Write;
use std::process::ExitCode;

use crate::validate::schema::SCHEMA_TEXT;

pub fn run() -> anyhow::Result<ExitCode> {
    std::io::stdout().write_all(SCHEMA_TEXT.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
