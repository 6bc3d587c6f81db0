//! The BGP listener: one per agent, it takes the TCP connections peers
//! open to this node (port 179) and hands each to its peer's actor
//! ([`crate::bgp::peer::Accepted`]), where the session's core resolves any
//! collision with the connection the actor opened itself.
//!
//! It listens on IPv4 and IPv6 with a socket each; the TCP MD5 key of
//! every peer that has one is set on the listening socket of its family,
//! keyed by the peer's address, so the kernel admits only a peer signing
//! with the right key (an unsigned or wrongly signed SYN is dropped, as
//! [`crate::bgp::socket`]'s tests show). A connection from an address no
//! BGPPeer names is closed at once.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Recipient, StreamHandler};
use meshlb_config::secret::Md5Key;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::bgp::peer::Accepted;
use crate::bgp::socket::set_md5_key;

/// The port BGP speakers listen on (RFC 4271).
pub const BGP_PORT: u16 = 179;

/// How long the accept loop waits after a failed accept (out of
/// descriptors, say) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// A peer the listener takes connections from.
#[derive(Debug, Clone)]
pub struct ListenPeer {
    /// Its actor.
    pub actor: Recipient<Accepted>,
    /// Its TCP MD5 key, if any.
    pub md5: Option<Md5Key>,
}

/// The peers to take connections from, by address (replacing the
/// previous set).
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "()")]
pub struct SetListenPeers(pub BTreeMap<IpAddr, ListenPeer>);

/// Closes the listening sockets and stops the listener.
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct StopListening;

/// The listener actor. See the module documentation.
pub struct ListenerActor {
    listeners: Vec<Arc<TcpListener>>,
    peers: BTreeMap<IpAddr, ListenPeer>,
}

/// The listening sockets, bound but not yet in a runtime: binding needs
/// none, so the glue binds (and learns of a port taken) without waiting
/// on the arbiter the listener runs on.
#[derive(Debug)]
pub struct ListenSockets(Vec<std::net::TcpListener>);

impl ListenSockets {
    /// Binds `port` on every IPv4 and IPv6 address of this host; an
    /// address family the host lacks is skipped, and the error is the
    /// IPv4 one when neither binds.
    pub fn bind(port: u16) -> io::Result<ListenSockets> {
        let v4 = listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
        let v6 = listen(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
        if let Err(e) = &v6 {
            tracing::debug!("BGP listener: no IPv6 socket: {e}");
        }
        match (v4, v6) {
            (Err(e), Err(_)) => Err(e),
            (v4, v6) => Ok(ListenSockets(v4.into_iter().chain(v6).collect())),
        }
    }

    /// The addresses they listen on.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.0.iter().filter_map(|l| l.local_addr().ok()).collect()
    }
}

impl ListenerActor {
    /// The listener over `sockets`; called inside the Tokio runtime it
    /// runs on (a socket it cannot register there is logged and left out).
    pub fn new(sockets: ListenSockets) -> ListenerActor {
        let listeners = sockets
            .0
            .into_iter()
            .filter_map(|socket| match TcpListener::from_std(socket) {
                Ok(listener) => Some(Arc::new(listener)),
                Err(e) => {
                    tracing::warn!("BGP listener: {e}");
                    None
                }
            })
            .collect();
        ListenerActor {
            listeners,
            peers: BTreeMap::new(),
        }
    }

    /// The addresses it listens on.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The listening socket of `peer`'s family.
    fn listener_for(&self, peer: IpAddr) -> Option<&TcpListener> {
        self.listeners
            .iter()
            .find(|l| l.local_addr().is_ok_and(|a| a.is_ipv4() == peer.is_ipv4()))
            .map(|l| &**l)
    }

    /// Sets (or with `None` removes) `peer`'s key on its family's socket.
    fn set_key(&self, peer: IpAddr, key: Option<&Md5Key>) {
        let Some(listener) = self.listener_for(peer) else {
            return;
        };
        match set_md5_key(&SockRef::from(listener), peer, key) {
            Ok(()) => {}
            // Removing a key never set.
            Err(e) if key.is_none() && e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => tracing::warn!(%peer, "BGP listener: cannot set the TCP MD5 key: {e}"),
        }
    }
}

/// A listening socket on `address` (IPv6 only for an IPv6 address, so the
/// IPv4 socket takes IPv4).
fn listen(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(64)?;
    Ok(socket.into())
}

/// What the accept loops yield.
struct Incoming(io::Result<(TcpStream, SocketAddr)>);

impl Actor for ListenerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for listener in &self.listeners {
            let accepts = futures_util::stream::unfold(listener.clone(), |listener| async move {
                let accepted = listener.accept().await;
                if accepted.is_err() {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                Some((Incoming(accepted), listener))
            });
            ctx.add_stream(accepts);
        }
        tracing::info!(addresses = ?self.local_addresses(), "BGP listener started");
    }
}

