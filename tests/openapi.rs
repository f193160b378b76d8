//! Checks `spec/openapi.yaml` against the wire facts of coderd's agent REST API
//! (paths, methods, success statuses, query parameters, media types, security
//! and the codersdk error body). The generated client is only as right as this
//! document, so these facts are pinned here independently of the generator.

use openapiv3::{OpenAPI, Operation, Parameter, ReferenceOr, Schema, SchemaKind, StatusCode, Type};

fn spec() -> OpenAPI {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/spec/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not an OpenAPI 3.0 document: {e}"))
}

fn operation<'a>(spec: &'a OpenAPI, method: &str, path: &str) -> &'a Operation {
    let item = spec
        .paths
        .paths
        .get(path)
        .unwrap_or_else(|| panic!("path {path} is missing"))
        .as_item()
        .unwrap_or_else(|| panic!("path {path} must be written inline"));
    item.iter()
        .find(|(m, _)| *m == method)
        .map(|(_, op)| op)
        .unwrap_or_else(|| panic!("{} {path} is missing", method.to_uppercase()))
}

/// The 1xx/2xx statuses an operation declares.
fn success_statuses(op: &Operation) -> Vec<u16> {
    op.responses
        .responses
        .keys()
        .filter_map(|code| match code {
            StatusCode::Code(c) if *c < 300 => Some(*c),
            _ => None,
        })
        .collect()
}

fn query_parameters(op: &Operation) -> Vec<(String, bool, String)> {
    op.parameters
        .iter()
        .map(|p| match p {
            ReferenceOr::Item(Parameter::Query { parameter_data, .. }) => {
                let ty = match &parameter_data.format {
                    openapiv3::ParameterSchemaOrContent::Schema(ReferenceOr::Item(s)) => match &s.schema_kind {
                        SchemaKind::Type(Type::String(_)) => "string",
                        SchemaKind::Type(Type::Boolean(_)) => "boolean",
                        _ => "other",
                    },
                    _ => "other",
                };
                (parameter_data.name.clone(), parameter_data.required, ty.to_string())
            }
            other => panic!("only inline query parameters are expected, found {other:?}"),
        })
        .collect()
}

fn schema<'a>(spec: &'a OpenAPI, name: &str) -> &'a Schema {
    spec.components
        .as_ref()
        .expect("components")
        .schemas
        .get(name)
        .unwrap_or_else(|| panic!("schema {name} is missing"))
        .as_item()
        .unwrap_or_else(|| panic!("schema {name} must be written inline"))
}

fn object(schema: &Schema) -> &openapiv3::ObjectType {
    match &schema.schema_kind {
        SchemaKind::Type(Type::Object(o)) => o,
        other => panic!("expected an object schema, found {other:?}"),
    }
}

fn json_schema_ref(op: &Operation, status: u16) -> String {
    let response = op
        .responses
        .responses
        .get(&StatusCode::Code(status))
        .and_then(|r| r.as_item())
        .unwrap_or_else(|| panic!("no inline {status} response"));
    match response.content.get("application/json").and_then(|m| m.schema.as_ref()) {
        Some(ReferenceOr::Reference { reference }) => reference.clone(),
        other => panic!("expected a $ref JSON schema for {status}, found {other:?}"),
    }
}

fn request_schema_ref(op: &Operation) -> String {
    let body = op
        .request_body
        .as_ref()
        .and_then(|b| b.as_item())
        .expect("an inline request body");
    assert_eq!(
        body.content.keys().collect::<Vec<_>>(),
        ["application/json"],
        "request bodies are JSON only"
    );
    match body.content["application/json"].schema.as_ref() {
        Some(ReferenceOr::Reference { reference }) => reference.clone(),
        other => panic!("expected a $ref request schema, found {other:?}"),
    }
}

const ENDPOINTS: &[(&str, &str, u16)] = &[
    ("get", "/api/v2/workspaceagents/me/gitsshkey", 200),
    ("patch", "/api/v2/workspaceagents/me/logs", 200),
    ("patch", "/api/v2/workspaceagents/me/app-status", 200),
    ("post", "/api/v2/workspaceagents/me/log-source", 201),
    ("get", "/api/v2/workspaceagents/me/external-auth", 200),
    ("get", "/api/v2/workspaceagents/me/reinit", 200),
    ("get", "/api/v2/workspaceagents/me/rpc", 101),
    (
        "post",
        "/api/v2/workspaceagents/me/experimental/chat-context/refresh",
        200,
    ),
    ("post", "/api/v2/workspaceagents/aws-instance-identity", 200),
    ("post", "/api/v2/workspaceagents/azure-instance-identity", 200),
    ("post", "/api/v2/workspaceagents/google-instance-identity", 200),
];

