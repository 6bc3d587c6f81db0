//! # meshlbctl: the command line over an agent's introspection API
//!
//! Place in the architecture: a client of `meshlb.v1.Introspection`
//! ([`meshlb_proto`]), the API every `meshlb-agent` serves from its status
//! hub. It asks one agent (by default the one on this host,
//! 127.0.0.1:7473) what it knows and prints it as a table for people or
//! as JSON or YAML for scripts (`-o json|yaml`), in the style of
//! kubectl and cilium-dbg:
//!
//! ```text
//! meshlbctl members              the mesh and the quorum fence
//! meshlbctl services             every service, its addresses and announcers
//! meshlbctl service NS/NAME      one service, explained
//! meshlbctl interfaces           the interfaces answering ARP/NDP here
//! meshlbctl bgp                  this node's BGP peers
//! meshlbctl bfd                  their BFD sessions
//! meshlbctl pools                the address pools and their use
//! meshlbctl config               the running configuration, the last rejection
//! meshlbctl events --follow      events as they happen
//! ```

mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use meshlb_proto::v1 as pb;
use meshlb_proto::v1::introspection_client::IntrospectionClient;
use tonic::transport::{Channel, Endpoint};

/// How output is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Tables for people.
    Table,
    /// JSON, one document (one per line for events).
    Json,
    /// YAML.
    Yaml,
}

#[derive(Debug, Parser)]
#[command(name = "meshlbctl", version, about = "Ask a meshlb agent what it knows, and why")]
struct Cli {
    /// The agent's introspection API: host:port or unix:/path.
    #[arg(long, short, global = true, default_value = "127.0.0.1:7473")]
    server: String,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The mesh as the agent sees it, and the quorum fence.
    Members,
    /// Every service with its addresses and who announces them.
    Services,
    /// One service (namespace/name), explained.
    Service {
        /// namespace/name
        name: String,
    },
    /// The interfaces answering ARP and NDP on the agent's node.
    Interfaces,
    /// The agent's BGP peers.
    Bgp,
    /// The BFD sessions of the agent's BGP peers.
    Bfd,
    /// The address pools and how much of each is in use.
    Pools,
    /// The running configuration and the last rejection.
    Config,
    /// Events as they happen (members, configuration, ownership, BGP
    /// sessions), until interrupted.
    Events {
        /// Keep following the stream (what `events` does; for kubectl's
        /// spelling).
        #[arg(long, short)]
        follow: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    #[error("{0}: not host:port or unix:/path")]
    Server(String),
    #[error("cannot reach the agent at {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Call(tonic::Status),
    #[error("cannot print: {0}")]
    Print(String),
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
}

/// A channel to `server`.
async fn connect(server: &str) -> Result<Channel, CtlError> {
    let unreachable = |e: tonic::transport::Error| CtlError::Connect {
        server: server.to_owned(),
        reason: std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
    };
    if let Some(path) = server.strip_prefix("unix:") {
        let path = path.to_owned();
        // The URI is a placeholder: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://localhost");
        return endpoint
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(unreachable);
    }
    if server.parse::<std::net::SocketAddr>().is_err() && !server.contains(':') {
        return Err(CtlError::Server(server.to_owned()));
    }
    Endpoint::from_shared(format!("http://{server}"))
        .map_err(|_| CtlError::Server(server.to_owned()))?
        .connect()
        .await
        .map_err(unreachable)
}

fn print<T: serde::Serialize>(output: Output, value: &T, table: impl FnOnce(&T) -> String) -> Result<(), CtlError> {
    let text = match output {
        Output::Table => table(value),
        Output::Json => serde_json::to_string_pretty(value).map_err(|e| CtlError::Print(e.to_string()))? + "\n",
        Output::Yaml => serde_yaml_ng::to_string(value).map_err(|e| CtlError::Print(e.to_string()))?,
    };
    print!("{text}");
    Ok(())
}

async fn run(cli: Cli) -> Result<(), CtlError> {
    let mut client = IntrospectionClient::new(connect(&cli.server).await?);
    let output = cli.output;
    match cli.command {
        Command::Members => {
            let members = client
                .list_members(pb::ListMembersRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &members, render::members)
        }
        Command::Services => {
            let mut all = pb::ListServicesResponse::default();
            let mut token = String::new();
            loop {
                let page = client
                    .list_services(pb::ListServicesRequest {
                        page_size: 0,
                        page_token: token,
                    })
                    .await
                    .map_err(CtlError::Call)?
                    .into_inner();
                all.services.extend(page.services);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            print(output, &all.services, |s| render::services(s))
        }
        Command::Service { name } => {
            let service = client
                .get_service(pb::GetServiceRequest { name })
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &service, render::service)
        }
        Command::Interfaces => {
            let interfaces = client
                .list_interfaces(pb::ListInterfacesRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &interfaces.interfaces, |i| render::interfaces(i))
        }
        Command::Bgp => {
            let peers = client
                .list_bgp_peers(pb::ListBgpPeersRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &peers.peers, |p| render::bgp(p))
        }
        Command::Bfd => {
            let sessions = client
                .list_bfd_sessions(pb::ListBfdSessionsRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &sessions.sessions, |s| render::bfd(s))
        }
        Command::Pools => {
            let pools = client
                .list_pools(pb::ListPoolsRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &pools.pools, |p| render::pools(p))
        }
        Command::Config => {
            let config = client
                .get_config(pb::GetConfigRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            print(output, &config, render::config)
        }
        Command::Events { follow: _, count } => {
            let mut stream = client
                .watch_events(pb::WatchEventsRequest {})
                .await
                .map_err(CtlError::Call)?
                .into_inner();
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let Some(event) = stream.message().await.map_err(CtlError::Call)? else {
                    break;
                };
                let line = match output {
                    Output::Table => render::event(&event),
                    Output::Json => serde_json::to_string(&event).map_err(|e| CtlError::Print(e.to_string()))?,
                    Output::Yaml => {
                        "---\n".to_owned()
                            + serde_yaml_ng::to_string(&event)
                                .map_err(|e| CtlError::Print(e.to_string()))?
                                .trim_end()
                    }
                };
                println!("{line}");
                seen += 1;
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
