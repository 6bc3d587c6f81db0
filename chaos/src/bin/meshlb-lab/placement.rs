//! The placement benchmark's report: meshlb's placement of several
//! addresses per Service against Deckhouse's rule over node churn.

use std::path::Path;

use meshlb_chaos::LabError;
use meshlb_chaos::placement_bench::{Change, Moves, RuleReport, run};
use meshlb_chaos::plot::{Pair, paired_bars};

pub(crate) fn bench_placement(
    nodes: usize,
    services: usize,
    changes: usize,
    seed: u64,
    plot: Option<&Path>,
) -> Result<(), LabError> {
    if nodes < 2 || services == 0 {
        return Err(LabError::Invalid("the churn needs two nodes and a Service".into()));
    }
    let report = run(nodes, services, changes, seed);
    println!(
        "{} Services ({} addresses, 1 to 3 each) in one class over {} nodes; {changes} node changes (seed {seed})",
        report.services, report.addresses, report.nodes
    );
    println!();
    println!(
        "Addresses moved per change: mean (of which had to: those the rule had on the node that went) / most. \
         When a node comes, the fewest moves that even the loads is its share."
    );
    println!();
    println!("| change | times | even share | meshlb | meshlb, non-revertive | Deckhouse's rule |");
    println!("|---|---|---|---|---|---|");
    let cell = |m: Option<&Moves>| {
        m.map_or("-".to_owned(), |m| {
            format!("{:.1} ({:.1}) / {}", m.mean(), m.must_mean(), m.most)
        })
    };
    let kinds = [Change::Fail, Change::Recover, Change::Join, Change::Delete];
    for kind in kinds {
        let Some(even) = report.even_share.get(&kind) else {
            continue;
        };
        let share = if even.moved == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}", even.mean())
        };
        println!(
            "| {} | {} | {share} | {} | {} | {} |",
            kind.name(),
            even.changes,
            cell(report.meshlb.moves.get(&kind)),
            cell(report.meshlb_non_revertive.moves.get(&kind)),
            cell(report.deckhouse.moves.get(&kind)),
        );
    }
    println!();
    println!(
        "| rule | addresses per node, busiest minus idlest: mean / most | Services with two addresses on one node (summed over the states) |"
    );
    println!("|---|---|---|");
    for (name, rule) in [
        ("meshlb", &report.meshlb),
        ("meshlb, non-revertive", &report.meshlb_non_revertive),
        ("Deckhouse's rule", &report.deckhouse),
    ] {
        println!(
            "| {name} | {:.1} / {} | {} |",
            rule.mean_spread, rule.max_spread, rule.shared
        );
    }
    if let Some(took) = &report.evaluation {
        println!();
        println!(
            "meshlb's placement of all {} addresses from the claims before (what each node's mesh evaluates): \
             median {:.2} ms, p90 {:.2} ms, max {:.2} ms over {} evaluations",
            report.addresses,
            took.median.as_secs_f64() * 1e3,
            took.p90.as_secs_f64() * 1e3,
            took.max.as_secs_f64() * 1e3,
            took.runs
        );
    }
    if let Some(file) = plot {
        // The worst change of each kind: the mean hides that Deckhouse's
        // rule keeps most nodes empty (their failures move nothing) and
        // moves hundreds at once when a loaded one fails.
        let most = |rule: &RuleReport, kind| rule.moves.get(&kind).map_or(0.0, |m| m.most as f64);
        let mut pairs: Vec<Pair> = kinds
            .into_iter()
            .filter(|kind| report.even_share.contains_key(kind))
            .map(|kind| Pair {
                measure: format!("most moved when {}", kind.name()),
                first: most(&report.meshlb, kind),
                second: most(&report.deckhouse, kind),
            })
            .collect();
        pairs.push(Pair {
            measure: "addresses per node: spread".into(),
            first: report.meshlb.mean_spread,
            second: report.deckhouse.mean_spread,
        });
        pairs.push(Pair {
            measure: "Services sharing a node".into(),
            first: report.meshlb.shared as f64,
            second: report.deckhouse.shared as f64,
        });
        let svg = paired_bars(
            &format!(
                "{} Services over {} nodes, {changes} node changes: the most moved at once, and the spread",
                report.services, report.nodes
            ),
            ("meshlb", "Deckhouse's rule"),
            &pairs,
        );
        std::fs::write(file, svg).map_err(|e| LabError::io(format!("write {}", file.display()), e))?;
    }
    Ok(())
}
