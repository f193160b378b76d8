//! `cargo xtask upstream` on the fake Coder checkout in `tests/fixtures/fake-coder`
//! against the frozen spec in `tests/fixtures/fake-spec` (see PLANTED.md): it
//! reports the planted differences and nothing else, says which side has what,
//! sets known inaccuracies apart and reports stale known entries; the fake Go
//! client (`codersdk/agentsdk/agentsdk.go`) vouches for routes swagger skips.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Read at run time, not compiled in: a test binary reused from a shared
/// target dir must still test the checkout it runs in.
fn xtask_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"))
}

fn fixture() -> PathBuf {
    xtask_dir().join("tests/fixtures/fake-coder")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn fake_spec() -> PathBuf {
    xtask_dir().join("tests/fixtures/fake-spec")
}

fn upstream(coder: &Path, format: &str) -> std::process::Output {
    upstream_with_spec(coder, &fake_spec(), format)
}

fn upstream_with_spec(coder: &Path, spec: &Path, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["upstream", "--coder"])
        .arg(coder)
        .args(["--format", format, "--spec"])
        .arg(spec)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// (area, kind, path, detail) of each item of a JSON list.
fn items(list: &serde_json::Value) -> Vec<(String, String, String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("{k} in {c}")).to_owned();
            (s("area"), s("kind"), s("path"), s("detail"))
        })
        .collect()
}

