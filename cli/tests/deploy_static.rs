//! Static checks of the deployment files, which no cluster or init system runs here.
//!
//! **Kubernetes** (`deploy/kubernetes`):
//! - every manifest passes `kubernetes-validate --strict` against the oldest and the
//!   newest Kubernetes release we support: a misspelt or unknown field, a wrong type, a
//!   missing required field fail, and so does a kind or `apiVersion` it has no schema for
//!   (the tool only warns about those; a warning fails here);
//! - `kustomization.yaml` (not a Kubernetes object) lists every manifest except the Secret
//!   template, and its namespace is the Namespace object's;
//! - what a schema cannot see: each container runs as the image's non-root user with a
//!   read-only root, no privilege escalation, no capabilities and the runtime's seccomp
//!   profile; readiness asks `/readyz`, liveness and startup `/healthz`, on the operations
//!   port that Prometheus is told to scrape; the orderers have a PodDisruptionBudget that
//!   lets one go at a time, start in parallel, and are published to each other before they
//!   are ready (raft elects its leader over those links); ledgers live on claims that are
//!   kept; Services and network rules name pods and ports that exist;
//! - each node's config, as each pod sees it (the ConfigMap plus the StatefulSet's `ORDO_`
//!   variables), loads with the node's own parser, listens on every interface at the
//!   ports the pod declares, keeps data on its volume, runs mutual TLS, reads its keys from
//!   files the mounted Secret holds, and drains well within the termination grace period.
//!
//! **systemd** (`deploy/systemd`): both units pass `systemd-analyze verify` with nothing to
//! say about them (it exits 0 on unknown keys and bad values, so any complaint fails
//! here), and, where the installed systemd can rate a unit file offline (v250 and later),
//! `systemd-analyze security` rates them at most [`EXPOSURE_MAX`].
//!
//! Every check is shown to fail: the tests feed each one broken copies of the real files
//! and expect the breakage named.
//!
//! Tools: `python3 -m kubernetes_validate` (PyPI `kubernetes-validate`, version
//! [`KUBERNETES_VALIDATE`]; it brings PyYAML, which also reads the manifests for the
//! property checks) and `systemd-analyze` (Debian's `systemd` package). `.ci/run` installs
//! both. Without them the tests fail and say how to install them;
//! `ORDO_SKIP_KUBERNETES_VALIDATE=1` and `ORDO_SKIP_SYSTEMD_ANALYZE=1` skip them on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ordo_orderer::OrdererConfig;
use ordo_peer::node::config::PeerConfig;
use serde_json::{json, Value};

/// The kubernetes-validate release (and so the schemas) the manifests are checked with.
const KUBERNETES_VALIDATE: &str = "1.37.0";
/// The oldest and the newest Kubernetes release the manifests must be valid for.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29", "1.37"];
/// The kustomize file: not a Kubernetes object.
const KUSTOMIZATION: &str = "kustomization.yaml";
/// The Secret template, left out of the kustomization on purpose (applying it would
/// replace real keys with placeholders).
const SECRET_TEMPLATE: &str = "secrets.template.yaml";
/// The image's user and group (`deploy/docker/Dockerfile`).
const ORDO_UID: i64 = 10001;
/// Where every node keeps its ledgers: the image's volume.
const DATA_DIR: &str = "/var/lib/ordo";
/// Seconds a pod's termination grace period must leave beyond the node's drain timeout
/// (closing the ledgers after the streams end).
const GRACE_MARGIN_S: u64 = 10;
/// Highest `systemd-analyze security` exposure accepted, in its tenths ("OK" is below
/// 4.0; the units rate 1.2 with systemd 252).
const EXPOSURE_MAX: u32 = 20;

/// Reads YAML documents as JSON with PyYAML, refusing a key given twice in one mapping
/// (PyYAML and the validator silently keep the last one; the API server refuses it).
const YAML_TO_JSON: &str = r#"
import json, sys
import yaml

class Loader(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)

Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
try:
    with open(sys.argv[1]) as f:
        docs = [d for d in yaml.load_all(f, Loader=Loader) if d is not None]
except yaml.YAMLError as e:
    sys.exit(str(e))
json.dump(docs, sys.stdout)
"#;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the workspace")
        .to_path_buf()
}

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

/// Every YAML file in `deploy/kubernetes` but the kustomization, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(kubernetes_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let name = file_name(p);
            (name.ends_with(".yaml") || name.ends_with(".yml")) && name != KUSTOMIZATION
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in deploy/kubernetes");
    files
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 file name")
        .to_string()
}

/// Whether a check skipped by `var=1` may run.
fn not_skipped(var: &str, what: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        eprintln!("{var}=1: not {what}");
        return false;
    }
    true
}

/// Whether the Kubernetes checks may run: `false` when skipped on purpose; panics, naming
/// the package to install, when kubernetes-validate (at the pinned version) is missing.
fn kubernetes_validate_available() -> bool {
    if !not_skipped(
        "ORDO_SKIP_KUBERNETES_VALIDATE",
        "checking the Kubernetes manifests",
    ) {
        return false;
    }
    let version = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    assert_eq!(
        version.as_deref(),
        Some(KUBERNETES_VALIDATE),
        "kubernetes-validate {KUBERNETES_VALIDATE} not found (`python3 -m kubernetes_validate \
         --version`): install it with `python3 -m pip install \
         kubernetes-validate=={KUBERNETES_VALIDATE}` (.ci/run does), or set \
         ORDO_SKIP_KUBERNETES_VALIDATE=1 to skip these checks"
    );
    true
}