impl StreamHandler<Incoming> for ListenerActor {
    fn handle(&mut self, Incoming(accepted): Incoming, _ctx: &mut Context<Self>) {
        match accepted {
            Ok((stream, from)) => {
                let address = from.ip().to_canonical();
                match self.peers.get(&address) {
                    Some(peer) => peer.actor.do_send(Accepted(stream)),
                    None => tracing::info!(%address, "BGP connection from an address no BGPPeer names: closed"),
                }
            }
            Err(e) => tracing::warn!("BGP listener: accept failed: {e}"),
        }
    }
}

impl Handler<StopListening> for ListenerActor {
    type Result = ();

    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        actix::ActorContext::stop(ctx);
    }
}

impl Handler<SetListenPeers> for ListenerActor {
    type Result = ();

    fn handle(&mut self, SetListenPeers(peers): SetListenPeers, _ctx: &mut Context<Self>) {
        for (address, old) in &self.peers {
            if old.md5.is_some() && peers.get(address).is_none_or(|p| p.md5.is_none()) {
                self.set_key(*address, None);
            }
        }
        for (address, peer) in &peers {
            let old = self.peers.get(address).and_then(|p| p.md5.as_ref());
            if peer.md5.is_some() && peer.md5.as_ref() != old {
                self.set_key(*address, peer.md5.as_ref());
            }
        }
        self.peers = peers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use tokio::sync::mpsc;

    /// Stands in for a peer's actor: keeps each connection it is handed
    /// open and forwards where it came from.
    struct Catch(mpsc::UnboundedSender<SocketAddr>, Vec<TcpStream>);

    impl Actor for Catch {
        type Context = Context<Self>;
    }

    impl Handler<Accepted> for Catch {
        type Result = ();

        fn handle(&mut self, Accepted(stream): Accepted, _ctx: &mut Context<Self>) {
            let _ = self.0.send(stream.peer_addr().unwrap());
            self.1.push(stream);
        }
    }

    /// Connects from loopback (signing with `key`, if any) on a thread;
    /// whether the connection came up, and what it read before it ended
    /// (the listener closes connections it does not hand over).
    async fn client(port: u16, key: Option<&'static str>) -> Option<usize> {
        tokio::task::spawn_blocking(move || {
            let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
            if let Some(key) = key {
                set_md5_key(&socket, loopback, Some(&Md5Key::new(key).unwrap())).unwrap();
            }
            let address = SocketAddr::new(loopback, port);
            socket
                .connect_timeout(&address.into(), Duration::from_millis(1500))
                .ok()?;
            let mut stream: std::net::TcpStream = socket.into();
            stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let mut buf = [0u8; 16];
            // 0: closed by the listener; an error: still open (handed on).
            Some(stream.read(&mut buf).unwrap_or(usize::MAX))
        })
        .await
        .unwrap()
    }

    #[actix::test]
    async fn connections_go_to_their_peer_and_keys_admit_only_signed_ones() {
        let sockets = ListenSockets::bind(0).unwrap();
        let port = sockets.local_addresses().iter().find(|a| a.is_ipv4()).unwrap().port();
        let listener = ListenerActor::new(sockets).start();
        let (tx, mut handed) = mpsc::unbounded_channel();
        let catch = Catch(tx, Vec::new()).start().recipient();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);

        // No peer at this address: closed at once.
        assert_eq!(client(port, None).await, Some(0));
        assert!(handed.try_recv().is_err());

        let peers = |md5: Option<&str>| {
            SetListenPeers(
                [(
                    loopback,
                    ListenPeer {
                        actor: catch.clone(),
                        md5: md5.map(|k| Md5Key::new(k).unwrap()),
                    },
                )]
                .into(),
            )
        };
        listener.send(peers(None)).await.unwrap();
        assert_eq!(client(port, None).await, Some(usize::MAX));
        assert_eq!(handed.recv().await.unwrap().ip(), loopback);

        // With a key, only a client signing with it gets through.
        listener.send(peers(Some("s3cret"))).await.unwrap();
        assert_eq!(client(port, None).await, None);
        assert_eq!(client(port, Some("wrong")).await, None);
        assert_eq!(client(port, Some("s3cret")).await, Some(usize::MAX));
        assert_eq!(handed.recv().await.unwrap().ip(), loopback);

        // The key removed: unsigned again.
        listener.send(peers(None)).await.unwrap();
        assert_eq!(client(port, None).await, Some(usize::MAX));
        assert_eq!(handed.recv().await.unwrap().ip(), loopback);
        assert!(handed.try_recv().is_err());
    }
}