const IDENTITY_EXCHANGES: &[&str] = &[
    "/api/v2/workspaceagents/aws-instance-identity",
    "/api/v2/workspaceagents/azure-instance-identity",
    "/api/v2/workspaceagents/google-instance-identity",
];

#[test]
fn document_is_openapi_3_0() {
    let spec = spec();
    assert!(
        spec.openapi.starts_with("3.0."),
        "progenitor reads 3.0.x only, found {}",
        spec.openapi
    );
}

#[test]
fn every_agent_endpoint_has_its_method_and_exact_success_status() {
    let spec = spec();
    for &(method, path, status) in ENDPOINTS {
        let op = operation(&spec, method, path);
        assert_eq!(
            success_statuses(op),
            [status],
            "{} {path} must declare exactly one success status, {status}",
            method.to_uppercase()
        );
    }
    assert_eq!(
        spec.paths.paths.len(),
        ENDPOINTS.len(),
        "no endpoint beyond the agent's own"
    );
}

#[test]
fn operation_ids_are_the_agreed_snake_case_names() {
    let spec = spec();
    let ids: Vec<(&str, &str)> = spec
        .operations()
        .map(|(path, _, op)| (path, op.operation_id.as_deref().expect("operationId")))
        .collect();
    for (path, expected) in [
        ("/api/v2/workspaceagents/me/gitsshkey", "get_git_ssh_key"),
        ("/api/v2/workspaceagents/me/logs", "patch_logs"),
        ("/api/v2/workspaceagents/me/app-status", "patch_app_status"),
        ("/api/v2/workspaceagents/me/log-source", "post_log_source"),
        ("/api/v2/workspaceagents/me/external-auth", "get_external_auth"),
        ("/api/v2/workspaceagents/me/reinit", "get_reinit"),
        ("/api/v2/workspaceagents/me/rpc", "get_agent_rpc"),
        (
            "/api/v2/workspaceagents/me/experimental/chat-context/refresh",
            "refresh_chat_context",
        ),
        (
            "/api/v2/workspaceagents/aws-instance-identity",
            "post_aws_instance_identity",
        ),
        (
            "/api/v2/workspaceagents/azure-instance-identity",
            "post_azure_instance_identity",
        ),
        (
            "/api/v2/workspaceagents/google-instance-identity",
            "post_google_instance_identity",
        ),
    ] {
        assert!(
            ids.contains(&(path, expected)),
            "{path} must have operationId {expected}; have {ids:?}"
        );
    }
}

#[test]
fn success_bodies_use_the_agentsdk_types() {
    let spec = spec();
    let s = |name: &str| format!("#/components/schemas/{name}");
    let get = |m, p| operation(&spec, m, p);
    assert_eq!(
        json_schema_ref(get("get", "/api/v2/workspaceagents/me/gitsshkey"), 200),
        s("GitSSHKey")
    );
    assert_eq!(
        json_schema_ref(get("patch", "/api/v2/workspaceagents/me/logs"), 200),
        s("Response")
    );
    assert_eq!(
        json_schema_ref(get("patch", "/api/v2/workspaceagents/me/app-status"), 200),
        s("Response")
    );
    assert_eq!(
        json_schema_ref(get("post", "/api/v2/workspaceagents/me/log-source"), 201),
        s("WorkspaceAgentLogSource")
    );
    assert_eq!(
        json_schema_ref(get("get", "/api/v2/workspaceagents/me/external-auth"), 200),
        s("ExternalAuthResponse")
    );
    assert_eq!(
        json_schema_ref(
            get("post", "/api/v2/workspaceagents/me/experimental/chat-context/refresh"),
            200
        ),
        s("RefreshChatContextResponse")
    );
    for path in IDENTITY_EXCHANGES {
        assert_eq!(
            json_schema_ref(get("post", path), 200),
            s("AuthenticateResponse"),
            "{path}"
        );
    }
}