/// `kubernetes-validate --strict` over `files` for each supported release: whether they
/// passed, and what it said. With `--quiet` it prints only warnings and errors, and a
/// warning ("Couldn't find schema for kind ...") means an object went unchecked, so
/// passing is exit 0 and silence.
fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "kubernetes_validate", "--strict", "--quiet"]);
    for v in KUBERNETES_VERSIONS {
        cmd.args(["-k", v]);
    }
    let out = cmd.args(files).output().expect("python3 runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

/// The YAML documents of `path` as JSON values (empty documents left out).
fn yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
    let out = Command::new("python3")
        .args(["-c", YAML_TO_JSON])
        .arg(path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{}: {e}", path.display()))
}

/// One Kubernetes object and the file it came from.
#[derive(Clone)]
struct Doc {
    file: String,
    value: Value,
}

/// Every object of every manifest (the Secret template included), and the namespace the
/// kustomization puts them in.
fn load_manifests() -> (Vec<Doc>, String) {
    let mut docs = Vec::new();
    for path in manifest_files() {
        let file = file_name(&path);
        for value in yaml_documents(&path).unwrap_or_else(|e| panic!("{e}")) {
            docs.push(Doc {
                file: file.clone(),
                value,
            });
        }
    }
    let kustomization =
        yaml_documents(&kubernetes_dir().join(KUSTOMIZATION)).unwrap_or_else(|e| panic!("{e}"));
    let namespace = kustomization
        .first()
        .and_then(|k| k["namespace"].as_str())
        .expect("kustomization.yaml sets a namespace")
        .to_string();
    (docs, namespace)
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn is_workload(v: &Value) -> bool {
    matches!(kind(v), "StatefulSet" | "Deployment" | "DaemonSet")
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The label sets of a workload's pods: a StatefulSet's pod `i` also carries
/// `statefulset.kubernetes.io/pod-name: <name>-<i>`.
fn pod_label_sets(w: &Value) -> Vec<BTreeMap<String, String>> {
    let labels: BTreeMap<String, String> = w["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    if kind(w) != "StatefulSet" {
        return vec![labels];
    }
    (0..replicas(w))
        .map(|i| {
            let mut l = labels.clone();
            l.insert(
                "statefulset.kubernetes.io/pod-name".into(),
                format!("{}-{i}", name(w)),
            );
            l
        })
        .collect()
}

fn replicas(w: &Value) -> u64 {
    w["spec"]["replicas"].as_u64().unwrap_or(1)
}

/// Whether the label `selector` (a map; empty or missing selects nothing here) matches
/// `labels`.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    match selector.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str()),
        _ => false,
    }
}

/// The workloads with a pod that `selector` matches.
fn selected<'a>(docs: &'a [Doc], selector: &Value) -> Vec<&'a Doc> {
    docs.iter()
        .filter(|d| is_workload(&d.value))
        .filter(|d| {
            pod_label_sets(&d.value)
                .iter()
                .any(|l| selects(selector, l))
        })
        .collect()
}

/// The number of the container port `port` names (a number, or a port's name).
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    let ports = array(&container["ports"]);
    match port {
        Value::Number(n) => n.as_u64().filter(|n| {
            ports
                .iter()
                .any(|p| p["containerPort"].as_u64() == Some(*n))
        }),
        Value::String(s) => ports
            .iter()
            .find(|p| p["name"].as_str() == Some(s.as_str()))
            .and_then(|p| p["containerPort"].as_u64()),
        _ => None,
    }
}

fn containers(pod_spec: &Value) -> impl Iterator<Item = &Value> {
    array(&pod_spec["containers"])
        .iter()
        .chain(array(&pod_spec["initContainers"]))
}

