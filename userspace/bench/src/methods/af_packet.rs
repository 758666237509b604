// SPDX-License-Identifier: GPL-2.0

//! AF_PACKET with `PACKET_TX_RING` (TPACKET_V2) and `PACKET_QDISC_BYPASS`,
//! the raw-socket way: complete Ethernet/IPv4/UDP frames, written into the
//! mmap'ed ring from per-destination prebuilt headers (IPv4 id 0 with DF, so
//! a header only changes for a destination's short last packet), the
//! payload copied in, then one send(2) flushes the whole ring. The UDP
//! checksum is 0 (allowed on IPv4), as raw senders do.

use std::{
    io, mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    ptr,
    sync::atomic::{fence, Ordering},
};

use super::{cvt, cvt_size, mdwrite::ifindex, setsockopt_int, Method, Outcome};
use crate::workload::{
    dest_addr, dest_mac, Pool, RtpState, Workload, DST_PORT, RTP_HEADER, SRC_ADDR, SRC_PORT,
};

pub(crate) const SOL_PACKET: libc::c_int = 263;
pub(crate) const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
pub(crate) const TPACKET_V2: libc::c_int = 1;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
/// Frame data starts after the aligned tpacket2_hdr (no PACKET_TX_HAS_OFF).
const DATA_OFF: usize = 32;
const FRAME_SIZE: usize = 2048;
const BLOCK_SIZE: usize = 64 << 10;
const BLOCKS: usize = 64;
/// Frames in the ring (4 MiB).
pub const FRAMES: usize = BLOCK_SIZE / FRAME_SIZE * BLOCKS;
const HDR: usize = 14 + 20 + 8;

/// `struct tpacket_req`.
#[repr(C)]
pub(crate) struct TpacketReq {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
}

/// `struct tpacket2_hdr`.
#[repr(C)]
pub(crate) struct Tpacket2Hdr {
    pub tp_status: u32,
    pub tp_len: u32,
    pub tp_snaplen: u32,
    pub tp_mac: u16,
    pub tp_net: u16,
    pub tp_sec: u32,
    pub tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// Sets up the socket's ring (`opt`: `PACKET_TX_RING` or `PACKET_RX_RING`)
/// as `req` describes and maps it.
pub(crate) fn map_ring(s: &OwnedFd, opt: libc::c_int, req: &TpacketReq) -> io::Result<*mut u8> {
    let fd = s.as_raw_fd();
    // SAFETY: `req` is a tpacket_req of the length passed.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            SOL_PACKET,
            opt,
            (req as *const TpacketReq).cast(),
            mem::size_of::<TpacketReq>() as u32,
        )
    })?;
    let len = req.block_size as usize * req.block_nr as usize;
    // SAFETY: maps the ring the kernel just allocated for this socket.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

/// Binds a packet socket to `ifindex` for `proto` (network byte order).
pub(crate) fn bind_packet(s: &OwnedFd, proto: u16, ifindex: u32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; family, protocol and
    // ifindex are set.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a sockaddr_ll of the length passed.
    cvt(unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    Ok(())
}

/// The AF_PACKET TX ring method.
pub struct PacketRing {
    ifindex: u32,
    src_mac: [u8; 6],
    sock: Option<OwnedFd>,
    ring: *mut u8,
    /// Per destination, the header of a full-size packet.
    headers: Vec<[u8; HDR]>,
    rtp: Vec<RtpState>,
    /// Next frame to fill.
    next: usize,
}

/// The Ethernet, IPv4 and UDP headers of a packet to destination `d` with
/// `udp_payload` bytes after the UDP header.
fn header(src_mac: [u8; 6], d: usize, udp_payload: usize) -> [u8; HDR] {
    let mut h = [0u8; HDR];
    h[0..6].copy_from_slice(&dest_mac(d));
    h[6..12].copy_from_slice(&src_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 8 + udp_payload) as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = libc::IPPROTO_UDP as u8;
    ip[12..16].copy_from_slice(&SRC_ADDR.octets());
    ip[16..20].copy_from_slice(&dest_addr(d).octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut h[34..42];
    udp[0..2].copy_from_slice(&SRC_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&DST_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + udp_payload) as u16).to_be_bytes());
    h
}

/// The MAC address of `ifname` from sysfs.
fn mac_of(ifname: &str) -> io::Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address"))?;
    let mut mac = [0u8; 6];
    for (b, x) in mac.iter_mut().zip(s.trim().split(':')) {
        *b =
            u8::from_str_radix(x, 16).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    Ok(mac)
}

impl PacketRing {
    /// Frames leave `ifname`.
    pub fn new(ifname: &str) -> io::Result<Self> {
        Ok(Self {
            ifindex: ifindex(ifname)?,
            src_mac: mac_of(ifname)?,
            sock: None,
            ring: ptr::null_mut(),
            headers: Vec::new(),
            rtp: Vec::new(),
            next: 0,
        })
    }