#[test]
fn request_bodies_are_json_of_the_agentsdk_types() {
    let spec = spec();
    let s = |name: &str| format!("#/components/schemas/{name}");
    for (method, path, schema) in [
        ("patch", "/api/v2/workspaceagents/me/logs", "PatchLogs"),
        ("patch", "/api/v2/workspaceagents/me/app-status", "PatchAppStatus"),
        ("post", "/api/v2/workspaceagents/me/log-source", "PostLogSourceRequest"),
        (
            "post",
            "/api/v2/workspaceagents/aws-instance-identity",
            "AWSInstanceIdentityToken",
        ),
        (
            "post",
            "/api/v2/workspaceagents/azure-instance-identity",
            "AzureInstanceIdentityToken",
        ),
        (
            "post",
            "/api/v2/workspaceagents/google-instance-identity",
            "GoogleInstanceIdentityToken",
        ),
    ] {
        assert_eq!(request_schema_ref(operation(&spec, method, path)), s(schema), "{path}");
    }
}

#[test]
fn chat_context_refresh_takes_no_body_and_says_it_is_experimental() {
    let spec = spec();
    let op = operation(
        &spec,
        "post",
        "/api/v2/workspaceagents/me/experimental/chat-context/refresh",
    );
    assert!(op.request_body.is_none(), "Go's client sends no body");
    assert!(query_parameters(op).is_empty());
    let description = op.description.as_deref().unwrap_or("");
    assert!(description.contains("Experimental upstream"), "{description}");
    let refreshed = &object(schema(&spec, "RefreshChatContextResponse")).properties["refreshed"];
    match refreshed {
        ReferenceOr::Item(s) => assert!(
            matches!(&s.schema_kind, openapiv3::SchemaKind::Type(openapiv3::Type::Integer(_))),
            "{s:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn external_auth_takes_its_six_optional_query_parameters() {
    let spec = spec();
    let op = operation(&spec, "get", "/api/v2/workspaceagents/me/external-auth");
    let mut params = query_parameters(op);
    params.sort();
    let expected = [
        ("chat_id", "string"),
        ("git_branch", "string"),
        ("git_remote_origin", "string"),
        ("id", "string"),
        ("listen", "boolean"),
        ("match", "string"),
    ]
    .map(|(n, t)| (n.to_string(), false, t.to_string()));
    assert_eq!(params, expected);
}

#[test]
fn agent_rpc_is_a_websocket_upgrade_with_version_and_role() {
    let spec = spec();
    let op = operation(&spec, "get", "/api/v2/workspaceagents/me/rpc");
    let mut params = query_parameters(op);
    params.sort();
    assert_eq!(
        params,
        [
            ("role".to_string(), false, "string".to_string()),
            ("version".to_string(), false, "string".to_string())
        ]
    );
    assert_eq!(
        op.extensions.get("x-coder-websocket"),
        Some(&serde_json::Value::Bool(true))
    );
}

#[test]
fn reinit_answers_an_event_stream() {
    let spec = spec();
    let op = operation(&spec, "get", "/api/v2/workspaceagents/me/reinit");
    let ok = op.responses.responses[&StatusCode::Code(200)]
        .as_item()
        .expect("inline 200");
    assert_eq!(ok.content.keys().collect::<Vec<_>>(), ["text/event-stream"]);
}

#[test]
fn reinit_takes_wait_and_answers_409_with_the_codersdk_body() {
    let spec = spec();
    let op = operation(&spec, "get", "/api/v2/workspaceagents/me/reinit");
    assert_eq!(
        query_parameters(op),
        [("wait".to_string(), false, "boolean".to_string())]
    );
    let conflict = op.responses.responses[&StatusCode::Code(409)]
        .as_item()
        .expect("inline 409");
    match conflict.content["application/json"].schema.as_ref() {
        Some(ReferenceOr::Reference { reference }) => assert_eq!(reference, "#/components/schemas/Response"),
        other => panic!("409 must carry a Response, found {other:?}"),
    }
}

#[test]
fn identity_exchanges_send_no_session_token_and_everything_else_does() {
    let spec = spec();
    let global = spec.security.as_ref().expect("a global security requirement");
    assert!(
        global.iter().any(|req| req.contains_key("CoderSessionToken")),
        "the session token is required by default"
    );
    match spec
        .components
        .as_ref()
        .and_then(|c| c.security_schemes.get("CoderSessionToken"))
    {
        Some(ReferenceOr::Item(openapiv3::SecurityScheme::APIKey { location, name, .. })) => {
            assert_eq!(*location, openapiv3::APIKeyLocation::Header);
            assert_eq!(name, "Coder-Session-Token");
        }
        other => panic!("CoderSessionToken must be a header API key, found {other:?}"),
    }
    for (path, _, op) in spec.operations() {
        let exchange = IDENTITY_EXCHANGES.contains(&path);
        match (&op.security, exchange) {
            (Some(reqs), true) => assert!(reqs.is_empty(), "{path} must declare `security: []`"),
            (None, true) => panic!("{path} must declare `security: []`"),
            (Some(reqs), false) => assert!(reqs.iter().any(|r| r.contains_key("CoderSessionToken")), "{path}"),
            (None, false) => {}
        }
    }
}

#[test]
fn every_operation_answers_errors_with_the_codersdk_response_body() {
    let spec = spec();
    for (path, method, op) in spec.operations() {
        for range in [4, 5] {
            // reinit lists its 4xx codes one by one: the generated client
            // matches a 4XX range before a single code, which would hide 409.
            if range == 4 && path == "/api/v2/workspaceagents/me/reinit" {
                assert!(!op.responses.responses.contains_key(&StatusCode::Range(4)));
                match op.responses.responses.get(&StatusCode::Code(401)) {
                    Some(ReferenceOr::Reference { reference }) => {
                        assert_eq!(reference, "#/components/responses/Error", "{method} {path} 401")
                    }
                    other => panic!("{method} {path} must declare 401 as the Error response, found {other:?}"),
                }
                continue;
            }
            match op.responses.responses.get(&StatusCode::Range(range)) {
                Some(ReferenceOr::Reference { reference }) => {
                    assert_eq!(reference, "#/components/responses/Error", "{method} {path} {range}XX")
                }
                other => panic!("{method} {path} must declare {range}XX as the Error response, found {other:?}"),
            }
        }
    }
    let error = spec.components.as_ref().unwrap().responses["Error"]
        .as_item()
        .expect("inline Error response");
    match error.content["application/json"].schema.as_ref() {
        Some(ReferenceOr::Reference { reference }) => {
            assert_eq!(reference, "#/components/schemas/Response")
        }
        other => panic!("the Error response must be a Response, found {other:?}"),
    }
}

#[test]
fn error_body_has_message_detail_and_field_validations() {
    let spec = spec();
    let response = object(schema(&spec, "Response"));
    assert_eq!(response.required, ["message"]);
    let mut keys: Vec<&str> = response.properties.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["detail", "message", "validations"]);
    let validations = response.properties["validations"]
        .as_item()
        .expect("inline validations");
    let item_ref = match &validations.schema_kind {
        SchemaKind::Type(Type::Array(a)) => match a.items.as_ref().expect("items") {
            ReferenceOr::Reference { reference } => reference.clone(),
            other => panic!("validations items should be a $ref, found {other:?}"),
        },
        other => panic!("validations must be an array, found {other:?}"),
    };
    let name = item_ref.strip_prefix("#/components/schemas/").expect("a schema ref");
    let validation = object(schema(&spec, name));
    let mut keys: Vec<&str> = validation.properties.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["detail", "field"]);
}

