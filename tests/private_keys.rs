//! Private keys stay where they belong: out of state answers, `weir state --json` and rendered
//! plans, and in files only their owner can read.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use util::{control, Desired, Proxy};
use weir_schema::proto::response::Content;
use weir_schema::Command;
use weir_testkit::free_addr;

const KEY_MARK: &str = "PRIVATE KEY";

fn desired_with_certificate() -> Desired {
    let desired = Desired::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/tests/data");
    for file in ["test-a.pem", "test-a.key"] {
        std::fs::copy(data.join(file), desired.path().join(file)).unwrap();
    }
    desired.write(
        "weir.yaml",
        &format!(
            "listeners:
  - name: tls
    address: {}
    protocol: https
    default_certificate: a
clusters:
  - id: shop
certificates:
  - name: a
    certificate: test-a.pem
    key: test-a.key
frontends:
  - listener: tls
    hostname: a.test.example.com
    cluster: shop
    certificate: a
    hsts: max-age=60
",
            free_addr()
        ),
    );
    desired
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn state_answers_and_rendered_plans_leave_keys_out() {
    let proxy = Proxy::start(&[]);
    let desired = desired_with_certificate();
    let path = desired.path().to_str().unwrap();

    let out = proxy.weir(&["plan", path]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("certificate"), "{shown}");
    assert!(!shown.contains(KEY_MARK), "{shown}");
    let out = proxy.weir(&["plan", path, "--json"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY_MARK));

    let out = proxy.weir(&["apply", path, "--auto-approve"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut client = control::client(&proxy);
    let answer = control::call(&mut client, Command::QueryState);
    let Some(Content::State(snapshot)) = answer.content else {
        panic!("{answer:?}");
    };
    assert_eq!(snapshot.certificates.len(), 1);
    assert!(snapshot.certificates[0]
        .certificate_pem
        .contains("CERTIFICATE"));
    assert_eq!(snapshot.certificates[0].key_pem, "");
    assert!(!format!("{snapshot:?}").contains(KEY_MARK));
    // Asked for explicitly (what apply's rollback of a certificate removal needs), the key
    // comes back whole.
    let with_keys = client.query_state_with_keys().unwrap();
    let certificate = with_keys.certificates.values().next().unwrap();
    let key = std::fs::read_to_string(desired.path().join("test-a.key")).unwrap();
    assert_eq!(
        certificate.key_pem.as_ref().map(|k| k.expose()),
        Some(key.as_str())
    );

    let out = proxy.weir(&["state", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(!json.contains(KEY_MARK), "{json}");
    let state: serde_json::Value = serde_json::from_str(&json).unwrap();
    let fingerprint = state["certificates"][0]["fingerprint"].as_str().unwrap();
    assert_eq!(state["listeners"][0]["default_certificate"], fingerprint);
    assert_eq!(state["frontends"][0]["hsts"], "max-age=60");

    // A redacted live state still plans against the desired one: nothing to change.
    let out = proxy.weir(&["plan", path, "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_saved_plan_is_0600_even_over_a_world_readable_file() {
    let proxy = Proxy::start(&[]);
    let desired = desired_with_certificate();
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, "old").unwrap();
    std::fs::set_permissions(&plan, std::fs::Permissions::from_mode(0o644)).unwrap();

    let out = proxy.weir(&[
        "plan",
        desired.path().to_str().unwrap(),
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&plan), 0o600);
    // It holds the key (applying it later adds the certificate), hence the mode.
    assert!(std::fs::read_to_string(&plan)
        .unwrap()
        .contains("desired_state"));
    let out = proxy.weir(&["apply", plan.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
