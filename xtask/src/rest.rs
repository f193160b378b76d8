//! REST client generation: `spec/openapi.yaml` -> Rust source for `generated/rest.rs`.
//!
//! This module owns the checks we put on the hand-written OpenAPI document and
//! the progenitor settings. It knows nothing about where the output goes or
//! what header is put above it; the caller (`main.rs`) decides that.
//!
//! Steps:
//! 1. Read the YAML twice: as a loose JSON value (for checks that must see every
//!    `$ref`, wherever it sits) and as a typed `openapiv3::OpenAPI` (document
//!    order is kept, so the output does not depend on serde_json features).
//! 2. Refuse documents progenitor would reject or panic on, with an error that
//!    says what to fix: not OpenAPI 3.0.x, a missing or repeated `operationId`,
//!    a local `$ref` that points nowhere, a `$ref`'d path item, or an operation
//!    with more than one success response body (progenitor counts `default` as
//!    a possible success response too).
//! 3. Drop operations marked `x-coder-websocket: true` (progenitor cannot build
//!    websocket upgrades; the crate dials the agent RPC socket by hand).
//! 4. Run progenitor with the settings in [`settings`] and pretty-print.
//!
//! Progenitor settings: positional interface, merged tags, optional hooks.
//! - Positional: one `async fn` per operation taking its parameters in order
//!   (query parameters sorted by name, body last) and plain data structs.
//!   The crate's hand-written `src/rest.rs` wraps every call anyway, so the
//!   builder style would only add a second, larger API nobody uses.
//! - Merged tags: a single `Client` with every method (the only tag style that
//!   works with the positional interface).
//! - Hooks left optional: the crate adds the session token and tracing by
//!   implementing `progenitor_client::ClientHooks` for `Client`.
//! - Extra derive `PartialEq` on every type, so values can be compared in tests.
//! - The generated `Client::new` applies a 15 s total timeout; the crate must
//!   build its own `reqwest::Client` and use `Client::new_with_client`, since
//!   the reinit event stream and `listen=true` external auth stay open longer.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use openapiv3::{OpenAPI, ReferenceOr, StatusCode};

/// The OpenAPI document's file name inside the spec directory.
pub const SPEC_FILE: &str = "openapi.yaml";

/// The vendor extension that marks an operation as a websocket upgrade.
pub const WEBSOCKET_EXTENSION: &str = "x-coder-websocket";

/// Reads `spec_dir/openapi.yaml`, checks it, and returns the formatted Rust
/// source of the progenitor client (without any header).
pub fn generate(spec_dir: &Path) -> Result<String> {
    let path = spec_dir.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    generate_from_str(&text).with_context(|| format!("generating the REST client from {}", path.display()))
}

/// Same as [`generate`], from the document's text.
pub fn generate_from_str(yaml: &str) -> Result<String> {
    let mut spec = load(yaml)?;
    remove_websocket_operations(&mut spec);
    check_success_responses(&spec)?;

    let mut generator = progenitor::Generator::new(&settings());
    // progenitor reports some unsupported shapes by panicking; turn any such
    // panic into an error so the xtask prints one clear message.
    let tokens = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| generator.generate_tokens(&spec)))
        .map_err(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            anyhow!("progenitor panicked while generating the client: {msg}")
        })?
        .map_err(|e| anyhow!("progenitor could not generate the client: {e}"))?;

    let file: syn::File = syn::parse2(tokens).context("progenitor produced tokens that are not a Rust file")?;
    Ok(prettyplease::unparse(&file))
}

/// The progenitor settings used for the SDK (see the module docs for why).
pub fn settings() -> progenitor::GenerationSettings {
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Positional)
        .with_tag(progenitor::TagStyle::Merged)
        .with_derive("PartialEq");
    settings
}

/// Parses and checks the document; websocket operations are still present.
pub fn load(yaml: &str) -> Result<OpenAPI> {
    let raw: serde_json::Value = serde_yaml::from_str(yaml).context("the OpenAPI document is not valid YAML")?;
    check_version(&raw)?;
    check_refs(&raw)?;
    let spec: OpenAPI =
        serde_yaml::from_str(yaml).context("the document does not have the shape of an OpenAPI 3.0 document")?;
    check_operation_ids(&spec)?;
    Ok(spec)
}

fn check_version(raw: &serde_json::Value) -> Result<()> {
    match raw.get("openapi") {
        Some(serde_json::Value::String(v)) if v.starts_with("3.0.") => Ok(()),
        Some(serde_json::Value::String(v)) => {
            bail!("the document declares `openapi: {v}`; progenitor only reads OpenAPI 3.0.x")
        }
        Some(other) => bail!("`openapi` must be a version string such as \"3.0.3\", found {other}"),
        None => bail!("the document has no top-level `openapi` version; expected 3.0.x"),
    }
}