#[test]
fn reports_exactly_the_planted_differences() {
    let out = upstream(&fixture(), "json");
    assert_eq!(
        out.status.code(),
        Some(1),
        "differences exit 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let got = items(&v["changes"]);
    let want: &[(&str, &str, &str, &str)] = &[
        ("proto", "added", "coder.agent.v2.Agent.GetWorkspaceTags", "RPC added"),
        (
            "proto",
            "added",
            "coder.agent.v2.GetWorkspaceTagsRequest",
            "message added",
        ),
        (
            "proto",
            "added",
            "coder.agent.v2.GetWorkspaceTagsResponse",
            "message added",
        ),
        (
            "proto",
            "added",
            "coder.agent.v2.Manifest.dotfiles_uri",
            "field 20 (string) added",
        ),
        (
            "proto",
            "added",
            "coder.agent.v2.WorkspaceApp.SharingLevel.GROUP",
            "enum value 5 added",
        ),
        (
            "proto",
            "changed",
            "coder.tailnet.v2.DERPMap.Region.display_name",
            "field 4 renamed from region_name",
        ),
        (
            "versions",
            "added",
            "versions.2.12",
            "version missing from spec/versions.toml (shipped in v2.33.0)",
        ),
        ("versions", "added", "versions.2.9", "release v2.32.0 not recorded"),
        (
            "versions",
            "added",
            "versions.GetWorkspaceTags",
            "upstream's history adds it in v2.12; spec/versions.toml does not list it",
        ),
        (
            "versions",
            "changed",
            "versions.current",
            "newest version: spec 2.11, upstream CurrentVersion 2.12",
        ),
        (
            "openapi",
            "added",
            "GET /api/v2/workspaceagents/me/external-auth query:scope",
            "optional parameter (string) missing from spec",
        ),
        (
            "openapi",
            "removed",
            "GET /api/v2/workspaceagents/me/external-auth response.password",
            "response property not upstream",
        ),
        (
            "openapi",
            "added",
            "GET /api/v2/workspaceagents/me/gitsshkey response.key_type",
            "response property (string) missing from spec",
        ),
        (
            "openapi",
            "added",
            "GET /api/v2/workspaceagents/me/reinit event.owner_id",
            "event property (string(uuid)) missing from spec",
        ),
        (
            "openapi",
            "changed",
            "PATCH /api/v2/workspaceagents/me/app-status",
            "deprecated: spec false, upstream true",
        ),
        (
            "openapi",
            "added",
            "POST /api/v2/workspaceagents/me/experimental/widgets/sync",
            "endpoint missing from spec/openapi.yaml (called in codersdk/agentsdk/agentsdk.go; not in swagger.json)",
        ),
        (
            "openapi",
            "added",
            "POST /api/v2/workspaceagents/me/heartbeat",
            "endpoint missing from spec/openapi.yaml",
        ),
        (
            "openapi",
            "changed",
            "POST /api/v2/workspaceagents/me/log-source",
            "success status: spec 201, upstream 200",
        ),
        (
            "openapi",
            "changed",
            "POST /api/v2/workspaceagents/me/log-source request.icon",
            "type: spec string, upstream integer",
        ),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(a, k, p, d)| (a.to_string(), k.to_string(), p.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn json_names_which_side_has_what() {
    let v = json(&upstream(&fixture(), "json"));
    for c in v["changes"].as_array().unwrap() {
        let want = match c["kind"].as_str().unwrap() {
            "added" => "upstream has, spec/ lacks",
            "removed" => "spec/ has, upstream lacks",
            "changed" => "both have it, differently",
            k => panic!("unknown kind {k}"),
        };
        assert_eq!(c["direction"], want, "{c}");
    }
}

#[test]
fn event_stream_is_compared_through_its_event_schema_not_as_a_json_body() {
    let v = json(&upstream(&fixture(), "json"));
    let reinit: Vec<_> = items(&v["changes"])
        .into_iter()
        .filter(|c| c.2.starts_with("GET /api/v2/workspaceagents/me/reinit"))
        .map(|c| c.2)
        .collect();
    // Upstream's event type has WorkspaceID and reason like ours, plus the planted owner_id.
    assert_eq!(reinit, ["GET /api/v2/workspaceagents/me/reinit event.owner_id"]);

    // Without the [event-streams] entry the endpoint is flagged, its events not compared.
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fake_spec(), tmp.path());
    std::fs::remove_file(tmp.path().join("upstream.toml")).unwrap();
    let v = json(&upstream_with_spec(&fixture(), tmp.path(), "json"));
    let reinit: Vec<_> = items(&v["changes"])
        .into_iter()
        .filter(|c| c.2.starts_with("GET /api/v2/workspaceagents/me/reinit"))
        .map(|c| c.3)
        .collect();
    assert_eq!(
        reinit,
        ["text/event-stream response with no event schema in spec/upstream.toml [event-streams]; its events are not compared"]
    );
}

#[test]
fn known_inaccuracies_are_set_apart_with_their_evidence_and_stale_entries_reported() {
    let v = json(&upstream(&fixture(), "json"));
    assert_eq!(
        items(&v["known"]),
        [(
            "openapi".to_owned(),
            "changed".to_owned(),
            "GET /api/v2/workspaceagents/me/external-auth query:id".to_owned(),
            "required: spec false, upstream true".to_owned(),
        )]
    );
    assert!(v["known"][0]["why"].as_str().unwrap().starts_with("Planted"));
    assert_eq!(
        v["known"][0]["evidence"][0],
        "coderd/apidoc/swagger.json:1 @ 0000000 (fixture)"
    );
    assert!(
        !items(&v["changes"]).iter().any(|c| c.2.ends_with("query:id")),
        "a known item is not also a change"
    );
    let stale = v["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(
        stale[0]["path"],
        "GET /api/v2/workspaceagents/me/gitsshkey response.algorithm"
    );
    assert_eq!(
        v["counts"],
        serde_json::json!({"real": 19, "known": 1, "out_of_scope": 0, "stale": 1})
    );
}

#[test]
fn text_output_is_a_checklist() {
    let out = upstream(&fixture(), "text");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "- [ ] proto    coder.agent.v2.Manifest.dotfiles_uri: field 20 (string) added (upstream has, spec/ lacks)"
        ),
        "{text}"
    );
    assert!(
        text.contains("19 differences, 1 known, 0 out of scope, 1 stale."),
        "{text}"
    );
    assert!(
        text.contains("- known rest     GET /api/v2/workspaceagents/me/external-auth query:id: required: spec false, upstream true (both have it, differently); Planted"),
        "{text}"
    );
    assert!(
        text.contains("- [ ] stale rest     GET /api/v2/workspaceagents/me/gitsshkey response.algorithm: response property not upstream"),
        "{text}"
    );
    assert!(
        !text.contains("/users/me"),
        "non-agent endpoints are out of scope: {text}"
    );
}

/// A copy of the fixture in `copy` with every plant undone but the known one
/// (`id` required): it then carries exactly fake-spec/'s facts plus that one.
fn unplanted(copy: &Path) {
    for f in [
        "agent/proto/agent.proto",
        "tailnet/proto/tailnet.proto",
        "tailnet/proto/version.go",
        "coderd/apidoc/swagger.json",
        "codersdk/agentsdk/agentsdk.go",
    ] {
        std::fs::create_dir_all(copy.join(f).parent().unwrap()).unwrap();
        std::fs::copy(fixture().join(f), copy.join(f)).unwrap();
    }
    let edit = |f: &str, from: &str, to: &str| {
        let p = copy.join(f);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{f}: {from:?}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    };
    let agent = "agent/proto/agent.proto";
    edit(agent, "\tstring dotfiles_uri = 20;\n", "");
    edit(agent, "\t\tGROUP = 5;\n", "");
    edit(
        agent,
        "\trpc GetWorkspaceTags(GetWorkspaceTagsRequest) returns (GetWorkspaceTagsResponse);\n",
        "",
    );
    edit(agent, "message GetWorkspaceTagsRequest {}\n\nmessage GetWorkspaceTagsResponse {\n\tmap<string, string> tags = 1;\n}\n\n", "");
    edit(
        "tailnet/proto/tailnet.proto",
        "string display_name = 4;",
        "string region_name = 4;",
    );
    let go = "tailnet/proto/version.go";
    edit(go, "//   - Shipped in Coder v2.32.0\n", "");
    edit(
        go,
        "// API v2.12:\n//   - Shipped in Coder v2.33.0\n//   - Agent API: new GetWorkspaceTags RPC\n//\n",
        "",
    );
    edit(go, "CurrentMinor = 12", "CurrentMinor = 11");
    edit(
        "codersdk/agentsdk/agentsdk.go",
        "\t\t\"/api/v2/workspaceagents/me/experimental/widgets/sync\",\n",
        "\t\t\"/api/v2/users/me/widgets\",\n",
    );
    edit(
        "codersdk/agentsdk/agentsdk.go",
        "http.MethodPost, \"/api/v2/workspaceagents/me/heartbeat\"",
        "http.MethodPost, \"/api/v2/users/me/heartbeat\"",
    );
    let swagger = copy.join("coderd/apidoc/swagger.json");
    let mut d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&swagger).unwrap()).unwrap();
    let paths = d["paths"].as_object_mut().unwrap();
    paths.remove("/workspaceagents/me/heartbeat");
    let params = paths["/workspaceagents/me/external-auth"]["get"]["parameters"]
        .as_array_mut()
        .unwrap();
    params.retain(|p| p["name"] != "scope");
    let responses = paths["/workspaceagents/me/log-source"]["post"]["responses"]
        .as_object_mut()
        .unwrap();
    let ok = responses.remove("200").unwrap();
    responses.insert("201".into(), ok);
    let defs = d["definitions"].as_object_mut().unwrap();
    defs["fake.GitSSHKey"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("key_type");
    defs["fake.ExternalAuthResponse"]["properties"]["password"] = serde_json::json!({"type": "string"});
    defs["fake.PostLogSourceRequest"]["properties"]["icon"] = serde_json::json!({"type": "string"});
    defs["fake.ReinitializationEvent"]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("owner_id");
    let paths = d["paths"].as_object_mut().unwrap();
    paths["/workspaceagents/me/app-status"]["patch"]
        .as_object_mut()
        .unwrap()
        .remove("deprecated");
    std::fs::write(&swagger, serde_json::to_string_pretty(&d).unwrap()).unwrap();
}

