//! The alert rules (charts/meshlb/monitoring/meshlb.rules.yaml) as Prometheus reads
//! them: `promtool check rules` accepts the file and `promtool test
//! rules` runs its unit tests (charts/meshlb/monitoring/meshlb.rules.test.yaml), each
//! alert firing when it should and not before; the PrometheusRule holds
//! the same groups; the Grafana dashboards satisfy Grafana's dashboard
//! schema (the types of @grafana/grafana-foundation-sdk, through
//! scripts/check-dashboards), and a broken one does not. Needs Debian's prometheus
//! package (scripts/install-deps), no root.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

fn monitoring() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/meshlb/monitoring")
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
    assert!(text.contains("SUCCESS: 11 rules found"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "meshlb.rules.test.yaml"]);
    assert!(ok, "{text}");
}

/// The PrometheusRule (the chart's, as the static manifest renders it)
/// carries exactly the rules file's groups.
#[test]
fn the_prometheus_rule_holds_the_rules_file() {
    let read = |path: PathBuf| -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let rules = read(monitoring().join("meshlb.rules.yaml"));
    let resource =
        read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/manifests/meshlb-prometheusrule.yaml"));
    assert_eq!(resource["kind"], serde_yaml_ng::Value::from("PrometheusRule"));
    assert_eq!(
        resource["apiVersion"],
        serde_yaml_ng::Value::from("monitoring.coreos.com/v1")
    );
    assert_eq!(
        resource["spec"]["groups"], rules["groups"],
        "config/manifests/meshlb-prometheusrule.yaml differs from charts/meshlb/monitoring/meshlb.rules.yaml"
    );
}

fn check_dashboards(dir: &std::path::Path) -> (bool, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-dashboards");
    let out = Command::new(script).arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_dashboards_satisfy_grafanas_schema() {
    let (ok, text) = check_dashboards(&monitoring().join("dashboards"));
    assert!(ok, "{text}");
    assert!(text.contains("4 dashboards"), "{text}");

    // The check can fail: a panel without a height, with a property
    // Grafana does not know, and a query that is not text.
    let broken = std::env::temp_dir().join(format!("meshlb-dashboards-{}", std::process::id()));
    std::fs::create_dir_all(&broken).unwrap();
    let text = std::fs::read_to_string(monitoring().join("dashboards/meshlb-overview.json")).unwrap();
    let mut board: serde_json::Value = serde_json::from_str(&text).unwrap();
    board["panels"][0]["gridPos"].as_object_mut().unwrap().remove("h");
    board["panels"][1]["colour"] = "red".into();
    board["panels"][2]["targets"][0]["expr"] = 5.into();
    std::fs::write(broken.join("broken.json"), board.to_string()).unwrap();
    let (ok, text) = check_dashboards(&broken);
    let _ = std::fs::remove_dir_all(&broken);
    assert!(!ok, "{text}");
    for complaint in [
        "Property 'h' is missing",
        "'\"colour\"' does not exist",
        "not assignable to type 'string'",
    ] {
        assert!(text.contains(complaint), "{complaint} in {text}");
    }
}