/// Every `$ref` must be local (`#/...`) and point at something in the document.
fn check_refs(raw: &serde_json::Value) -> Result<()> {
    let mut refs = Vec::new();
    collect_refs(raw, "", &mut refs);
    let mut problems = Vec::new();
    for (location, target) in &refs {
        let Some(pointer) = target.strip_prefix('#') else {
            problems.push(format!(
                "{location}: `$ref: {target}` is not local; only `#/...` references are supported"
            ));
            continue;
        };
        if raw.pointer(pointer).is_none() {
            let what = match target.strip_prefix("#/components/schemas/") {
                Some(name) => format!("there is no schema `{name}` in components.schemas"),
                None => "nothing in the document has that path".to_string(),
            };
            problems.push(format!("{location}: `$ref: {target}` does not resolve: {what}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "unresolved references in the OpenAPI document:\n  {}",
            problems.join("\n  ")
        )
    }
}

fn collect_refs(value: &serde_json::Value, location: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref" {
                    if let serde_json::Value::String(target) = child {
                        let shown = if location.is_empty() {
                            "(document root)"
                        } else {
                            location
                        };
                        out.push((shown.to_string(), target.clone()));
                    }
                } else {
                    collect_refs(child, &join_location(location, key), out);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_refs(child, &format!("{location}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// `a.b`, or `a."/x/y"` when the key is not a plain word, for error messages.
fn join_location(location: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain { key.to_string() } else { format!("{key:?}") };
    if location.is_empty() {
        key
    } else {
        format!("{location}.{key}")
    }
}

/// Every operation has an `operationId`, no two share one, and no path item is a `$ref`.
fn check_operation_ids(spec: &OpenAPI) -> Result<()> {
    let mut seen: BTreeMap<&str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, item) in spec.paths.iter() {
        let ReferenceOr::Item(item) = item else {
            problems.push(format!(
                "path `{path}` is a `$ref`; progenitor needs path items written inline"
            ));
            continue;
        };
        for (method, op) in item.iter() {
            let here = format!("{} {path}", method.to_uppercase());
            match op.operation_id.as_deref() {
                None | Some("") => problems.push(format!("{here} has no operationId")),
                Some(id) => {
                    if let Some(first) = seen.get(id) {
                        problems.push(format!("operationId `{id}` is used by both {first} and {here}"));
                    } else {
                        seen.insert(id, here);
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("bad operationIds in the OpenAPI document:\n  {}", problems.join("\n  "))
    }
}

fn is_websocket(op: &openapiv3::Operation) -> bool {
    op.extensions.get(WEBSOCKET_EXTENSION) == Some(&serde_json::Value::Bool(true))
}

/// Drops operations marked `x-coder-websocket: true`, and path items left empty.
pub fn remove_websocket_operations(spec: &mut OpenAPI) {
    for item in spec.paths.paths.values_mut() {
        let ReferenceOr::Item(item) = item else {
            continue;
        };
        for slot in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ] {
            if slot.as_ref().is_some_and(is_websocket) {
                *slot = None;
            }
        }
    }
    spec.paths
        .paths
        .retain(|_, item| !matches!(item, ReferenceOr::Item(i) if i.iter().next().is_none()));
}

/// progenitor asserts that all success responses of an operation (101, 2xx,
/// `2XX` and `default`) share one body shape; check it here with a message.
fn check_success_responses(spec: &OpenAPI) -> Result<()> {
    let mut problems = Vec::new();
    for (path, method, op) in spec.operations() {
        let mut bodies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let success = op
            .responses
            .responses
            .iter()
            .filter(|(code, _)| match code {
                StatusCode::Code(c) => *c == 101 || (200..300).contains(c),
                StatusCode::Range(r) => *r == 2,
            })
            .map(|(code, r)| (code.to_string(), r))
            .chain(op.responses.default.iter().map(|r| ("default".to_string(), r)));
        for (code, response) in success {
            let body = match response {
                ReferenceOr::Reference { reference } => {
                    match spec
                        .components
                        .as_ref()
                        .and_then(|c| c.responses.get(reference.trim_start_matches("#/components/responses/")))
                    {
                        Some(ReferenceOr::Item(r)) => body_shape(r),
                        _ => reference.clone(),
                    }
                }
                ReferenceOr::Item(r) => body_shape(r),
            };
            bodies.entry(body).or_default().push(code);
        }
        if bodies.len() > 1 {
            let codes: Vec<String> = bodies.values().map(|c| c.join("/")).collect();
            problems.push(format!(
                "{} {path} ({}): success responses {} have different bodies; progenitor needs \
                 one (note that it counts `default` as a success response: declare errors as \
                 `4XX`/`5XX` instead)",
                method.to_uppercase(),
                op.operation_id.as_deref().unwrap_or("?"),
                codes.join(", "),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("operations progenitor cannot generate:\n  {}", problems.join("\n  "))
    }
}

fn body_shape(response: &openapiv3::Response) -> String {
    serde_json::to_string(&response.content).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed_spec() -> String {
        let path = crate::workspace_root().unwrap().join("spec").join(SPEC_FILE);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    #[test]
    fn committed_spec_passes_the_checks_and_generates_a_client() {
        let code = generate(&crate::workspace_root().unwrap().join("spec")).unwrap();
        for op in [
            "get_git_ssh_key",
            "patch_logs",
            "patch_app_status",
            "post_log_source",
            "get_external_auth",
            "get_reinit",
            "post_aws_instance_identity",
            "post_azure_instance_identity",
            "post_google_instance_identity",
        ] {
            assert!(code.contains(&format!("pub async fn {op}")), "missing method {op}");
        }
        assert!(code.contains("pub struct ReinitializationEvent"));
    }

    #[test]
    fn websocket_operations_are_left_out_of_the_client() {
        let code = generate_from_str(&committed_spec()).unwrap();
        assert!(!code.contains("get_agent_rpc"));
        assert!(!code.contains("/api/v2/workspaceagents/me/rpc"));

        let mut spec = load(&committed_spec()).unwrap();
        assert!(spec.paths.paths.contains_key("/api/v2/workspaceagents/me/rpc"));
        remove_websocket_operations(&mut spec);
        assert!(!spec.paths.paths.contains_key("/api/v2/workspaceagents/me/rpc"));
    }

    #[test]
    fn generation_is_deterministic() {
        let a = generate_from_str(&committed_spec()).unwrap();
        let b = generate_from_str(&committed_spec()).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn a_broken_schema_ref_is_refused_with_its_location() {
        let spec = committed_spec().replacen(
            "$ref: \"#/components/schemas/GitSSHKey\"",
            "$ref: \"#/components/schemas/NoSuchKey\"",
            1,
        );
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(err.contains("#/components/schemas/NoSuchKey"), "{err}");
        assert!(err.contains("there is no schema `NoSuchKey`"), "{err}");
        assert!(
            err.contains("paths.\"/api/v2/workspaceagents/me/gitsshkey\".get.responses.200"),
            "{err}"
        );
    }

    #[test]
    fn an_external_ref_is_refused() {
        let spec = committed_spec().replacen(
            "$ref: \"#/components/schemas/GitSSHKey\"",
            "$ref: \"other.yaml#/GitSSHKey\"",
            1,
        );
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(err.contains("is not local"), "{err}");
    }

    #[test]
    fn a_duplicate_operation_id_is_refused_naming_both_operations() {
        let spec = committed_spec().replacen("operationId: patch_app_status", "operationId: patch_logs", 1);
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(err.contains("operationId `patch_logs` is used by both"), "{err}");
        assert!(err.contains("PATCH /api/v2/workspaceagents/me/logs"), "{err}");
        assert!(err.contains("PATCH /api/v2/workspaceagents/me/app-status"), "{err}");
    }

    #[test]
    fn a_missing_operation_id_is_refused() {
        let spec = committed_spec().replacen("      operationId: get_reinit\n", "", 1);
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(
            err.contains("GET /api/v2/workspaceagents/me/reinit has no operationId"),
            "{err}"
        );
    }

    #[test]
    fn an_openapi_3_1_document_is_refused() {
        let spec = committed_spec().replacen("openapi: 3.0.3", "openapi: 3.1.0", 1);
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(err.contains("openapi: 3.1.0"), "{err}");
    }

    #[test]
    fn a_default_response_beside_a_typed_success_is_refused() {
        let spec = committed_spec().replacen(
            "                $ref: \"#/components/schemas/GitSSHKey\"\n        \"4XX\":",
            "                $ref: \"#/components/schemas/GitSSHKey\"\n        default:\n          $ref: \"#/components/responses/Error\"\n        \"4XX\":",
            1,
        );
        assert_ne!(spec, committed_spec(), "the test edit did not apply");
        let err = format!("{:#}", generate_from_str(&spec).unwrap_err());
        assert!(err.contains("get_git_ssh_key"), "{err}");
        assert!(err.contains("`default`"), "{err}");
    }
}
