//! The agent's rtnetlink socket: blocking requests to the kernel's routing
//! subsystem, many to a datagram ([`meshlb_wire::rtnetlink`] builds and
//! reads them). It adds and removes the local routes of the service
//! addresses a node accepts traffic for ([`RouteSocket::change_local_routes`]),
//! removes interface addresses ([`RouteSocket::remove_addresses`]), and
//! reads the neighbour table for BFD's Echo path
//! ([`RouteSocket::neighbors`]). Each call blocks until the
//! kernel has answered every request (bounded by [`ANSWER_TIMEOUT`]), so
//! callers run it off the actors' threads (`spawn_blocking`).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use meshlb_wire::rtnetlink::{
    Change, Messages, Neighbor, address_removal_request, local_route_request, message_type, neighbor_dump_request,
    parse_error, parse_neighbor,
};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send, setsockopt, socket,
    sockopt,
};

/// Requests sent in one datagram: their answers (at most a few hundred
/// octets each) stay well inside the socket's default receive buffer.
const BATCH: usize = 256;

/// How long the kernel may take to answer before a call gives up.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The loopback interface's index, the same in every network namespace
/// (`LOOPBACK_IFINDEX`, include/net/net_namespace.h).
pub const LOOPBACK_INDEX: u32 = 1;

/// One request's outcome: the errno the kernel answered with, if any.
pub type Outcome = Result<(), io::Error>;

/// An rtnetlink socket. See the module documentation.
#[derive(Debug)]
pub struct RouteSocket {
    fd: OwnedFd,
    sequence: u32,
    buf: Vec<u8>,
}

impl RouteSocket {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<RouteSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        let timeout = nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
        Ok(RouteSocket {
            fd,
            sequence: 0,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Adds or removes the local route of each of `addresses` through
    /// interface `index`; each one's outcome, in order. An added route
    /// delivers once acknowledged: the kernel inserts it before it
    /// answers.
    pub fn change_local_routes(&mut self, change: Change, index: u32, addresses: &[IpAddr]) -> Vec<Outcome> {
        self.acknowledged(addresses, |buf, address, sequence| {
            local_route_request(buf, change, index, *address, sequence);
        })
    }

    /// Removes each of `addresses` from interface `index`; each one's
    /// outcome, in order.
    pub fn remove_addresses(&mut self, index: u32, addresses: &[IpAddr]) -> Vec<Outcome> {
        self.acknowledged(addresses, |buf, address, sequence| {
            address_removal_request(buf, index, *address, sequence);
        })
    }

    /// One acknowledged request per address, built by `build`, [`BATCH`]
    /// to a datagram; each one's outcome, in order.
    fn acknowledged(&mut self, addresses: &[IpAddr], build: impl Fn(&mut Vec<u8>, &IpAddr, u32)) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(addresses.len());
        for chunk in addresses.chunks(BATCH) {
            let answers = self.exchange(chunk, &build);
            outcomes.extend(answers.into_iter().map(|answer| match answer {
                Ok(0) => Ok(()),
                Ok(errno) => Err(io::Error::from_raw_os_error(errno)),
                Err(e) => Err(e),
            }));
        }
        outcomes
    }

    /// The kernel's neighbour table (entries with a MAC).
    pub fn neighbors(&mut self) -> io::Result<Vec<Neighbor>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut request = Vec::new();
        neighbor_dump_request(&mut request, sequence);
        send(self.fd.as_raw_fd(), &request, MsgFlags::empty())?;
        let mut all = Vec::new();
        loop {
            let len = recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
            if len == 0 {
                return Ok(all);
            }
            for (header, body) in Messages::new(&self.buf[..len]) {
                if header.sequence != sequence {
                    continue;
                }
                match header.kind {
                    message_type::DONE => return Ok(all),
                    message_type::ERROR => {
                        return match parse_error(body) {
                            Some(0) | None => Ok(all),
                            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                        };
                    }
                    message_type::NEW_NEIGHBOR => all.extend(parse_neighbor(body)),
                    _ => {}
                }
            }
        }
    }

    /// Sends one acknowledged request per item (built by `build` with its
    /// sequence number) in one datagram, and reads until each is
    /// answered; the errnos (0: done) in the items' order. An item the
    /// kernel never answered (the receive timed out) gets the timeout
    /// error.
    fn exchange<T>(&mut self, items: &[T], build: impl Fn(&mut Vec<u8>, &T, u32)) -> Vec<io::Result<i32>> {
        let first = self.sequence.wrapping_add(1);
        let mut request = Vec::with_capacity(items.len() * 64);
        for item in items {
            self.sequence = self.sequence.wrapping_add(1);
            build(&mut request, item, self.sequence);
        }
        let mut answers: Vec<Option<io::Result<i32>>> = (0..items.len()).map(|_| None).collect();
        if let Err(e) = send(self.fd.as_raw_fd(), &request, MsgFlags::empty()) {
            return answers.into_iter().map(|_| Err(io::Error::from(e))).collect();
        }
        let mut missing = items.len();
        while missing > 0 {
            let len = match recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty()) {
                Ok(len) => len,
                Err(e) => {
                    let e = io::Error::from(e);
                    return answers
                        .into_iter()
                        .map(|a| a.unwrap_or_else(|| Err(io::Error::new(e.kind(), e.to_string()))))
                        .collect();
                }
            };
            for (header, body) in Messages::new(&self.buf[..len]) {
                let slot = header.sequence.wrapping_sub(first) as usize;
                let answer = match header.kind {
                    message_type::ERROR => parse_error(body),
                    _ => None,
                };
                if let (Some(answer), Some(entry)) = (answer, answers.get_mut(slot))
                    && entry.is_none()
                {
                    *entry = Some(Ok(answer));
                    missing -= 1;
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(io::Error::other("no answer"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own table can be read (the test's namespace has few
    /// neighbours, but the dump must end cleanly).
    #[test]
    fn the_kernel_neighbour_table_reads() {
        assert!(RouteSocket::open().and_then(|mut s| s.neighbors()).is_ok());
    }
}