    fn frame(&self, i: usize) -> *mut u8 {
        // SAFETY: `i < FRAMES`, inside the ring mapping.
        unsafe { self.ring.add(i * FRAME_SIZE) }
    }

    fn status(&self, i: usize) -> u32 {
        // SAFETY: the frame's tpacket2_hdr, shared with the kernel.
        unsafe { ptr::read_volatile(self.frame(i).cast::<u32>()) }
    }

    /// Hands every filled frame to the kernel; blocks until it sent them.
    fn flush(&self, out: &mut Outcome) -> io::Result<()> {
        let fd = self.sock.as_ref().expect("prepared").as_raw_fd();
        // SAFETY: send(2) with no buffer: the ring holds the data.
        cvt_size(unsafe { libc::send(fd, ptr::null(), 0, 0) })?;
        out.syscalls += 1;
        Ok(())
    }
}

impl Method for PacketRing {
    fn prepare(&mut self, wl: &Workload, _pool: &Pool) -> io::Result<()> {
        // SAFETY: plain socket(2); protocol 0: this socket receives nothing.
        let fd =
            cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: a new descriptor owned by no one else.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        setsockopt_int(&s, SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        setsockopt_int(&s, SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
        let req = TpacketReq {
            block_size: BLOCK_SIZE as u32,
            block_nr: BLOCKS as u32,
            frame_size: FRAME_SIZE as u32,
            frame_nr: FRAMES as u32,
        };
        self.ring = map_ring(&s, PACKET_TX_RING, &req)?;
        bind_packet(&s, (libc::ETH_P_IP as u16).to_be(), self.ifindex)?;
        self.sock = Some(s);
        for d in 0..wl.dests {
            self.headers.push(header(self.src_mac, d, wl.segment()));
            self.rtp.push(RtpState::new(d));
        }
        Ok(())
    }

    fn send(&mut self, wl: &Workload, pool: &Pool) -> io::Result<Outcome> {
        let mut out = Outcome::default();
        let rtp_len = wl.rtp_len();
        let mut filled = 0;
        for k in 0..wl.packets_per_dest() {
            let off = k * wl.payload;
            let len = wl.packet_len(k);
            for d in 0..wl.dests {
                if self.status(self.next) != TP_STATUS_AVAILABLE {
                    self.flush(&mut out)?;
                    filled = 0;
                    if self.status(self.next) != TP_STATUS_AVAILABLE {
                        return Err(io::Error::other(format!(
                            "frame status {:#x} after send",
                            self.status(self.next)
                        )));
                    }
                }
                let f = self.frame(self.next);
                // SAFETY: this frame is ours (TP_STATUS_AVAILABLE) until we
                // set TP_STATUS_SEND_REQUEST; DATA_OFF + frame fits in it.
                unsafe {
                    let data = f.add(DATA_OFF);
                    if len == wl.payload {
                        ptr::copy_nonoverlapping(self.headers[d].as_ptr(), data, HDR);
                    } else {
                        let h = header(self.src_mac, d, len + rtp_len);
                        ptr::copy_nonoverlapping(h.as_ptr(), data, HDR);
                    }
                    if wl.rtp {
                        self.rtp[d].next(&mut *data.add(HDR).cast::<[u8; RTP_HEADER]>());
                    }
                    let src = &pool.dest_data(wl, d)[off..off + len];
                    ptr::copy_nonoverlapping(src.as_ptr(), data.add(HDR + rtp_len), len);
                    let h = f.cast::<Tpacket2Hdr>();
                    (*h).tp_len = (HDR + rtp_len + len) as u32;
                    fence(Ordering::Release);
                    ptr::write_volatile(ptr::addr_of_mut!((*h).tp_status), TP_STATUS_SEND_REQUEST);
                }
                filled += 1;
                out.packets += 1;
                self.next = (self.next + 1) % FRAMES;
            }
        }
        if filled > 0 {
            self.flush(&mut out)?;
        }
        Ok(out)
    }

    /// Every frame must be back with the sender, none rejected.
    fn after(&mut self) -> io::Result<String> {
        let bad = (0..FRAMES)
            .filter(|&i| self.status(i) & TP_STATUS_WRONG_FORMAT != 0)
            .count();
        let busy = (0..FRAMES)
            .filter(|&i| self.status(i) != TP_STATUS_AVAILABLE)
            .count();
        if bad > 0 || busy > 0 {
            return Err(io::Error::other(format!(
                "{bad} frames rejected, {busy} not available"
            )));
        }
        Ok(String::new())
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        if !self.ring.is_null() {
            // SAFETY: unmaps the ring mapped in `prepare`.
            unsafe { libc::munmap(self.ring.cast(), BLOCK_SIZE * BLOCKS) };
        }
    }
}
