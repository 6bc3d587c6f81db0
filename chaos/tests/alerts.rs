//! The alert rules (monitoring/meshlb.rules.yaml) as Prometheus reads
//! them: `promtool check rules` accepts the file and `promtool test
//! rules` runs its unit tests (monitoring/meshlb.rules.test.yaml), each
//! alert firing when it should and not before; the PrometheusRule holds
//! the same groups. Needs Debian's prometheus
//! package (scripts/install-deps), no root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../monitoring")
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .current_dir(monitoring())
        .args(args)
        .output()
        .expect("promtool (Debian's prometheus package; scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool() {
    let (ok, text) = promtool(&["check", "rules", "meshlb.rules.yaml"]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 10 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "meshlb.rules.test.yaml"]);
    assert!(ok, "{text}");
}

/// The PrometheusRule carries exactly the rules file's groups.
#[test]
fn the_prometheus_rule_holds_the_rules_file() {
    let read = |file: &str| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(monitoring().join(file)).unwrap()).unwrap()
    };
    let rules = read("meshlb.rules.yaml");
    let resource = read("meshlb-prometheusrule.yaml");
    assert_eq!(resource["kind"], serde_yaml_ng::Value::from("PrometheusRule"));
    assert_eq!(
        resource["apiVersion"],
        serde_yaml_ng::Value::from("monitoring.coreos.com/v1")
    );
    assert_eq!(
        resource["spec"]["groups"], rules["groups"],
        "monitoring/meshlb-prometheusrule.yaml differs from monitoring/meshlb.rules.yaml"
    );
}
