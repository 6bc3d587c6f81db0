//! The socket options a BGP session's TCP connection needs, each wrapped
//! once: TCP MD5 signatures (RFC 2385, `TCP_MD5SIG`) keyed by the peer's
//! address, and the minimum TTL of what is received (GTSM, RFC 5082:
//! `IP_MINTTL`, `IPV6_MINHOPCOUNT`) with the TTL sent. socket2 has the
//! TTL sent but neither of the others, nor a generic `setsockopt`, so the
//! one call goes through libc here.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

use meshlb_config::secret::Md5Key;
use socket2::{SockAddr, Socket};

/// The kernel's `struct tcp_md5sig` (include/uapi/linux/tcp.h), which the
/// libc crate does not define.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; Md5Key::MAX_LEN],
}

/// `setsockopt(socket, level, name, value)` for a plain-data `value`.
#[allow(unsafe_code)]
fn set_option<T>(socket: &Socket, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `value` points to `len` readable bytes of a `repr(C)` or
    // primitive type the kernel reads as the option's value; the descriptor
    // is open for as long as `socket` is borrowed.
    let result = unsafe { libc::setsockopt(socket.as_raw_fd(), level, name, std::ptr::from_ref(value).cast(), len) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Signs (and requires signatures on) every segment exchanged with `peer`
/// on `socket` with `key`; `None` removes the key. On a listening socket
/// it applies to the connections accepted from `peer`.
pub fn set_md5_key(socket: &Socket, peer: IpAddr, key: Option<&Md5Key>) -> io::Result<()> {
    let address = SockAddr::from(SocketAddr::new(peer, 0));
    let mut sig = TcpMd5Sig {
        addr: zeroed_storage(),
        flags: 0,
        prefix_len: 0,
        key_len: 0,
        ifindex: 0,
        key: [0; Md5Key::MAX_LEN],
    };
    copy_address(&address, &mut sig.addr)?;
    if let Some(key) = key {
        let bytes = key.as_bytes();
        sig.key[..bytes.len()].copy_from_slice(bytes);
        sig.key_len = u16::try_from(bytes.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    }
    set_option(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// A zeroed `sockaddr_storage` (AF_UNSPEC).
#[allow(unsafe_code)]
fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` holds integers and padding only, for which
    // all-zero bytes are valid; its private fields rule out a literal.
    unsafe { std::mem::zeroed() }
}

/// Copies `address` into `storage`.
#[allow(unsafe_code)]
fn copy_address(address: &SockAddr, storage: &mut libc::sockaddr_storage) -> io::Result<()> {
    let len = address.len() as usize;
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: `address` points to `len` initialised bytes of a socket
    // address, and `storage` has room for them (checked above); the two do
    // not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr().cast::<u8>(),
            std::ptr::from_mut(storage).cast::<u8>(),
            len,
        );
    }
    Ok(())
}

/// GTSM (RFC 5082) for a directly connected peer: send with TTL (hop
/// limit) 255 and drop what arrives with less than `255 - hops + 1`, so
/// only a peer `hops` hops away or nearer gets through (1 for a direct
/// neighbour).
pub fn set_ttl_security(socket: &Socket, peer: IpAddr, hops: u8) -> io::Result<()> {
    let minimum = libc::c_int::from(255 - hops.max(1) + 1);
    match peer {
        IpAddr::V4(_) => {
            socket.set_ttl_v4(255)?;
            set_option(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &minimum)
        }
        IpAddr::V6(_) => {
            socket.set_unicast_hops_v6(255)?;
            set_option(socket, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &minimum)
        }
    }
}

/// The TTL (hop limit) of what `socket` sends to `peer`: 1 for a direct
/// eBGP neighbour, more for ebgpMultiHop.
pub fn set_ttl(socket: &Socket, peer: IpAddr, ttl: u8) -> io::Result<()> {
    match peer {
        IpAddr::V4(_) => socket.set_ttl_v4(u32::from(ttl)),
        IpAddr::V6(_) => socket.set_unicast_hops_v6(u32::from(ttl)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Type};
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::time::Duration;

    fn key(text: &str) -> Md5Key {
        Md5Key::new(text).unwrap()
    }

    /// A listener on loopback set up by `listener_setup`; whether a client
    /// set up by `client_setup` gets a connection that carries data.
    fn connects(listener_setup: impl Fn(&Socket), client_setup: impl Fn(&Socket)) -> bool {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        listener.bind(&SockAddr::from(SocketAddr::new(loopback, 0))).unwrap();
        listener_setup(&listener);
        listener.listen(4).unwrap();
        let address = listener.local_addr().unwrap().as_socket().unwrap();
        let listener: TcpListener = listener.into();
        listener.set_nonblocking(true).unwrap();

        let client = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        client_setup(&client);
        if client
            .connect_timeout(&address.into(), Duration::from_millis(1500))
            .is_err()
        {
            return false;
        }
        let mut client: TcpStream = client.into();
        client.write_all(b"OPEN").unwrap();
        for _ in 0..150 {
            if let Ok((mut accepted, _)) = listener.accept() {
                accepted.set_nonblocking(false).unwrap();
                accepted.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 4];
                return accepted.read_exact(&mut buf).is_ok() && &buf == b"OPEN";
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn signing(text: &'static str) -> impl Fn(&Socket) {
        move |socket| set_md5_key(socket, IpAddr::V4(Ipv4Addr::LOCALHOST), Some(&key(text))).unwrap()
    }

    fn plain(_: &Socket) {}

    /// Real kernel behaviour: matching keys connect; a wrong key, or none
    /// where one is required, never does (the segments are dropped, so the
    /// connection attempt times out, as a router sees it).
    #[test]
    fn md5_signatures_admit_only_the_right_key() {
        assert!(connects(plain, plain), "the harness connects without keys");
        assert!(connects(signing("s3cret"), signing("s3cret")));
        assert!(!connects(signing("s3cret"), signing("wrong")));
        assert!(!connects(signing("s3cret"), plain));
    }

    /// GTSM: a listener requiring TTL 255 takes a client that sends with
    /// 255 and drops one that sends with 64 (one hop further than allowed
    /// would arrive with 254).
    #[test]
    fn ttl_security_drops_segments_from_further_away() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let gtsm = move |socket: &Socket| set_ttl_security(socket, loopback, 1).unwrap();
        assert!(connects(gtsm, gtsm));
        assert!(!connects(gtsm, move |socket: &Socket| set_ttl(socket, loopback, 64).unwrap()));
    }

    #[test]
    fn ttl_security_sets_both_directions() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        set_ttl_security(&socket, IpAddr::V4(Ipv4Addr::LOCALHOST), 1).unwrap();
        assert_eq!(socket.ttl_v4().unwrap(), 255);
        set_ttl(&socket, IpAddr::V4(Ipv4Addr::LOCALHOST), 2).unwrap();
        assert_eq!(socket.ttl_v4().unwrap(), 2);
        let v6 = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        set_ttl_security(&v6, "::1".parse().unwrap(), 1).unwrap();
        assert_eq!(v6.unicast_hops_v6().unwrap(), 255);
    }
}