#[test]
fn a_checkout_differing_only_in_known_ways_exits_0_and_shows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("coder");
    unplanted(&copy);
    // The spec without the stale entry.
    let spec = tmp.path().join("spec");
    copy_dir(&fake_spec(), &spec);
    let toml = spec.join("upstream.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let cut = text.find("# Matches nothing").unwrap();
    std::fs::write(&toml, &text[..cut]).unwrap();

    let out = upstream_with_spec(&copy, &spec, "json");
    let v = json(&out);
    assert_eq!(
        v["changes"],
        serde_json::json!([]),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        v["counts"],
        serde_json::json!({"real": 0, "known": 1, "out_of_scope": 0, "stale": 0})
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&upstream_with_spec(&copy, &spec, "text").stdout).into_owned();
    assert!(text.contains("  nothing differs\n"), "{text}");
    assert!(
        text.contains("0 differences, 1 known, 0 out of scope, 0 stale.\n"),
        "{text}"
    );
}

#[test]
fn stale_known_entries_alone_exit_1() {
    // Upstream fixed the `id` annotation too: both entries now match nothing.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path();
    unplanted(copy);
    let swagger = copy.join("coderd/apidoc/swagger.json");
    let text = std::fs::read_to_string(&swagger).unwrap();
    let mut d: serde_json::Value = serde_json::from_str(&text).unwrap();
    for p in d["paths"]["/workspaceagents/me/external-auth"]["get"]["parameters"]
        .as_array_mut()
        .unwrap()
    {
        p.as_object_mut().unwrap().remove("required");
    }
    std::fs::write(&swagger, serde_json::to_string_pretty(&d).unwrap()).unwrap();
    let out = upstream(copy, "json");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(
        v["counts"],
        serde_json::json!({"real": 0, "known": 0, "out_of_scope": 0, "stale": 2})
    );
}

