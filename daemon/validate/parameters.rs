//! A deployment's `parameter_openapi_schema`: its defaults, and each schedule's overrides
//! merged into them, must satisfy it (when `enforce_parameter_schema` is not false).
//!
//! Contract: a schema is compiled once per run ([`ParameterSchemas`] keeps each distinct
//! one, by its JSON text), however many deployments share it; what is reported for a
//! deployment does not depend on whether its schema was compiled before.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use jsonschema::Validator;
use serde_json::{Map, Value as Json};

use crate::manifest::model::{RawDeployment, RawSchedule};
use crate::manifest::pointer;

use super::diagnostic::Code;
use super::report::FileReport;

/// The `parameter_openapi_schema`s compiled so far in one run, by their JSON text, with
/// the reason when one does not compile.
#[derive(Default)]
pub struct ParameterSchemas {
    compiled: RefCell<HashMap<String, Rc<Result<Validator, String>>>>,
}

impl ParameterSchemas {
    /// Checks the defaults and every schedule's merged parameters against
    /// `parameter_openapi_schema`; returns the schema when enforcement is on.
    pub fn check(
        &self,
        report: &mut FileReport<'_>,
        at: &str,
        raw: &RawDeployment,
        defaults: &mut Map<String, Json>,
        schedules: &[(String, RawSchedule)],
    ) -> Option<Json> {
        let schema = raw.parameter_openapi_schema.as_ref()?;
        if !raw.enforce_parameter_schema.unwrap_or(true) {
            return None;
        }
        let compiled = self.compiled(schema);
        let validator = match compiled.as_ref() {
            Ok(v) => v,
            Err(e) => {
                report.error(
                    &pointer(at, "parameter_openapi_schema"),
                    false,
                    Code::ParameterSchema,
                    format!("not a valid JSON Schema: {e}"),
                    None,
                );
                return None;
            }
        };
        check_sets(report, at, validator, defaults, schedules);
        Some(schema.clone())
    }

    /// The validator of `schema` (or why it does not compile), compiled on first use.
    fn compiled(&self, schema: &Json) -> Rc<Result<Validator, String>> {
        let key = schema.to_string();
        if let Some(found) = self.compiled.borrow().get(&key) {
            return Rc::clone(found);
        }
        let compiled = Rc::new(jsonschema::validator_for(schema).map_err(|e| e.to_string()));
        self.compiled.borrow_mut().insert(key, Rc::clone(&compiled));
        compiled
    }
}

/// Reports each way the defaults, and each schedule's overrides merged into them, fail
/// `validator`. The defaults are checked where they are (lent to a JSON object and given
/// back), not copied.
fn check_sets(
    report: &mut FileReport<'_>,
    at: &str,
    validator: &Validator,
    defaults: &mut Map<String, Json>,
    schedules: &[(String, RawSchedule)],
) {
    let mut seen = Vec::new();
    let instance = Json::Object(std::mem::take(defaults));
    let set_at = pointer(at, "parameters");
    check_set(report, at, validator, &instance, &set_at, None, &mut seen);
    if let Json::Object(lent) = instance {
        *defaults = lent;
    }
    for (sched_at, s) in schedules {
        if let Some(overrides) = &s.parameters {
            let mut merged = defaults.clone();
            merged.extend(overrides.clone());
            let set_at = pointer(sched_at, "parameters");
            let instance = Json::Object(merged);
            check_set(
                report,
                at,
                validator,
                &instance,
                &set_at,
                Some(overrides),
                &mut seen,
            );
        }
    }
}

/// Reports each way one set of parameters (`instance`, at `set_at`) fails `validator`,
/// once per place and message across the sets of a deployment (`seen`).
fn check_set(
    report: &mut FileReport<'_>,
    at: &str,
    validator: &Validator,
    instance: &Json,
    set_at: &str,
    overrides: Option<&Map<String, Json>>,
    seen: &mut Vec<(String, String)>,
) {
    for error in validator.iter_errors(instance) {
        let path = error.instance_path().as_str().to_string();
        let first_key = path
            .split('/')
            .nth(1)
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~");
        // Point at the override when the schedule set the value, else at the default.
        let base = match overrides {
            Some(o) if o.contains_key(&first_key) => set_at.to_string(),
            _ => pointer(at, "parameters"),
        };
        let where_ = format!("{base}{path}");
        let message = format!(
            "parameter {}{}",
            if path.is_empty() {
                String::new()
            } else {
                format!("`{}` ", &path[1..])
            },
            error
        );
        if seen.contains(&(where_.clone(), message.clone())) {
            continue;
        }
        seen.push((where_.clone(), message.clone()));
        let help = overrides
            .map(|_| format!("checked after merging the overrides at {set_at} into the defaults"));
        report.error(&where_, false, Code::Parameters, message, help);
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::{validate, SourceFile};

    /// Every parameter finding as `line:column message`.
    fn findings(yaml: &str) -> Vec<String> {
        let file = SourceFile {
            display: "prefect.yaml".into(),
            repo_path: "prefect.yaml".into(),
            bytes: yaml.as_bytes().to_vec().into(),
        };
        validate(&[file])
            .diagnostics()
            .filter(|d| d.code.as_str().starts_with("parameter"))
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect()
    }

    #[test]
    fn a_schema_shared_by_deployments_judges_each_one_by_its_own_parameters() {
        let deployment = |name: &str, batch: &str, schema: &str| {
            format!("  - name: {name}\n    entrypoint: flows/etl.py:run\n    parameters: {{batch: {batch}}}\n    parameter_openapi_schema: {schema}\n")
        };
        let good = "{type: object, properties: {batch: {type: integer}}}";
        let broken = "{type: object, properties: {batch: {type: 12}}}";
        let yaml = format!(
            "deployments:\n{}{}{}{}{}",
            deployment("a", "1", good),
            deployment("b", "two", good),
            deployment("c", "3", good),
            deployment("d", "1", broken),
            deployment("e", "1", broken),
        );
        let invalid = "not a valid JSON Schema: 12 is not valid under any of the schemas listed in the 'anyOf' keyword";
        assert_eq!(
            findings(&yaml),
            [
                "8:25 parameter `batch` \"two\" is not of type \"integer\"".to_string(),
                format!("17:31 {invalid}"),
                format!("21:31 {invalid}"),
            ]
        );
    }
}