/// Problems with the workloads and the objects around them that a schema cannot see.
fn workload_problems(docs: &[Doc]) -> Vec<String> {
    let mut p = Vec::new();
    let workloads: Vec<&Doc> = docs.iter().filter(|d| is_workload(&d.value)).collect();
    if workloads.is_empty() {
        p.push("no workloads in deploy/kubernetes".to_string());
    }
    for w in workloads {
        let v = &w.value;
        let at = format!("{} {} {}", w.file, kind(v), name(v));
        let template = &v["spec"]["template"];
        let spec = &template["spec"];
        let psc = &spec["securityContext"];
        for field in ["runAsUser", "runAsGroup", "fsGroup"] {
            if psc[field] != json!(ORDO_UID) {
                p.push(format!(
                    "{at}: pod securityContext.{field} is {}, not the image's {ORDO_UID}",
                    psc[field]
                ));
            }
        }
        if psc["seccompProfile"]["type"] != "RuntimeDefault" {
            p.push(format!(
                "{at}: pod securityContext.seccompProfile.type is not RuntimeDefault"
            ));
        }
        if spec["automountServiceAccountToken"] != false {
            p.push(format!(
                "{at}: automountServiceAccountToken is not false (the node needs no API token)"
            ));
        }
        if spec["enableServiceLinks"] != false {
            p.push(format!(
                "{at}: enableServiceLinks is not false (Service links inject variables the \
                 node may read as ORDO_ overrides)"
            ));
        }
        let volumes: BTreeMap<&str, &Value> = array(&spec["volumes"])
            .iter()
            .map(|vol| (vol["name"].as_str().unwrap_or(""), vol))
            .collect();
        for c in containers(spec) {
            let cat = format!("{at} container {}", c["name"].as_str().unwrap_or("?"));
            let csc = &c["securityContext"];
            let non_root = csc["runAsNonRoot"] == true
                || (psc["runAsNonRoot"] == true && csc["runAsNonRoot"].is_null());
            if !non_root {
                p.push(format!("{cat}: runAsNonRoot is not true"));
            }
            if csc["allowPrivilegeEscalation"] != false {
                p.push(format!("{cat}: allowPrivilegeEscalation is not false"));
            }
            if csc["readOnlyRootFilesystem"] != true {
                p.push(format!("{cat}: readOnlyRootFilesystem is not true"));
            }
            if csc["privileged"] == true {
                p.push(format!("{cat}: privileged"));
            }
            if !array(&csc["capabilities"]["drop"])
                .iter()
                .any(|x| x == "ALL")
            {
                p.push(format!("{cat}: capabilities.drop does not hold ALL"));
            }
            for section in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    if c["resources"][section][resource].is_null() {
                        p.push(format!("{cat}: no resources.{section}.{resource}"));
                    }
                }
            }
            let image = c["image"].as_str().unwrap_or("");
            let tag = image
                .rsplit('/')
                .next()
                .and_then(|last| last.split_once(':'))
                .map(|(_, tag)| tag);
            if matches!(tag, None | Some("latest")) {
                p.push(format!("{cat}: image {image:?} has no fixed tag"));
            }
            for m in array(&c["volumeMounts"]) {
                let mount = m["mountPath"].as_str().unwrap_or("?");
                let Some(vol) = volumes.get(m["name"].as_str().unwrap_or("")) else {
                    continue;
                };
                let holds_keys = !vol["secret"].is_null();
                if (holds_keys || !vol["configMap"].is_null()) && m["readOnly"] != true {
                    p.push(format!("{cat}: the mount at {mount} is not readOnly"));
                }
                if holds_keys && !m["subPath"].is_null() {
                    p.push(format!(
                        "{cat}: Secret mounted at {mount} with subPath (renewed keys never \
                         reach the pod)"
                    ));
                }
            }
        }
        // The probes and the scrape, on the main containers' operations port.
        for c in array(&spec["containers"]) {
            let cat = format!("{at} container {}", c["name"].as_str().unwrap_or("?"));
            let Some(ops) = container_port(c, &json!("ops")) else {
                p.push(format!("{cat}: no container port named ops"));
                continue;
            };
            for (probe, path) in [
                ("readinessProbe", "/readyz"),
                ("livenessProbe", "/healthz"),
                ("startupProbe", "/healthz"),
            ] {
                let get = &c[probe]["httpGet"];
                if get["path"] != path {
                    p.push(format!(
                        "{cat}: {probe} does not ask GET {path} (httpGet.path is {})",
                        get["path"]
                    ));
                }
                if container_port(c, &get["port"]) != Some(ops) {
                    p.push(format!(
                        "{cat}: {probe} is not on the operations port {ops} (port {})",
                        get["port"]
                    ));
                }
            }
            let annotations = &template["metadata"]["annotations"];
            for (key, want) in [
                ("prometheus.io/scrape", "true".to_string()),
                ("prometheus.io/path", "/metrics".to_string()),
                ("prometheus.io/port", ops.to_string()),
            ] {
                if annotations[key] != want.as_str() {
                    p.push(format!(
                        "{at}: pod annotation {key} is {}, not {want:?}",
                        annotations[key]
                    ));
                }
            }
        }
        if kind(v) == "StatefulSet" {
            p.extend(statefulset_problems(docs, v, &at));
        }
    }
    p.extend(service_problems(docs));
    p
}

/// A StatefulSet's volume claims, headless Service and (for orderers) disruption budget.
fn statefulset_problems(docs: &[Doc], sts: &Value, at: &str) -> Vec<String> {
    let mut p = Vec::new();
    let spec = &sts["spec"];
    let pod_spec = &spec["template"]["spec"];
    let claims: BTreeSet<&str> = array(&spec["volumeClaimTemplates"])
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let data_on_claim = array(&pod_spec["containers"]).iter().all(|c| {
        array(&c["volumeMounts"]).iter().any(|m| {
            m["mountPath"] == DATA_DIR && claims.contains(m["name"].as_str().unwrap_or(""))
        })
    });
    if !data_on_claim {
        p.push(format!(
            "{at}: {DATA_DIR} is not mounted from a volumeClaimTemplate in every container"
        ));
    }
    let retention = &spec["persistentVolumeClaimRetentionPolicy"];
    if retention["whenDeleted"] != "Retain" || retention["whenScaled"] != "Retain" {
        p.push(format!(
            "{at}: persistentVolumeClaimRetentionPolicy does not Retain the ledgers"
        ));
    }
    if spec["podManagementPolicy"] != "Parallel" {
        p.push(format!(
            "{at}: podManagementPolicy is not Parallel (with OrderedReady, pod 1 waits for \
             pod 0 to be ready, which a raft orderer is only once pod 1 helps elect a leader)"
        ));
    }
    let service_name = spec["serviceName"].as_str().unwrap_or("");
    match docs
        .iter()
        .find(|d| kind(&d.value) == "Service" && name(&d.value) == service_name)
    {
        None => p.push(format!("{at}: serviceName {service_name:?} is no Service")),
        Some(svc) => {
            let s = &svc.value["spec"];
            if s["clusterIP"] != "None" {
                p.push(format!("{at}: Service {service_name} is not headless"));
            }
            if s["publishNotReadyAddresses"] != true {
                p.push(format!(
                    "{at}: Service {service_name} does not set publishNotReadyAddresses \
                     (consenters must find each other before they are ready)"
                ));
            }
            if !pod_label_sets(sts)
                .iter()
                .any(|l| selects(&s["selector"], l))
            {
                p.push(format!(
                    "{at}: Service {service_name} does not select its pods"
                ));
            }
        }
    }
    let role = array(&pod_spec["containers"])
        .first()
        .and_then(|c| array(&c["args"]).first())
        .and_then(Value::as_str)
        .unwrap_or("");
    if role == "orderer" {
        let budgets: Vec<&Doc> = docs
            .iter()
            .filter(|d| kind(&d.value) == "PodDisruptionBudget")
            .filter(|d| {
                pod_label_sets(sts)
                    .iter()
                    .all(|l| selects(&d.value["spec"]["selector"]["matchLabels"], l))
            })
            .collect();
        match budgets.as_slice() {
            [] => p.push(format!("{at}: no PodDisruptionBudget covers the orderers")),
            [pdb] => {
                let s = &pdb.value["spec"];
                if s["maxUnavailable"] != json!(1) || !s["minAvailable"].is_null() {
                    p.push(format!(
                        "{at}: PodDisruptionBudget {} does not keep a raft quorum \
                         (maxUnavailable {}, minAvailable {}; want maxUnavailable 1)",
                        name(&pdb.value),
                        s["maxUnavailable"],
                        s["minAvailable"]
                    ));
                }
            }
            _ => p.push(format!(
                "{at}: more than one PodDisruptionBudget covers the orderers"
            )),
        }
    }
    p
}

