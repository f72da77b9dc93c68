//! Reading a running proxy's metrics the two ways an operator does: `weir metrics --json`, and
//! a Prometheus scrape of the admin endpoint read with a real parser (the `prometheus_client`
//! Python package's, the reference client library's, so what parses here parses for
//! Prometheus's own scrapers too).

#![allow(clippy::unwrap_used)] // test support: a panic is a failed test

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{curl, Proxy};

/// `weir metrics --json EXTRA...` against `proxy`, parsed.
pub fn metrics_json(proxy: &Proxy, extra: &[&str]) -> Value {
    let mut args = vec!["metrics", "--json"];
    args.extend_from_slice(extra);
    let out = proxy.weir(&args);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("weir metrics --json prints JSON")
}

/// Counter `name` of a [`metrics_json`] answer; panics on a name it does not hold, so a
/// renamed counter fails rather than reads 0.
pub fn counter(json: &Value, name: &str) -> u64 {
    json["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {json}"))
}

/// A `python3` that can import `prometheus_client`, and the PYTHONPATH it needs: the system's
/// package if there is one (`.ci/run` installs Debian's), else pip's into the target directory.
pub fn prometheus_python() -> (String, Option<PathBuf>) {
    let imports = |path: Option<&Path>| {
        let mut command = Command::new("python3");
        command.args(["-c", "import prometheus_client"]);
        if let Some(path) = path {
            command.env("PYTHONPATH", path);
        }
        command.output().is_ok_and(|o| o.status.success())
    };
    if imports(None) {
        return ("python3".into(), None);
    }
    let lib = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pylib");
    if !imports(Some(&lib)) {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&lib)
            .arg("prometheus_client")
            .output()
            .expect("python3 is needed for this test (apt-get install python3-prometheus-client)");
        assert!(
            out.status.success() && imports(Some(&lib)),
            "cannot install prometheus_client (apt-get install python3-prometheus-client): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ("python3".into(), Some(lib))
}

/// Prometheus text parsed by `prometheus_client`: each sample as (name, labels) → value.
pub type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

const PARSE: &str = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name,
                    "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

pub fn parse_with_prometheus_client(text: &str) -> (Samples, BTreeMap<String, String>) {
    let (python, path) = prometheus_python();
    let mut command = Command::new(python);
    command
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = path {
        command.env("PYTHONPATH", path);
    }
    let mut child = command.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut samples = Samples::new();
    let mut types = BTreeMap::new();
    for s in parsed {
        let labels = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        types.insert(
            s["family"].as_str().unwrap().to_owned(),
            s["type"].as_str().unwrap().to_owned(),
        );
        samples.insert(
            (s["name"].as_str().unwrap().to_owned(), labels),
            s["value"].as_f64().unwrap(),
        );
    }
    (samples, types)
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn value(samples: &Samples, name: &str, pairs: &[(&str, &str)]) -> f64 {
    samples
        .get(&(name.to_owned(), labels(pairs)))
        .copied()
        .unwrap_or_else(|| panic!("no sample {name}{pairs:?} in {samples:#?}"))
}

pub fn scrape(admin: SocketAddr) -> (Samples, BTreeMap<String, String>) {
    let out = curl(&["-D", "-", &format!("http://{admin}/metrics")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(head.contains("Connection: close"), "{head}");
    parse_with_prometheus_client(body)
}
