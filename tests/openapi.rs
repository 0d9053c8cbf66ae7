//! The API description (issue 15): `GET /keyport/v1/openapi.json` answers any authenticated
//! caller with the OpenAPI 3.1 document; router 404/405s come in each face's error shape on the
//! live daemon; and schemathesis (scripts/deps installs it in /opt/keyport-test/schemathesis)
//! drives every documented operation over loopback HTTPS as an admin: no 5xx, and every
//! response matches the document.

mod common;

use common::{require, surface, Daemon};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const SCHEMATHESIS: &str = "/opt/keyport-test/schemathesis/bin/schemathesis";

#[test]
fn the_document_is_served_to_authenticated_callers_only() {
    require("curl");
    let d = surface::daemon("\"read\"", None);
    let (s, v) = d.curl("GET", "/keyport/v1/openapi.json", None, &[]);
    assert_eq!(s, 200, "{v}");
    assert!(v["openapi"].as_str().unwrap().starts_with("3.1"), "{}", v["openapi"]);
    assert!(v["paths"]["/v3/{project_id}/keypairs"]["post"].is_object());
    let (s, v) = d.curl_https("GET", "/keyport/v1/openapi.json", None, &["-H", "X-Api-Key: key-read"]);
    assert_eq!(s, 200, "any principal may read it: {v}");
    let (s, v) = d.curl_https("GET", "/keyport/v1/openapi.json", None, &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthenticated")), "{v}");
    let (s, _) = d.curl_https("GET", "/keyport/v1/openapi.json", None, &["-H", "X-Api-Key: wrong"]);
    assert_eq!(s, 401);
}

/// (path that no route takes, a route, a method it does not take, where the message is).
const FACES: [(&str, &str, &str, &str); 6] = [
    ("/keyport/v1/nope", "/keyport/v1/health", "PUT", "/error/message"),
    ("/v1/nope", "/v1/useraccounts", "DELETE", "/errors/0/message"),
    ("/iot/api/v1/nope", "/iot/api/v1/certificate-import/job/1", "DELETE", "/errors/0/message"),
    ("/v3/p/nope", "/v3/p/running-tasks", "PUT", "/error_msg"),
    ("/apiops/projects/p/nope/x/y", "/apiops/projects/p/keys/", "PATCH", "/resultMessage"),
    ("/vedsdk/nope", "/vedsdk/SystemStatus/Version", "DELETE", "/Error"),
];

#[test]
fn router_404_and_405_come_in_each_faces_error_shape() {
    require("curl");
    let d = surface::daemon("\"read\"", None);
    for (missing, route, method, msg) in FACES {
        for https in [false, true] {
            let get = |m: &str, p: &str| {
                let auth = ["-H", "X-Api-Key: key-superadmin"];
                if https {
                    d.curl_https(m, p, None, &auth)
                } else {
                    d.curl(m, p, None, &[])
                }
            };
            let (s, v) = get("GET", missing);
            assert_eq!(s, 404, "{missing}: {v}");
            let m = v.pointer(msg).and_then(Value::as_str).unwrap_or_else(|| panic!("{missing}: not the face's shape: {v}"));
            assert!(m.contains("no route") || m.contains("not a WebSDK method"), "{missing}: {v}");
            let (s, v) = get(method, route);
            // TPP answers a method it does not serve as it does an unknown path (404).
            let want = if route.starts_with("/vedsdk") { 404 } else { 405 };
            assert_eq!(s, want, "{method} {route}: {v}");
            assert!(v.pointer(msg).and_then(Value::as_str).is_some(), "{method} {route}: not the face's shape: {v}");
        }
    }
    // A query string the extractor cannot read is a 400 in the face's shape, not axum's text.
    let (s, v) = d.curl("GET", "/keyport/v1/keys?bogus=1", None, &[]);
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_request")), "{v}");
}

#[test]
fn schemathesis_finds_no_5xx_and_no_response_outside_the_document() {
    require("curl");
    assert!(std::path::Path::new(SCHEMATHESIS).exists(), "schemathesis is required (scripts/deps installs it in /opt/keyport-test)");
    let d = surface::daemon("\"read\"", None);
    // Something to find: a key in alpha.
    let (s, v) = d.curl("POST", "/keyport/v1/keys", Some(r#"{"name":"st-key","namespace":"alpha","algorithm":"ec-p256"}"#), &[]);
    assert_eq!(s, 201, "{v}");
    let spec = d.dir.path().join("openapi.json");
    let (s, mut doc) = d.curl("GET", "/keyport/v1/openapi.json", None, &[]);
    assert_eq!(s, 200);
    // Project and profile ids are configuration: pin them, so the calls reach the handlers.
    pin_parameter(&mut doc, "project_id", surface::KPS_PROJECT);
    pin_parameter(&mut doc, "project", surface::APIOPS_PROJECT);
    pin_parameter(&mut doc, "enrollment_profile_id", "alpha-pem");
    std::fs::write(&spec, doc.to_string()).unwrap();
    // TPP's calls take its own bearer token.
    let (s, v) = d.curl(
        "POST",
        "/vedauth/authorize/oauth",
        Some(&serde_json::json!({"client_id": "st", "username": "tppadmin", "password": surface::TPP_PASSWORD, "scope": "ssh:manage,discover"}).to_string()),
        &[],
    );
    assert_eq!(s, 200, "{v}");
    let bearer = format!("Authorization: Bearer {}", v["access_token"].as_str().unwrap());
    let started = Instant::now();
    // Every credential header the document names is set (all naming the admin), so schemathesis
    // does not make up values for them: a header value with control characters is refused by
    // the HTTP parser itself (a bare 400, before any face is known).
    let admin: Vec<String> = ["X-Api-Key", "tppl-api-key", "X-Auth-Token"]
        .iter()
        .map(|h| format!("{h}: key-superadmin"))
        .chain(["Authorization: Bearer key-superadmin".to_string()])
        .collect();
    for (include, exclude, headers) in [("", "^/ved", admin), ("^/ved", "", vec![bearer.clone()])] {
        let mut c = Command::new(SCHEMATHESIS);
        // Hypothesis keeps its example database in the working folder: the test's, not the repo.
        c.current_dir(d.dir.path());
        c.args(["run"]).arg(&spec).args(["--base-url", &format!("https://127.0.0.1:{}", d.port)]);
        c.arg(format!("--request-tls-verify={}", d.dir.path().join("state/tls-cert.pem").display()));
        for h in &headers {
            c.args(["-H", h]);
        }
        if !include.is_empty() {
            c.args(["--include-path-regex", include]);
        }
        if !exclude.is_empty() {
            c.args(["--exclude-path-regex", exclude]);
        }
        c.args(["--experimental=openapi-3.1", "--checks", "not_a_server_error,response_schema_conformance"]);
        c.args(["--hypothesis-max-examples", "8", "--hypothesis-derandomize", "--hypothesis-deadline", "None"]);
        c.args(["--no-color", "--show-trace", "--request-timeout", "20000", "--sanitize-output=false"]);
        let out = c.output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", text.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
        assert!(out.status.success(), "schemathesis found problems:\n{text}\n--- daemon log tail ---\n{}", tail(&d));
        assert!(text.contains(" passed"), "{text}");
    }
    eprintln!("schemathesis took {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(240), "the run is meant to fit a CI budget: {:?}", started.elapsed());
}

/// Every path parameter called `name` takes only `value` in the copy schemathesis reads.
fn pin_parameter(doc: &mut Value, name: &str, value: &str) {
    for ops in doc["paths"].as_object_mut().unwrap().values_mut() {
        for op in ops.as_object_mut().unwrap().values_mut() {
            for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if p["name"] == name && p["in"] == "path" {
                    p["schema"] = serde_json::json!({"type": "string", "enum": [value]});
                }
            }
        }
    }
}

fn tail(d: &Daemon) -> String {
    let log = d.log();
    log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}
