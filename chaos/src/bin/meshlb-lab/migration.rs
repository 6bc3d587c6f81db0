//! The migration benchmark's report: moving a real cluster from MetalLB.

use meshlb_chaos::LabError;

pub(crate) fn bench_migration(runs: usize) -> Result<(), LabError> {
    use meshlb_chaos::migration::{Install, MetallbCluster, readme_steps};
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .map_err(|e| LabError::io("read the README", e))?;
    let blocks = readme_steps(&readme)?;
    println!(
        "MetalLB v0.15.2 (controller and 3 speakers as pods on 3 real nodes, webhooks live) answering for 22 \
         Services; the README's migration steps; a client probing one address every 10 ms; {runs} runs each; seconds"
    );
    println!(
        "| MetalLB installed by | first command to meshlb announcing every address (median / max) | \
         MetalLB stopped to meshlb announcing every address (median / max) | probes lost (median / max) | \
         addresses changed | runs |"
    );
    println!("|---|---|---|---|---|---|");
    for install in [Install::Chart, Install::Manifest] {
        let mut steps = blocks.first().cloned().unwrap_or_default();
        if install == Install::Chart {
            steps.extend(blocks.get(1).cloned().unwrap_or_default());
        }
        let (mut took, mut gap, mut lost, mut changed) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let run = MetallbCluster::build(install).and_then(|mut cluster| cluster.migrate(&steps));
            match run {
                Ok(migration) => {
                    took.push(migration.took.as_secs_f64());
                    gap.push(migration.gap.as_secs_f64());
                    lost.push(migration.probes.lost() as f64);
                    changed += migration.addresses_changed.len();
                }
                Err(e) => eprintln!("{install}: a run failed: {e}"),
            }
        }
        let pair = |mut v: Vec<f64>, digits: usize| {
            v.sort_by(f64::total_cmp);
            format!(
                "{:.*} / {:.*}",
                digits,
                v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
                digits,
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        println!(
            "| {install} | {} | {} | {} | {changed} | {} |",
            pair(took.clone(), 1),
            pair(gap, 1),
            pair(lost, 0),
            took.len()
        );
    }
    Ok(())
}
