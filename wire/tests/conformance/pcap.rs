//! A minimal pcap writer and IPv4/UDP/TCP framing with correct checksums,
//! so that captures fed to tshark look exactly like traffic on a wire.

use meshlb_wire::ethernet::{EtherType, EthernetHeader, MacAddr};
use std::net::Ipv4Addr;

/// Classic libpcap format, Ethernet link type, microsecond timestamps.
pub struct PcapWriter {
    bytes: Vec<u8>,
    micros: u64,
}

impl PcapWriter {
    pub fn new() -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&4u16.to_le_bytes());
        bytes.extend_from_slice(&0i32.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&65535u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        PcapWriter {
            bytes,
            micros: 1_790_000_000_000_000,
        }
    }

    /// Appends a frame 1 ms after the previous one; returns its frame number.
    pub fn push(&mut self, frame: &[u8]) -> usize {
        self.micros += 1000;
        self.bytes
            .extend_from_slice(&((self.micros / 1_000_000) as u32).to_le_bytes());
        self.bytes
            .extend_from_slice(&((self.micros % 1_000_000) as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(frame);
        self.frames()
    }

    pub fn frames(&self) -> usize {
        let mut n = 0;
        let mut at = 24;
        while at + 16 <= self.bytes.len() {
            let len = u32::from_le_bytes(self.bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
            at += 16 + len;
            n += 1;
        }
        n
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

fn ones_complement_sum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for data in chunks {
        for pair in data.chunks(2) {
            let word = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from_be_bytes([pair[0], 0])
            };
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying an IPv4 packet.
pub fn ipv4_frame(
    macs: (MacAddr, MacAddr),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    EthernetHeader {
        source: macs.0,
        destination: macs.1,
        ethertype: EtherType::IPV4,
    }
    .encode(&mut frame);
    let mut ip = vec![0x45, 0xc0];
    ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, ttl, protocol, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let checksum = ones_complement_sum(&[&ip]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(payload);
    frame
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> Vec<u8> {
    let mut p = src.octets().to_vec();
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, protocol]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// A UDP datagram with its checksum.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend_from_slice(&ports.0.to_be_bytes());
    seg.extend_from_slice(&ports.1.to_be_bytes());
    seg.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    seg.extend_from_slice(&[0, 0]);
    seg.extend_from_slice(payload);
    let checksum = ones_complement_sum(&[&pseudo_header(src, dst, 17, seg.len()), &seg]);
    seg[6..8].copy_from_slice(&checksum.to_be_bytes());
    seg
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const PSH_ACK: u8 = 0x18;

/// One side of a TCP connection, tracking sequence numbers.
pub struct TcpEnd {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub seq: u32,
}

/// A TCP segment from `from` to `to` (acknowledging everything `to` sent);
/// returns the whole Ethernet frame and advances `from`'s sequence number.
pub fn tcp(from: &mut TcpEnd, to: &TcpEnd, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut seg = Vec::new();
    seg.extend_from_slice(&from.port.to_be_bytes());
    seg.extend_from_slice(&to.port.to_be_bytes());
    seg.extend_from_slice(&from.seq.to_be_bytes());
    let ack = if flags & ACK != 0 { to.seq } else { 0 };
    seg.extend_from_slice(&ack.to_be_bytes());
    seg.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    seg.extend_from_slice(payload);
    let checksum = ones_complement_sum(&[&pseudo_header(from.ip, to.ip, 6, seg.len()), &seg]);
    seg[16..18].copy_from_slice(&checksum.to_be_bytes());
    from.seq = from
        .seq
        .wrapping_add(payload.len() as u32 + u32::from(flags & SYN != 0));
    ipv4_frame((from.mac, to.mac), from.ip, to.ip, 6, 1, &seg)
}
