//! The "Custom run" form of a deployment page, built from its `parameter_openapi_schema`
//! (the shape Prefect generates from a flow's signature): one field per property, typed
//! (integer, number, text, a choice for enums and booleans, JSON for the rest), with
//! its title, description, default, bounds and whether it is required.
//!
//! Contract: the page checks what HTML can say (required, type, minimum and maximum,
//! lengths) before anything is sent; the API checks the whole schema and its `422`
//! errors are shown in the form, each beside its field when it names one. The form
//! never decides validity alone: a schema feature it does not render (`multipleOf`,
//! `pattern`, `not`, ...) is the API's to refuse. Without a schema (or with enforcement
//! off) the form is one JSON object of overrides.

use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use crate::api::percent_encode;
use crate::engine::status::DeploymentView;

/// The form for `d`.
pub fn custom_run(d: &DeploymentView) -> Markup {
    let dep = d.deployment();
    let post = format!("/api/deployments/{}/runs", percent_encode(&dep.name));
    let properties = dep
        .parameter_schema
        .as_deref()
        .and_then(|s| s.get("properties"))
        .and_then(Json::as_object);
    let required: Vec<&str> = dep
        .parameter_schema
        .as_deref()
        .and_then(|s| s.get("required"))
        .and_then(Json::as_array)
        .map(|r| r.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    html! {
        form.api.params #custom-run data-post=(post) data-goto="run" data-params="1" {
            @match (dep.parameter_schema.as_deref(), properties) {
                (Some(root), Some(properties)) => {
                    @for (i, (name, schema)) in properties.iter().enumerate() {
                        (field(i, name, &resolve(root, schema), dep.parameters.get(name), required.contains(&name.as_str())))
                    }
                }
                _ => {
                    label {
                        "Parameters (a JSON object merged over the defaults)"
                        textarea #param-all data-param="" data-kind="json" rows="6" {
                            (serde_json::to_string_pretty(&Json::Object(dep.parameters.clone())).unwrap_or_default())
                        }
                    }
                    output for="param-all" {}
                }
            }
            div {
                button type="submit" { "Run with these parameters" } " "
                output.result {}
                ul.problems.errors {}
            }
        }
    }
}

fn field(
    index: usize,
    name: &str,
    schema: &Json,
    default: Option<&Json>,
    required: bool,
) -> Markup {
    let id = format!("param-{index}");
    let default = default.or_else(|| schema.get("default"));
    // A default of the deployment fills in what is not given, so the field may stay empty.
    let required = required && default.is_none();
    let title = schema.get("title").and_then(Json::as_str).unwrap_or(name);
    let kind = schema.get("type").and_then(Json::as_str).unwrap_or("");
    let number = |key: &str| schema.get(key).and_then(Json::as_f64);
    let length = |key: &str| schema.get(key).and_then(Json::as_u64);
    let text_of = |v: &Json| match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    let input = if let Some(choices) = schema.get("enum").and_then(Json::as_array) {
        choice(&id, name, choices, default, required)
    } else if kind == "boolean" {
        choice(
            &id,
            name,
            &[Json::Bool(true), Json::Bool(false)],
            default,
            required,
        )
    } else if kind == "integer" || kind == "number" {
        let step = if kind == "integer" { "1" } else { "any" };
        let min = number("minimum").or_else(|| {
            number("exclusiveMinimum")
                .filter(|_| kind == "integer")
                .map(|m| m.floor() + 1.0)
        });
        let max = number("maximum").or_else(|| {
            number("exclusiveMaximum")
                .filter(|_| kind == "integer")
                .map(|m| m.ceil() - 1.0)
        });
        html! {
            input id=(id) type="number" step=(step) data-param=(name) data-kind=(kind)
                min=[min] max=[max] required[required] value=[default.map(text_of)];
        }
    } else if kind == "string" {
        let date = schema.get("format").and_then(Json::as_str) == Some("date");
        html! {
            input id=(id) type=(if date { "date" } else { "text" }) data-param=(name) data-kind="text"
                minlength=[length("minLength")] maxlength=[length("maxLength")]
                required[required] value=[default.map(text_of)];
        }
    } else {
        html! {
            textarea id=(id) rows="3" data-param=(name) data-kind="json" required[required]
                placeholder="JSON" {
                (default.map(|v| v.to_string()).unwrap_or_default())
            }
        }
    };
    html! {
        div {
            label for=(id) {
                span { (title) @if required { " (required)" } @if title != name { " " code { (name) } } }
            }
            (input)
            @if let Some(help) = schema.get("description").and_then(Json::as_str) {
                div.help.mute { (help) }
            }
            output for=(id) {}
        }
    }
}

/// A `<select>` whose option values are JSON (so `1` stays a number, `"1"` a string);
/// an empty first option when the field may stay unset.
fn choice(
    id: &str,
    name: &str,
    choices: &[Json],
    default: Option<&Json>,
    required: bool,
) -> Markup {
    html! {
        select id=(id) data-param=(name) data-kind="json" required[required] {
            @if !required || default.is_none() { option value="" { "–" } }
            @for c in choices {
                option value=(c.to_string()) selected[Some(c) == default] {
                    @match c { Json::String(s) => (s), other => (other.to_string()) }
                }
            }
        }
    }
}

/// A property's schema with `$ref`s into the document, a single-item `allOf` (how
/// pydantic wraps an enum) and an optional's `anyOf: [X, {type: null}]` resolved; its own
/// title, description and default kept.
fn resolve(root: &Json, schema: &Json) -> Json {
    let mut own: Map<String, Json> = schema.as_object().cloned().unwrap_or_default();
    let mut target = None;
    if let Some(Json::String(pointer)) = own.get("$ref") {
        target = pointer
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .cloned();
    } else if let Some(Json::Array(all)) = own.get("allOf") {
        if let [one] = all.as_slice() {
            target = Some(resolve(root, one));
        }
    } else if let Some(Json::Array(any)) = own.get("anyOf").or_else(|| own.get("oneOf")) {
        let not_null: Vec<&Json> = any
            .iter()
            .filter(|s| s.get("type").and_then(Json::as_str) != Some("null"))
            .collect();
        if let [one] = not_null.as_slice() {
            target = Some(resolve(root, one));
        }
    }
    match target {
        Some(Json::Object(resolved)) => {
            for key in ["$ref", "allOf", "anyOf", "oneOf"] {
                own.remove(key);
            }
            let mut merged = resolved;
            merged.extend(own);
            Json::Object(merged)
        }
        _ => Json::Object(own),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::resolve;

    #[test]
    fn pydantic_enums_refs_and_optionals_resolve_to_their_schema() {
        let root = json!({
            "definitions": {"Mode": {"enum": ["fast", "careful"], "type": "string"}},
        });
        let wrapped =
            json!({"allOf": [{"$ref": "#/definitions/Mode"}], "default": "fast", "title": "Mode"});
        assert_eq!(
            resolve(&root, &wrapped),
            json!({"enum": ["fast", "careful"], "type": "string", "default": "fast", "title": "Mode"})
        );
        let optional =
            json!({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "title": "N"});
        assert_eq!(
            resolve(&root, &optional),
            json!({"type": "integer", "minimum": 1, "title": "N"})
        );
        let unknown = json!({"$ref": "#/definitions/Nope"});
        assert_eq!(resolve(&root, &unknown), unknown);
    }
}
