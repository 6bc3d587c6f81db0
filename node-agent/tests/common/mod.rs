//! What the glue tests (`bgp_glue.rs`, `layer2_glue.rs`) share: the
//! running state as the pipeline publishes it, and the mesh's side of the
//! glue's commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshlb_gossip::driver::Command;
use meshlb_node_agent::pipeline::Pipeline;
use meshlb_node_agent::running::RunningState;
use meshlb_node_agent::sources::{Snapshot, SourceUpdate};
use tokio::sync::mpsc;

/// The running state `pipeline` makes of `yaml` as the reading numbered
/// `fingerprint`, as it publishes it (the same pipeline throughout keeps
/// addresses allocated as they were).
pub fn running(pipeline: &mut Pipeline, yaml: &str, fingerprint: u64) -> RunningState {
    let objects = meshlb_config::parse_documents(yaml, "test.yaml").unwrap().objects;
    let inventory = Arc::new(meshlb_config::Inventory::build(&objects).unwrap());
    pipeline.offer(
        SourceUpdate::Snapshot(Snapshot { inventory, fingerprint }),
        Instant::now(),
    );
    pipeline.running_state(&BTreeMap::new()).unwrap()
}

/// The next command the glue gives the mesh that `pick` takes (failing
/// after a generous 30 s).
pub async fn next_command<T>(mesh: &mut mpsc::Receiver<Command>, pick: impl Fn(Command) -> Option<T>) -> T {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), mesh.recv()).await {
            Ok(Some(command)) => {
                if let Some(picked) = pick(command) {
                    return picked;
                }
            }
            Ok(None) => panic!("the glue dropped the mesh"),
            Err(_) => panic!("the glue told the mesh nothing"),
        }
    }
}
