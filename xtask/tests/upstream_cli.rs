//! `cargo xtask upstream` on the fake Coder checkout in `tests/fixtures/fake-coder`
//! (see its PLANTED.md): it reports the planted differences and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-coder")
}

fn upstream(coder: &Path, format: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["upstream", "--coder"])
        .arg(coder)
        .args(["--format", format, "--spec"])
        .arg(workspace().join("spec"))
        .output()
        .unwrap()
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
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["area"].as_str().unwrap().to_owned(),
                c["path"].as_str().unwrap().to_owned(),
                c["detail"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: &[(&str, &str, &str)] = &[
        ("proto", "coder.agent.v2.Agent.GetWorkspaceTags", "RPC added"),
        ("proto", "coder.agent.v2.GetWorkspaceTagsRequest", "message added"),
        ("proto", "coder.agent.v2.GetWorkspaceTagsResponse", "message added"),
        (
            "proto",
            "coder.agent.v2.Manifest.dotfiles_uri",
            "field 20 (string) added",
        ),
        (
            "proto",
            "coder.agent.v2.WorkspaceApp.SharingLevel.GROUP",
            "enum value 5 added",
        ),
        (
            "proto",
            "coder.tailnet.v2.DERPMap.Region.display_name",
            "field 4 renamed from region_name",
        ),
        ("versions", "versions.2.11", "release v2.32.0 not recorded"),
        (
            "versions",
            "versions.2.14",
            "version missing from spec/versions.toml (shipped in v2.33.0)",
        ),
        (
            "versions",
            "versions.GetWorkspaceTags",
            "upstream's history adds it in v2.14; spec/versions.toml does not list it",
        ),
        (
            "versions",
            "versions.current",
            "newest version: spec 2.13, upstream CurrentVersion 2.14",
        ),
        (
            "openapi",
            "GET /api/v2/workspaceagents/me/external-auth query:scope",
            "optional parameter (string) missing from spec",
        ),
        (
            "openapi",
            "GET /api/v2/workspaceagents/me/external-auth response.password",
            "response property not upstream",
        ),
        (
            "openapi",
            "GET /api/v2/workspaceagents/me/gitsshkey response.key_type",
            "response property (string) missing from spec",
        ),
        (
            "openapi",
            "POST /api/v2/workspaceagents/me/heartbeat",
            "endpoint missing from spec/openapi.yaml",
        ),
        (
            "openapi",
            "POST /api/v2/workspaceagents/me/log-source",
            "success status: spec 201, upstream 200",
        ),
        (
            "openapi",
            "POST /api/v2/workspaceagents/me/log-source request.icon",
            "type: spec string, upstream integer",
        ),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, p, d)| (a.to_string(), p.to_string(), d.to_string()))
        .collect();
    assert_eq!(got, want);
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
    assert!(text.contains("16 differences."), "{text}");
    assert!(
        !text.contains("/users/me"),
        "non-agent endpoints are out of scope: {text}"
    );
}

#[test]
fn a_checkout_equal_to_spec_reports_nothing_and_exits_0() {
    // Undo every plant on a copy: the fixture then carries exactly spec/'s facts.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path();
    for f in [
        "agent/proto/agent.proto",
        "tailnet/proto/tailnet.proto",
        "tailnet/proto/version.go",
        "coderd/apidoc/swagger.json",
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
        "// API v2.14:\n//   - Shipped in Coder v2.33.0\n//   - Agent API: new GetWorkspaceTags RPC\n//\n",
        "",
    );
    edit(go, "CurrentMinor = 14", "CurrentMinor = 13");
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
    std::fs::write(&swagger, serde_json::to_string_pretty(&d).unwrap()).unwrap();

    let out = upstream(copy, "json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["changes"],
        serde_json::json!([]),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.status.success());
}

#[test]
fn a_directory_that_is_not_a_checkout_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = upstream(tmp.path(), "text");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a Coder checkout"));
}