#[test]
fn reinitialization_event_has_todays_json_names() {
    let spec = spec();
    let event = object(schema(&spec, "ReinitializationEvent"));
    let mut keys: Vec<&str> = event.properties.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["owner_id", "reason", "workspace_id"]);
    assert_eq!(event.required, ["workspace_id", "reason"]);
}

#[test]
fn log_source_creation_and_identity_bodies_use_the_go_json_names() {
    let spec = spec();
    let keys = |name: &str| {
        let mut k: Vec<String> = object(schema(&spec, name)).properties.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys("PostLogSourceRequest"), ["display_name", "icon", "id"]);
    assert_eq!(
        keys("WorkspaceAgentLogSource"),
        ["created_at", "display_name", "icon", "id", "workspace_agent_id"]
    );
    assert_eq!(
        keys("AWSInstanceIdentityToken"),
        ["agent_name", "document", "signature"]
    );
    assert_eq!(
        object(schema(&spec, "AWSInstanceIdentityToken")).required,
        ["signature", "document"]
    );
    assert_eq!(
        keys("AzureInstanceIdentityToken"),
        ["agent_name", "encoding", "signature"]
    );
    assert_eq!(keys("GoogleInstanceIdentityToken"), ["agent_name", "json_web_token"]);
    assert_eq!(keys("AuthenticateResponse"), ["session_token"]);
    assert_eq!(
        keys("ExternalAuthResponse"),
        [
            "access_token",
            "expires_at",
            "password",
            "token_extra",
            "type",
            "url",
            "username"
        ]
    );
}