/// Services and NetworkPolicies that name pods or ports that do not exist.
fn service_problems(docs: &[Doc]) -> Vec<String> {
    let mut p = Vec::new();
    for d in docs {
        let v = &d.value;
        let at = format!("{} {} {}", d.file, kind(v), name(v));
        match kind(v) {
            "Service" => {
                let pods = selected(docs, &v["spec"]["selector"]);
                if pods.is_empty() {
                    p.push(format!("{at}: selects no pod"));
                    continue;
                }
                for port in array(&v["spec"]["ports"]) {
                    let target = if port["targetPort"].is_null() {
                        &port["port"]
                    } else {
                        &port["targetPort"]
                    };
                    for w in &pods {
                        let found = array(&w.value["spec"]["template"]["spec"]["containers"])
                            .iter()
                            .any(|c| container_port(c, target).is_some());
                        if !found {
                            p.push(format!(
                                "{at}: targetPort {target} is no container port of {}",
                                name(&w.value)
                            ));
                        }
                    }
                }
            }
            "NetworkPolicy" => {
                let pods = selected(docs, &v["spec"]["podSelector"]["matchLabels"]);
                if pods.is_empty() {
                    p.push(format!("{at}: selects no pod"));
                }
                for rule in array(&v["spec"]["ingress"]) {
                    for port in array(&rule["ports"]) {
                        let found = pods.iter().any(|w| {
                            array(&w.value["spec"]["template"]["spec"]["containers"])
                                .iter()
                                .any(|c| container_port(c, &port["port"]).is_some())
                        });
                        if !found {
                            p.push(format!(
                                "{at}: port {} is no container port of the pods it selects",
                                port["port"]
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    p
}

/// A node's config, as far as these checks need it, from either node's parser.
struct Effective {
    name: String,
    listen: SocketAddr,
    ops: SocketAddr,
    data_dir: PathBuf,
    tls_enabled: bool,
    require_client_cert: bool,
    files: Vec<(&'static str, PathBuf)>,
    drain_s: u64,
}

macro_rules! effective {
    ($c:expr) => {{
        let c = $c;
        let mut files = vec![
            ("identity.key_file", c.identity.key_file.clone()),
            ("identity.cert_file", c.identity.cert_file.clone()),
            ("tls.cert_file", c.tls.cert_file.clone()),
            ("tls.key_file", c.tls.key_file.clone()),
        ];
        files.extend(c.tls.ca_files.iter().map(|f| ("tls.ca_files", f.clone())));
        Effective {
            name: c.node.name.clone(),
            listen: c.node.listen_addr,
            ops: c.node.ops_listen_addr,
            data_dir: c.node.data_dir.clone(),
            tls_enabled: c.tls.enabled,
            require_client_cert: c.tls.require_client_cert,
            files,
            drain_s: c.connections.drain_timeout_s,
        }
    }};
}

/// A container's environment in pod `pod_name` of `namespace`, as the kubelet makes it:
/// field references resolved, `$(VAR)` replaced by variables defined before it.
fn pod_env(
    container: &Value,
    pod_name: &str,
    namespace: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in array(&container["env"]) {
        let var = e["name"].as_str().unwrap_or("").to_string();
        let value = if let Some(field) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => pod_name.to_string(),
                "metadata.namespace" => namespace.to_string(),
                other => return Err(format!("{var}: fieldRef {other} not modelled here")),
            }
        } else if !e["valueFrom"].is_null() {
            return Err(format!("{var}: valueFrom not modelled here"));
        } else {
            let mut value = e["value"].as_str().unwrap_or("").to_string();
            for (k, v) in &env {
                value = value.replace(&format!("$({k})"), v);
            }
            value
        };
        env.push((var, value));
    }
    Ok(env)
}

/// Problems with each node's config as each of its pods sees it.
fn config_problems(docs: &[Doc], namespace: &str) -> Vec<String> {
    let mut p = Vec::new();
    let secrets: BTreeMap<&str, BTreeSet<String>> = docs
        .iter()
        .filter(|d| kind(&d.value) == "Secret")
        .map(|d| {
            let keys: BTreeSet<String> = ["data", "stringData"]
                .iter()
                .filter_map(|f| d.value[*f].as_object())
                .flat_map(|m| m.keys().cloned())
                .collect();
            (name(&d.value), keys)
        })
        .collect();
    for w in docs.iter().filter(|d| kind(&d.value) == "StatefulSet") {
        let v = &w.value;
        let at = format!("{} {} {}", w.file, kind(v), name(v));
        let spec = &v["spec"]["template"]["spec"];
        let Some(c) = array(&spec["containers"]).first() else {
            continue;
        };
        let args: Vec<&str> = array(&c["args"]).iter().filter_map(Value::as_str).collect();
        let role = args.first().copied().unwrap_or("");
        let Some(config_path) = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
        else {
            p.push(format!("{at}: the node is not started with --config FILE"));
            continue;
        };
        let volume = |mount: &Value| {
            array(&spec["volumes"])
                .iter()
                .find(|vol| vol["name"] == mount["name"])
                .cloned()
                .unwrap_or(Value::Null)
        };
        let mounts = array(&c["volumeMounts"]);
        let Some(text) = mounts
            .iter()
            .find(|m| m["mountPath"] == *config_path)
            .and_then(|m| {
                let cm = volume(m)["configMap"]["name"].as_str()?.to_string();
                let key = m["subPath"].as_str()?.to_string();
                docs.iter()
                    .find(|d| kind(&d.value) == "ConfigMap" && name(&d.value) == cm)
                    .and_then(|d| d.value["data"][key.as_str()].as_str())
                    .map(str::to_string)
            })
        else {
            p.push(format!(
                "{at}: {config_path} is not a ConfigMap key mounted with subPath"
            ));
            continue;
        };
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        for ordinal in 0..replicas(v) {
            let pod = format!("{}-{ordinal}", name(v));
            let at = format!("{at} pod {pod}");
            let env = match pod_env(c, &pod, namespace) {
                Ok(env) => env,
                Err(e) => {
                    p.push(format!("{at}: {e}"));
                    continue;
                }
            };
            let base = Path::new(config_path).parent().unwrap_or(Path::new("/"));
            let cfg = match role {
                "orderer" => OrdererConfig::parse(&text, &env, base, config_path)
                    .map(|parsed| effective!(&parsed))
                    .map_err(|e| e.to_string()),
                "peer" => PeerConfig::parse(&text, &env, base, config_path)
                    .map(|parsed| effective!(&parsed))
                    .map_err(|e| e.to_string()),
                other => Err(format!("unknown node role {other:?}")),
            };
            let cfg = match cfg {
                Ok(cfg) => cfg,
                Err(e) => {
                    p.push(format!("{at}: the node refuses its config: {e}"));
                    continue;
                }
            };
            let want_name = format!("{namespace}-{pod}");
            if cfg.name != want_name {
                p.push(format!(
                    "{at}: node.name is {:?}, not {want_name:?}",
                    cfg.name
                ));
            }
            for (field, addr, port_name) in [
                ("node.listen_addr", cfg.listen, "grpc"),
                ("node.ops_listen_addr", cfg.ops, "ops"),
            ] {
                let declared = container_port(c, &json!(port_name));
                if !addr.ip().is_unspecified() || declared != Some(u64::from(addr.port())) {
                    p.push(format!(
                        "{at}: {field} is {addr}, not every interface at the {port_name} \
                         container port ({declared:?})"
                    ));
                }
            }
            let data_mounted = mounts.iter().any(|m| {
                m["mountPath"].as_str().map(Path::new) == Some(cfg.data_dir.as_path())
                    && volume(m).is_null()
            });
            if cfg.data_dir != Path::new(DATA_DIR) || !data_mounted {
                p.push(format!(
                    "{at}: node.data_dir {} is not {DATA_DIR} on the pod's volume claim",
                    cfg.data_dir.display()
                ));
            }
            if !cfg.tls_enabled || !cfg.require_client_cert {
                p.push(format!(
                    "{at}: not mutual TLS (tls.enabled {}, tls.require_client_cert {})",
                    cfg.tls_enabled, cfg.require_client_cert
                ));
            }
            if !cfg.files.iter().any(|(f, _)| *f == "tls.ca_files") {
                p.push(format!("{at}: tls.ca_files is empty"));
            }
            for (field, file) in &cfg.files {
                let dir = file.parent().unwrap_or(Path::new("/"));
                let key = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let secret = mounts
                    .iter()
                    .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))
                    .and_then(|m| {
                        volume(m)["secret"]["secretName"]
                            .as_str()
                            .map(str::to_string)
                    });
                match secret {
                    None => p.push(format!(
                        "{at}: {field} {} is in no mounted Secret",
                        file.display()
                    )),
                    Some(s) => match secrets.get(s.as_str()) {
                        None => p.push(format!(
                            "{at}: {field}: Secret {s} is not in {SECRET_TEMPLATE}"
                        )),
                        Some(keys) if !keys.contains(key) => p.push(format!(
                            "{at}: {field}: Secret {s} has no key {key} in {SECRET_TEMPLATE}"
                        )),
                        Some(_) => {}
                    },
                }
            }
            if grace < cfg.drain_s + GRACE_MARGIN_S {
                p.push(format!(
                    "{at}: terminationGracePeriodSeconds {grace} leaves less than \
                     {GRACE_MARGIN_S} s beyond connections.drain_timeout_s {}",
                    cfg.drain_s
                ));
            }
        }
    }
    p
}

fn all_problems(docs: &[Doc], namespace: &str) -> Vec<String> {
    let mut p = workload_problems(docs);
    p.extend(config_problems(docs, namespace));
    p
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate_strict() {
    if !kubernetes_validate_available() {
        return;
    }
    let files = manifest_files();
    let (ok, said) = kubernetes_validate(&files);
    assert!(
        ok,
        "kubernetes-validate --strict ({KUBERNETES_VERSIONS:?}) refused deploy/kubernetes:\n{said}"
    );
}

#[test]
fn kubernetes_validate_refuses_broken_manifests() {
    if !kubernetes_validate_available() {
        return;
    }
    let original =
        std::fs::read_to_string(kubernetes_dir().join("orderer.yaml")).expect("orderer.yaml");
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = tmp.path().join("orderer.yaml");
    let selector = "  selector:\n    matchLabels:\n      app.kubernetes.io/name: ordo\n      \
                    app.kubernetes.io/component: orderer\n  template:";
    for (what, from, to) in [
        ("a misspelt field", "periodSeconds: 10", "periodSecond: 10"),
        ("a wrong type", "replicas: 1\n", "replicas: one\n"),
        ("a missing required field", selector, "  template:"),
        ("a misspelt kind", "kind: StatefulSet", "kind: StatefullSet"),
        (
            "a removed API version",
            "apiVersion: apps/v1\nkind: StatefulSet",
            "apiVersion: apps/v1beta2\nkind: StatefulSet",
        ),
    ] {
        assert!(
            original.contains(from),
            "{what}: orderer.yaml has no {from:?}"
        );
        std::fs::write(&broken, original.replacen(from, to, 1)).expect("write");
        let (ok, said) = kubernetes_validate(std::slice::from_ref(&broken));
        assert!(!ok, "{what} passed kubernetes-validate: {said}");
        eprintln!("{what}: {}", said.lines().next().unwrap_or(""));
    }
}

#[test]
fn kustomization_applies_every_manifest_but_the_secret_template() {
    if !kubernetes_validate_available() {
        return;
    }
    let k = yaml_documents(&kubernetes_dir().join(KUSTOMIZATION)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(k.len(), 1, "one document in {KUSTOMIZATION}");
    let k = &k[0];
    assert_eq!(k["kind"], "Kustomization", "{k}");
    let listed: BTreeSet<String> = array(&k["resources"])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let files: BTreeSet<String> = manifest_files()
        .iter()
        .map(|p| file_name(p.as_path()))
        .filter(|n| n != SECRET_TEMPLATE)
        .collect();
    assert_eq!(
        listed, files,
        "{KUSTOMIZATION} must list every manifest but {SECRET_TEMPLATE}"
    );
    let (docs, namespace) = load_manifests();
    let ns: Vec<&Doc> = docs
        .iter()
        .filter(|d| kind(&d.value) == "Namespace")
        .collect();
    assert_eq!(ns.len(), 1, "one Namespace object");
    assert_eq!(
        name(&ns[0].value),
        namespace,
        "the kustomization's namespace"
    );
    assert_eq!(
        ns[0].value["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "the bank's namespace enforces the restricted Pod Security Standard"
    );
}

#[test]
fn kubernetes_manifests_have_the_properties_a_schema_cannot_check() {
    if !kubernetes_validate_available() {
        return;
    }
    let (docs, namespace) = load_manifests();
    for role in ["orderer", "peer"] {
        assert!(
            docs.iter()
                .any(|d| kind(&d.value) == "StatefulSet" && name(&d.value) == role),
            "a StatefulSet {role}"
        );
    }
    let problems = all_problems(&docs, &namespace);
    assert!(
        problems.is_empty(),
        "deploy/kubernetes:\n{}",
        problems.join("\n")
    );
}

/// A broken copy of the manifests and the problem it must be reported with.
struct Case {
    what: &'static str,
    expect: &'static str,
    mutate: fn(&mut Vec<Doc>),
}

fn case(what: &'static str, expect: &'static str, mutate: fn(&mut Vec<Doc>)) -> Case {
    Case {
        what,
        expect,
        mutate,
    }
}

fn doc_mut<'a>(docs: &'a mut [Doc], kind_: &str, name_: &str) -> &'a mut Value {
    &mut docs
        .iter_mut()
        .find(|d| kind(&d.value) == kind_ && name(&d.value) == name_)
        .unwrap_or_else(|| panic!("no {kind_} {name_}"))
        .value
}

fn orderer_container(docs: &mut [Doc]) -> &mut Value {
    &mut doc_mut(docs, "StatefulSet", "orderer")["spec"]["template"]["spec"]["containers"][0]
}

/// Replaces `from` (which must be there) in the string at `v`.
fn edit_text(v: &mut Value, from: &str, to: &str) {
    let text = v.as_str().expect("a string").to_string();
    assert!(text.contains(from), "no {from:?} in {text}");
    *v = Value::String(text.replacen(from, to, 1));
}

#[test]
fn property_checks_report_broken_manifests() {
    if !kubernetes_validate_available() {
        return;
    }
    let (docs, namespace) = load_manifests();
    let cases = [
        case("a container not forced non-root", "runAsNonRoot", |d| {
            orderer_container(d)["securityContext"]
                .as_object_mut()
                .expect("securityContext")
                .remove("runAsNonRoot");
            doc_mut(d, "StatefulSet", "orderer")["spec"]["template"]["spec"]["securityContext"]
                .as_object_mut()
                .expect("securityContext")
                .remove("runAsNonRoot");
        }),
        case(
            "a writable root filesystem",
            "readOnlyRootFilesystem",
            |d| {
                orderer_container(d)["securityContext"]["readOnlyRootFilesystem"] = json!(false);
            },
        ),
        case(
            "readiness on /healthz",
            "readinessProbe does not ask GET /readyz",
            |d| {
                orderer_container(d)["readinessProbe"]["httpGet"]["path"] = json!("/healthz");
            },
        ),
        case(
            "liveness on /readyz",
            "livenessProbe does not ask GET /healthz",
            |d| {
                orderer_container(d)["livenessProbe"]["httpGet"]["path"] = json!("/readyz");
            },
        ),
        case(
            "a probe on the gRPC port",
            "not on the operations port",
            |d| {
                orderer_container(d)["startupProbe"]["httpGet"]["port"] = json!("grpc");
            },
        ),
        case("no PodDisruptionBudget", "no PodDisruptionBudget", |d| {
            d.retain(|x| kind(&x.value) != "PodDisruptionBudget");
        }),
        case(
            "a budget that loses the quorum",
            "does not keep a raft quorum",
            |d| {
                doc_mut(d, "PodDisruptionBudget", "orderer")["spec"]["maxUnavailable"] = json!(2);
            },
        ),
        case("orderers started in order", "podManagementPolicy", |d| {
            doc_mut(d, "StatefulSet", "orderer")["spec"]["podManagementPolicy"] =
                json!("OrderedReady");
        }),
        case(
            "unready consenters hidden",
            "publishNotReadyAddresses",
            |d| {
                doc_mut(d, "Service", "orderer-headless")["spec"]["publishNotReadyAddresses"] =
                    json!(false);
            },
        ),
        case("the wrong scrape port", "prometheus.io/port", |d| {
            doc_mut(d, "StatefulSet", "orderer")["spec"]["template"]["metadata"]["annotations"]
                ["prometheus.io/port"] = json!("9999");
        }),
        case(
            "a Service with a misspelt selector",
            "selects no pod",
            |d| {
                doc_mut(d, "Service", "orderer")["spec"]["selector"]
                    ["app.kubernetes.io/component"] = json!("ordrer");
            },
        ),
        case(
            "an external Service for a pod that does not exist",
            "selects no pod",
            |d| {
                doc_mut(d, "Service", "orderer-0-external")["spec"]["selector"]
                    ["statefulset.kubernetes.io/pod-name"] = json!("orderer-1");
            },
        ),
        case("ops bound to loopback", "node.ops_listen_addr", |d| {
            edit_text(
                &mut doc_mut(d, "ConfigMap", "orderer-config")["data"]["orderer.toml"],
                "0.0.0.0:8443",
                "127.0.0.1:8443",
            );
        }),
        case(
            "a field the node does not know",
            "refuses its config",
            |d| {
                edit_text(
                    &mut doc_mut(d, "ConfigMap", "peer-config")["data"]["peer.toml"],
                    "[node]\n",
                    "[node]\ncolour = \"red\"\n",
                );
            },
        ),
        case("TLS off", "not mutual TLS", |d| {
            edit_text(
                &mut doc_mut(d, "ConfigMap", "peer-config")["data"]["peer.toml"],
                "enabled = true",
                "enabled = false",
            );
        }),
        case(
            "a key file outside the Secret",
            "in no mounted Secret",
            |d| {
                let env = &mut orderer_container(d)["env"];
                let tls_key = env
                    .as_array_mut()
                    .expect("env")
                    .iter_mut()
                    .find(|e| e["name"] == "ORDO_TLS_KEY_FILE")
                    .expect("ORDO_TLS_KEY_FILE");
                tls_key["value"] = json!("/etc/ordo/$(POD_NAME).tls.key");
            },
        ),
        case(
            "a third orderer without keys",
            "has no key orderer-2.key",
            |d| {
                doc_mut(d, "StatefulSet", "orderer")["spec"]["replicas"] = json!(3);
            },
        ),
        case(
            "a grace period shorter than the drain",
            "terminationGracePeriodSeconds",
            |d| {
                doc_mut(d, "StatefulSet", "peer")["spec"]["template"]["spec"]
                    ["terminationGracePeriodSeconds"] = json!(10);
            },
        ),
    ];
    for c in cases {
        let mut broken = docs.clone();
        (c.mutate)(&mut broken);
        let problems = all_problems(&broken, &namespace);
        assert!(
            problems.iter().any(|p| p.contains(c.expect)),
            "{}: expected a problem mentioning {:?}, got:\n{}",
            c.what,
            c.expect,
            problems.join("\n")
        );
    }
}

#[test]
fn a_key_given_twice_is_refused() {
    if !kubernetes_validate_available() {
        return;
    }
    let original =
        std::fs::read_to_string(kubernetes_dir().join("orderer.yaml")).expect("orderer.yaml");
    let from = "\n  replicas: 1\n";
    assert!(original.contains(from));
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("orderer.yaml");
    std::fs::write(
        &path,
        original.replacen(from, "\n  replicas: 1\n  replicas: 3\n", 1),
    )
    .expect("write");
    let err = yaml_documents(&path).expect_err("a duplicate key is refused");
    assert!(err.contains("duplicate key 'replicas'"), "{err}");
}

// ---- systemd ----------------------------------------------------------------------------

const UNITS: [&str; 2] = ["ordo-orderer.service", "ordo-peer.service"];

/// Whether the systemd checks may run: `false` when skipped on purpose; panics, naming the
/// package to install, when systemd-analyze is missing.
fn systemd_analyze_available() -> bool {
    if !not_skipped("ORDO_SKIP_SYSTEMD_ANALYZE", "checking the systemd units") {
        return false;
    }
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "systemd-analyze not found: install Debian's `systemd` package (apt-get install \
         --no-install-recommends systemd; .ci/run does), or set ORDO_SKIP_SYSTEMD_ANALYZE=1 \
         to skip these checks"
    );
    true
}

fn unit_text(unit: &str) -> String {
    std::fs::read_to_string(repo().join("deploy/systemd").join(unit))
        .unwrap_or_else(|e| panic!("deploy/systemd/{unit}: {e}"))
}

/// Writes `text` as `dir/unit` with the installed binary's path replaced by the `ordo`
/// this test was built with, so that verify finds an executable there.
fn stage_unit(dir: &Path, unit: &str, text: &str) -> PathBuf {
    assert!(
        text.contains("ExecStart=/usr/local/bin/ordo "),
        "{unit}: ExecStart runs /usr/local/bin/ordo"
    );
    let path = dir.join(unit);
    std::fs::write(
        &path,
        text.replace(
            "/usr/local/bin/ordo ",
            &format!("{} ", env!("CARGO_BIN_EXE_ordo")),
        ),
    )
    .expect("write unit");
    path
}

/// `systemd-analyze verify` on a unit file: an error naming what it said when it fails or
/// says anything about the unit (it exits 0 on unknown keys and unparsable values).
/// Lines about other units (a system's own broken units) are printed, not held against
/// ours.
fn verify_unit(path: &Path) -> Result<(), String> {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = file_name(path);
    let dir = path
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let (ours, others): (Vec<&str>, Vec<&str>) = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .partition(|l| l.contains(&unit) || l.contains(&dir));
    for l in others {
        eprintln!("systemd-analyze verify (not about {unit}): {l}");
    }
    if !out.status.success() || !ours.is_empty() {
        return Err(format!("exit {}: {said}", out.status));
    }
    Ok(())
}

/// Whether this systemd-analyze rates unit files offline with a threshold (v250+).
fn security_offline_supported() -> bool {
    Command::new("systemd-analyze")
        .args(["security", "--help"])
        .output()
        .is_ok_and(|o| {
            let help = String::from_utf8_lossy(&o.stdout);
            help.contains("--offline") && help.contains("--threshold")
        })
}

/// `systemd-analyze security --offline` on a unit file: Ok with its verdict line when the
/// exposure is at most [`EXPOSURE_MAX`], Err with everything it said otherwise.
fn unit_exposure(path: &Path) -> Result<String, String> {
    let threshold = format!("--threshold={EXPOSURE_MAX}");
    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=true",
            threshold.as_str(),
            "--no-pager",
        ])
        .arg(path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .map_err(|e| format!("systemd-analyze: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict = said
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_string();
    if out.status.success() && !verdict.is_empty() {
        Ok(verdict)
    } else {
        Err(said)
    }
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    if !systemd_analyze_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let rate = security_offline_supported();
    if !rate {
        eprintln!("this systemd-analyze cannot rate unit files offline (v250+): verify only");
    }
    for unit in UNITS {
        let text = unit_text(unit);
        for directive in [
            "ProtectSystem=strict",
            "NoNewPrivileges=true",
            "CapabilityBoundingSet=\n",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ] {
            assert!(text.contains(directive), "{unit} lacks {directive:?}");
        }
        let path = stage_unit(tmp.path(), unit, &text);
        if let Err(e) = verify_unit(&path) {
            panic!("systemd-analyze verify {unit}: {e}");
        }
        if rate {
            match unit_exposure(&path) {
                Ok(verdict) => eprintln!("{unit}: {verdict}"),
                Err(e) => panic!(
                    "systemd-analyze security rates {unit} above {}.{}:\n{e}",
                    EXPOSURE_MAX / 10,
                    EXPOSURE_MAX % 10
                ),
            }
        }
    }
}

#[test]
fn systemd_checks_report_broken_units() {
    if !systemd_analyze_available() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let text = unit_text(UNITS[0]);
    for (what, from, to) in [
        (
            "a misspelt directive",
            "ProtectSystem=strict",
            "ProtectSystm=strict",
        ),
        (
            "a value systemd cannot parse",
            "KillMode=mixed",
            "KillMode=mixd",
        ),
        ("a bad time span", "RestartSec=5", "RestartSec=five"),
        ("a misspelt section", "[Install]", "[Instal]"),
    ] {
        assert!(text.contains(from), "{what}: no {from:?} in the unit");
        let path = stage_unit(tmp.path(), UNITS[0], &text.replacen(from, to, 1));
        assert!(
            verify_unit(&path).is_err(),
            "{what} passed systemd-analyze verify"
        );
    }
    // A binary that is not there.
    let path = tmp.path().join(UNITS[0]);
    std::fs::write(
        &path,
        text.replace("/usr/local/bin/ordo ", "/nonexistent/ordo "),
    )
    .expect("write");
    assert!(
        verify_unit(&path).is_err(),
        "a missing binary passed verify"
    );

    if security_offline_supported() {
        // The unit without its sandbox.
        let start = text.find("# Sandboxing").expect("a # Sandboxing part");
        let end = text.find("[Install]").expect("an [Install] section");
        let bare = format!("{}{}", &text[..start], &text[end..]);
        let path = stage_unit(tmp.path(), UNITS[0], &bare);
        verify_unit(&path).unwrap_or_else(|e| panic!("the bare unit still verifies: {e}"));
        assert!(
            unit_exposure(&path).is_err(),
            "an unsandboxed unit rated at most {EXPOSURE_MAX}"
        );
    }
}
