//! `sundial trigger DEPLOYMENT [--param k=v]... [--params JSON]`: run a deployment now.

use anyhow::{anyhow, bail};
use serde_json::{Map, Value};

use super::{print_json, Client, ClientArgs, ClientError, Format};
use crate::api::percent_encode;
use crate::api::types::{RunJson, TriggerJson};

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The deployment to run.
    #[arg(value_name = "DEPLOYMENT")]
    pub deployment: String,
    /// A parameter override; the value is JSON when it parses as JSON (`n=3`, `on=true`,
    /// `xs=[1,2]`), else a string (`day=monday`). Repeatable; wins over --params.
    #[arg(long = "param", value_name = "K=V")]
    pub param: Vec<String>,
    /// Parameter overrides as one JSON object.
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: &TriggerArgs) -> Result<(), ClientError> {
    let parameters = overrides(args.params.as_deref(), &args.param)?;
    let path = format!("/api/deployments/{}/runs", percent_encode(&args.deployment));
    let run: RunJson = Client::new(&args.client).post(&path, &TriggerJson { parameters })?;
    if args.client.format == Format::Json {
        return print_json(&run);
    }
    let follow = format!("Follow it with `sundial logs {} --follow`.", run.id);
    match run.state.as_str() {
        "Pending" if run.reason.as_deref() == Some(crate::store::pg::dispatch::ASKED) => println!(
            "Asked the cluster's leader for run {} of {} (this node stands by): it starts on the next node with room. {follow}",
            run.id, run.deployment
        ),
        "Scheduled" => println!(
            "Dispatched run {} of {}: it starts on the next node of the cluster with room. {follow}",
            run.id, run.deployment
        ),
        "Pending" => println!(
            "Queued run {} of {}: it waits for a place under the deployment's concurrency limit. {follow}",
            run.id, run.deployment
        ),
        "Cancelled" => println!(
            "Run {} of {} was not started: Cancelled ({}).",
            run.id,
            run.deployment,
            run.reason.as_deref().unwrap_or("cancelled")
        ),
        state => println!(
            "Started run {} of {} ({state}). {follow}",
            run.id, run.deployment
        ),
    }
    Ok(())
}

/// `--params` first, then each `--param` over it.
pub fn overrides(params: Option<&str>, pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = match params {
        Some(text) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => bail!("--params: give a JSON object, like '{{\"batch_size\": 100}}'"),
            Err(e) => bail!("--params: not JSON ({e})"),
        },
        None => Map::new(),
    };
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| anyhow!("--param {pair:?}: write it as KEY=VALUE"))?;
        let value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::overrides;

    #[test]
    fn a_param_is_json_when_it_parses_and_a_string_otherwise() {
        let pairs = [
            "n=3",
            "day=monday",
            "on=true",
            "xs=[1,2]",
            "s=\"7\"",
            "eq=a=b",
        ]
        .map(String::from);
        let map = overrides(Some(r#"{"n": 1, "keep": null}"#), &pairs).unwrap();
        assert_eq!(
            serde_json::Value::Object(map),
            json!({"n": 3, "keep": null, "day": "monday", "on": true, "xs": [1, 2], "s": "7", "eq": "a=b"})
        );
    }

    #[test]
    fn a_param_without_equals_is_a_usage_error() {
        let e = overrides(None, &["n".into()]).unwrap_err();
        assert_eq!(e.to_string(), "--param \"n\": write it as KEY=VALUE");
    }
}
