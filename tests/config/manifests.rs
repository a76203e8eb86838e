//! deploy/kubernetes/: every manifest validates against the Kubernetes schemas offline
//! (`python3 -m kubernetes_validate --strict`, installed by `.ci/deps`; a broken manifest
//! is refused, so the check can fail), the kustomization lists every file in the
//! directory, and the server's Deployment keeps what running it safely needs: the probes
//! on /healthz and /readyz, a termination grace longer than the drain, a non-root,
//! read-only, unprivileged container with measured resources, secrets from the Secret.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bitrix24_task_results_mcp::transport::http::DRAIN_TIMEOUT;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every file of the directory, by name.
fn files() -> BTreeSet<String> {
    std::fs::read_dir(dir())
        .expect("deploy/kubernetes exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// python3 with kubernetes-validate (and so PyYAML); fails, never skips, without it.
fn python() -> Command {
    let probe = Command::new("python3")
        .args(["-c", "import kubernetes_validate, yaml"])
        .output();
    match probe {
        Ok(out) if out.status.success() => Command::new("python3"),
        _ => panic!(
            "python3 with the kubernetes-validate package is needed to check deploy/kubernetes/: \
             run .ci/deps (python3 -m pip install --user kubernetes-validate)"
        ),
    }
}

/// The YAML documents of a file, as JSON.
fn documents(name: &str) -> Vec<Value> {
    let out = python()
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(dir().join(name))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{name} is not YAML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs the validator on `paths`: success, and what it said.
fn validate(paths: &[PathBuf]) -> (bool, String) {
    let out = python()
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(paths)
        .output()
        .expect("run kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn manifests() -> Vec<String> {
    files()
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect()
}

#[test]
fn every_manifest_validates_and_a_broken_one_does_not() {
    let paths: Vec<PathBuf> = manifests().iter().map(|f| dir().join(f)).collect();
    assert!(paths.len() >= 6, "{paths:?}");
    let (ok, said) = validate(&paths);
    assert!(ok, "kubernetes-validate refused a manifest:\n{said}");
    // Each file is reported as passed, so none was skipped as unknown.
    for name in manifests() {
        assert!(said.contains(&format!("{name} passed")), "{name}: {said}");
    }

    // The control: a field of the wrong type and one that does not exist are refused.
    let broken = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(dir().join("deployment.yaml"))
        .unwrap()
        .replace("replicas: 2", "replicas: two\n  replica: 2");
    let path = broken.path().join("deployment.yaml");
    std::fs::write(&path, text).unwrap();
    let (ok, said) = validate(&[path]);
    assert!(!ok, "a broken Deployment passed:\n{said}");
}

#[test]
fn the_kustomization_lists_every_file_and_nothing_else() {
    let kustomization = documents("kustomization.yaml").remove(0);
    assert_eq!(kustomization["kind"], "Kustomization");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = manifests().into_iter().collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml and the directory differ"
    );
}

/// The documents of every manifest, by kind and name.
fn object(kind: &str, name: &str) -> Value {
    manifests()
        .iter()
        .flat_map(|f| documents(f))
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn the_server_deployment_is_safe_to_run_and_to_stop() {
    let deployment = object("Deployment", "bitrix24-mcp");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let server = &containers[0];

    // Probes: liveness is /healthz, readiness /readyz, on the MCP port.
    assert_eq!(server["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(server["readinessProbe"]["httpGet"]["path"], "/readyz");
    // /readyz may take a second per dependency.
    assert!(server["readinessProbe"]["timeoutSeconds"].as_u64().unwrap() >= 2);

    // The grace outlasts the drain, the wait for calls in flight and the close.
    let drain: u64 = env(server, "MCP_DRAIN_SECONDS").expect("MCP_DRAIN_SECONDS")["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(drain > 0);
    let grace = Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap());
    assert!(
        grace > Duration::from_secs(drain) + DRAIN_TIMEOUT,
        "terminationGracePeriodSeconds {grace:?} must exceed the drain ({drain} s) and the \
         wait for calls in flight ({DRAIN_TIMEOUT:?})"
    );

    // Non-root, no privilege, nothing writable but /tmp, the default seccomp profile.
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        spec["securityContext"]["runAsUser"], 10001,
        "the Dockerfile's user"
    );
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &server["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for bound in ["requests", "limits"] {
        for what in ["cpu", "memory"] {
            assert!(
                server["resources"][bound][what].is_string(),
                "resources.{bound}.{what}"
            );
        }
    }

    // A team server: sign-in, on every address, with a Redis store.
    let args: Vec<&str> = server["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for wanted in [["--transport", "http"], ["--listen", "0.0.0.0:8000"]] {
        assert!(args.windows(2).any(|w| w == wanted), "{args:?}");
    }
    assert!(args.contains(&"--oauth"), "{args:?}");
    let config = object("ConfigMap", "bitrix24-mcp-config");
    assert!(
        config["data"]["MCP_PUBLIC_URL"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    assert!(config["data"]["MCP_ALLOWED_HOSTS"].is_string());

    // Every secret comes from the Secret, which holds each key referred to.
    let secret = object("Secret", "bitrix24-mcp-secrets");
    for name in [
        "MCP_STORE_KEY",
        "BITRIX24_CLIENT_ID",
        "BITRIX24_CLIENT_SECRET",
        "MCP_STORE",
    ] {
        let from =
            &env(server, name).unwrap_or_else(|| panic!("{name}"))["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "bitrix24-mcp-secrets", "{name}");
        assert!(
            secret["stringData"][from["key"].as_str().unwrap()].is_string(),
            "{name}"
        );
        assert!(config["data"][name].is_null(), "{name} is in the ConfigMap");
    }
    assert!(
        secret["stringData"]["MCP_STORE"]
            .as_str()
            .unwrap()
            .starts_with("redis://bitrix24-mcp-redis:"),
        "the store is the Redis of redis.yaml"
    );

    // Metrics: scraped on their own port, which the Service does not expose.
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let ports = server["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 9464)
    );
    assert!(
        args.windows(2)
            .any(|w| w == ["--metrics-listen", "0.0.0.0:9464"]),
        "{args:?}"
    );
    let service = object("Service", "bitrix24-mcp");
    let exposed: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        exposed
            .iter()
            .all(|p| p["targetPort"] == "http" || p["targetPort"] == 8000),
        "{exposed:?}"
    );

    let budget = object("PodDisruptionBudget", "bitrix24-mcp");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn redis_runs_unprivileged_too() {
    let redis = object("Deployment", "bitrix24-mcp-redis");
    let spec = &redis["spec"]["template"]["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let sc = &spec["containers"][0]["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    object("Service", "bitrix24-mcp-redis");
}