/// fake-spec/ with `extra` appended to its upstream.toml, in `dir`.
fn spec_with(dir: &Path, extra: &str) -> PathBuf {
    let spec = dir.join("spec");
    copy_dir(&fake_spec(), &spec);
    let toml = spec.join("upstream.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("{text}\n{extra}")).unwrap();
    spec
}

#[test]
fn out_of_scope_entries_set_upstream_additions_apart_and_go_stale_on_anything_else() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = |path: &str, detail: &str| {
        format!(
            "[[out-of-scope]]\narea = \"openapi\"\npath = \"{path}\"\ndetail = \"{detail}\"\n\
             why = \"Planted: a legacy alias the SDK does not call.\"\n\
             evidence = [\"coderd/apidoc/swagger.json:1 @ 0000000 (fixture)\"]\n"
        )
    };
    let heartbeat = entry(
        "POST /api/v2/workspaceagents/me/heartbeat",
        "endpoint missing from spec/openapi.yaml",
    );
    // Upstream changed it (a `changed` difference): not something to leave out.
    let status = entry(
        "POST /api/v2/workspaceagents/me/log-source",
        "success status: spec 201, upstream 200",
    );
    let spec = spec_with(tmp.path(), &format!("{heartbeat}\n{status}"));
    let out = upstream_with_spec(&fixture(), &spec, "json");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(
        items(&v["out_of_scope"]),
        [(
            "openapi".to_owned(),
            "added".to_owned(),
            "POST /api/v2/workspaceagents/me/heartbeat".to_owned(),
            "endpoint missing from spec/openapi.yaml".to_owned(),
        )]
    );
    assert!(v["out_of_scope"][0]["why"].as_str().unwrap().starts_with("Planted"));
    let changes = items(&v["changes"]);
    assert!(
        !changes.iter().any(|c| c.2.ends_with("/heartbeat")),
        "set apart, not a change"
    );
    assert!(
        changes.iter().any(|c| c.3 == "success status: spec 201, upstream 200"),
        "out-of-scope never explains a changed item"
    );
    let stale: Vec<&str> = v["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        stale,
        [
            "GET /api/v2/workspaceagents/me/gitsshkey response.algorithm",
            "POST /api/v2/workspaceagents/me/log-source"
        ]
    );
    assert_eq!(
        v["counts"],
        serde_json::json!({"real": 18, "known": 1, "out_of_scope": 1, "stale": 2})
    );
    let text = String::from_utf8_lossy(&upstream_with_spec(&fixture(), &spec, "text").stdout).into_owned();
    assert!(
        text.contains("- out-of-scope rest     POST /api/v2/workspaceagents/me/heartbeat: endpoint missing from spec/openapi.yaml (upstream has, spec/ lacks); Planted"),
        "{text}"
    );
    assert!(
        text.contains("18 differences, 1 known, 1 out of scope, 2 stale."),
        "{text}"
    );
}

#[test]
fn an_out_of_scope_entry_without_evidence_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = spec_with(
        tmp.path(),
        "[[out-of-scope]]\narea = \"openapi\"\npath = \"POST /api/v2/workspaceagents/me/heartbeat\"\n\
         detail = \"endpoint missing from spec/openapi.yaml\"\nwhy = \"legacy\"\nevidence = []\n",
    );
    let out = upstream_with_spec(&fixture(), &spec, "text");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no `evidence`"));
}

#[test]
fn routes_only_the_go_client_calls_count_as_upstream_routes() {
    let v = json(&upstream(&fixture(), "json"));
    let changes = items(&v["changes"]);
    // fake-spec/ has the rpc route, the fake swagger.json skips it, the fake client dials it.
    assert!(
        !changes.iter().any(|c| c.2.contains("/me/rpc")),
        "a spec/ route the Go client calls is upstream's: {changes:?}"
    );
    // Called by the client and documented in swagger.json: reported once, from swagger.
    let heartbeat: Vec<_> = changes.iter().filter(|c| c.2.ends_with("/me/heartbeat")).collect();
    assert_eq!(heartbeat.len(), 1, "{heartbeat:?}");
    assert_eq!(heartbeat[0].3, "endpoint missing from spec/openapi.yaml");
    // Commented-out and non-agent calls are not routes.
    assert!(!changes
        .iter()
        .any(|c| c.2.starts_with("DELETE ") || c.2.contains("/users/me")));
    assert_eq!(v["notes"], serde_json::json!([]));
}

#[test]
fn a_checkout_without_agentsdk_go_skips_the_client_routes_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());
    std::fs::remove_file(tmp.path().join("codersdk/agentsdk/agentsdk.go")).unwrap();
    let out = upstream(tmp.path(), "json");
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(
        v["notes"],
        serde_json::json!([
            "codersdk/agentsdk/agentsdk.go is missing: the routes upstream's Go client calls were not compared"
        ])
    );
    let changes = items(&v["changes"]);
    assert!(!changes.iter().any(|c| c.2.contains("/widgets/")), "{changes:?}");
    assert!(
        changes.contains(&(
            "openapi".to_owned(),
            "removed".to_owned(),
            "GET /api/v2/workspaceagents/me/rpc".to_owned(),
            "endpoint not in upstream's swagger.json".to_owned(),
        )),
        "without the client nothing vouches for the route swagger skips: {changes:?}"
    );
    let text = String::from_utf8_lossy(&upstream(tmp.path(), "text").stdout).into_owned();
    assert!(
        text.contains(
            "Note: codersdk/agentsdk/agentsdk.go is missing: the routes upstream's Go client calls were not compared\n"
        ),
        "{text}"
    );
}

#[test]
fn an_agentsdk_go_the_scanner_finds_no_route_in_gets_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());
    std::fs::write(
        tmp.path().join("codersdk/agentsdk/agentsdk.go"),
        "package agentsdk\n\nfunc (c *Client) Do(ctx context.Context) error { return c.call(ctx, routeTable[0]) }\n",
    )
    .unwrap();
    let v = json(&upstream(tmp.path(), "json"));
    assert_eq!(
        v["notes"],
        serde_json::json!([
            "codersdk/agentsdk/agentsdk.go: the scanner found no agent route in it; its calls were not compared"
        ])
    );
}

#[test]
fn a_directory_that_is_not_a_checkout_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = upstream(tmp.path(), "text");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Coder checkout"));
}
