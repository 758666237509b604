// SPDX-License-Identifier: GPL-2.0

//! The test network, shaped like the claims' system: a sender namespace,
//! a veth to a bridge in a "switch" namespace, and one veth from the bridge
//! to each receiver namespace. Removed on drop.
//!
//! Also the set-up the tests share around it: static neighbours, offloads,
//! dummy devices, netem, and a sender namespace with only a dummy device.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    process::Command,
};

use mdwrite::DestConfig;

/// Namespace names carry this prefix (and the process id).
const PREFIX: &str = "mdwt";

/// Runs a command; its failure is a test failure with its output.
pub(crate) fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One receiver host.
pub(crate) struct Receiver {
    /// Its network namespace.
    pub(crate) ns: String,
    /// Its IPv4 address.
    pub(crate) v4: Ipv4Addr,
    /// Its IPv6 address.
    pub(crate) v6: Ipv6Addr,
    /// Its MAC address.
    pub(crate) mac: [u8; 6],
}

/// The whole test network.
pub(crate) struct Topology {
    /// The sender's namespace.
    pub(crate) sender: String,
    /// The sender's device (in `sender`).
    pub(crate) sender_dev: &'static str,
    /// The switch's namespace (bridge `br0`).
    pub(crate) switch: String,
    /// The receivers, in order.
    pub(crate) receivers: Vec<Receiver>,
    names: Vec<String>,
}

/// The sender's IPv4 address.
pub(crate) const SENDER_V4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The sender's IPv6 address.
pub(crate) const SENDER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);

fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6], String> {
    let text = run(&["ip", "-n", ns, "-br", "link", "show", dev])?;
    let field = text
        .split_whitespace()
        .nth(2)
        .ok_or("no MAC in ip output")?;
    let mut mac = [0u8; 6];
    for (i, part) in field.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16).map_err(|e| e.to_string())?;
    }
    Ok(mac)
}

impl Topology {
    /// Builds the network with `n` receivers.
    pub(crate) fn new(n: usize) -> Result<Self, String> {
        let id = std::process::id();
        let sender = format!("{PREFIX}{id}-snd");
        let switch = format!("{PREFIX}{id}-sw");
        let mut topo = Topology {
            sender: sender.clone(),
            sender_dev: "s0",
            switch: switch.clone(),
            receivers: Vec::new(),
            names: vec![sender.clone(), switch.clone()],
        };
        run(&["ip", "netns", "add", &sender])?;
        run(&["ip", "netns", "add", &switch])?;
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"])?;
        let attach = |ns: &str, dev: &str, port: &str, v4: Ipv4Addr, v6: Ipv6Addr| {
            run(&[
                "ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", port, "netns",
                &switch,
            ])?;
            run(&[
                "ip", "-n", &switch, "link", "set", port, "master", "br0", "up",
            ])?;
            let (net4, net6) = (format!("{v4}/24"), format!("{v6}/64"));
            run(&["ip", "-n", ns, "addr", "add", &net4, "dev", dev])?;
            run(&["ip", "-n", ns, "addr", "add", &net6, "dev", dev, "nodad"])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])
        };
        attach(&sender, "s0", "p-snd", SENDER_V4, SENDER_V6)?;
        for i in 0..n {
            let ns = format!("{PREFIX}{id}-r{i}");
            run(&["ip", "netns", "add", &ns])?;
            topo.names.push(ns.clone());
            let v4 = Ipv4Addr::new(10, 99, 0, 10 + i as u8);
            let v6 = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x10 + i as u16);
            attach(&ns, "r0", &format!("p-r{i}"), v4, v6)?;
            let mac = mac_of(&ns, "r0")?;
            topo.receivers.push(Receiver { ns, v4, v6, mac });
        }
        Ok(topo)
    }

    /// The sender device's ifindex.
    pub(crate) fn sender_ifindex(&self) -> Result<u32, String> {
        let text = run(&[
            "ip",
            "-n",
            &self.sender,
            "-o",
            "link",
            "show",
            self.sender_dev,
        ])?;
        text.split(':')
            .next()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("no ifindex".into())
    }

    /// Address of receiver `i` in the family of `v6`.
    pub(crate) fn addr(&self, i: usize, v6: bool) -> IpAddr {
        let r = &self.receivers[i];
        if v6 {
            IpAddr::V6(r.v6)
        } else {
            IpAddr::V4(r.v4)
        }
    }

    /// The sender's address in the family of `v6`.
    pub(crate) fn sender_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(SENDER_V6)
        } else {
            IpAddr::V4(SENDER_V4)
        }
    }

    /// Makes `addr` a permanent neighbour with MAC `mac` on the sender's
    /// device.
    pub(crate) fn permanent_neighbour(&self, addr: IpAddr, mac: [u8; 6]) -> Result<(), String> {
        let mac = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        run(&[
            "ip",
            "-n",
            &self.sender,
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac,
            "dev",
            self.sender_dev,
            "nud",
            "permanent",
        ])
        .map(|_| ())
    }

    /// Every receiver's IPv4 and IPv6 address as a permanent neighbour, so
    /// that the first packets of a socket sender (the library's fallback)
    /// do not wait for, or get dropped by, address resolution.
    pub(crate) fn static_neighbours(&self) -> Result<(), String> {
        for r in &self.receivers {
            self.permanent_neighbour(r.v4.into(), r.mac)?;
            self.permanent_neighbour(r.v6.into(), r.mac)?;
        }
        Ok(())
    }

    /// Turns offload `feature` of the sender's device off (`ethtool -K`).
    pub(crate) fn sender_offload_off(&self, feature: &str) -> Result<(), String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.sender,
            "ethtool",
            "-K",
            self.sender_dev,
            feature,
            "off",
        ])
        .map(|_| ())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

/// The ifindex of device `dev` in namespace `ns`.
pub(crate) fn ifindex(ns: &str, dev: &str) -> Result<u32, String> {
    let text = run(&["ip", "-n", ns, "-o", "link", "show", dev])?;
    text.split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .ok_or(format!("no ifindex for {dev}"))
}

/// Moves the calling thread into network namespace `ns`.
pub(crate) fn enter(ns: &str) -> Result<(), String> {
    let f = File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    // SAFETY: `f` is an open namespace file; setns affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Runs `f` on a new thread inside network namespace `ns`.
pub(crate) fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> std::thread::JoinHandle<Result<T, String>> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        enter(&ns)?;
        f()
    })
}

/// Creates dummy device `dev` in namespace `ns`, up when `up` (a dummy
/// device drops what it is given); returns its ifindex.
pub(crate) fn add_dummy(ns: &str, dev: &str, up: bool) -> Result<u32, String> {
    run(&["ip", "-n", ns, "link", "add", dev, "type", "dummy"])?;
    if up {
        run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
    }
    ifindex(ns, dev)
}

/// Puts netem with a delay of `ms` on `dev` in namespace `ns`: each packet
/// stays on the qdisc that long, so calls through it stay in flight.
pub(crate) fn netem(ns: &str, dev: &str, ms: u64) -> Result<(), String> {
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "tc",
        "qdisc",
        "add",
        "dev",
        dev,
        "root",
        "netem",
        "delay",
        &format!("{ms}ms"),
        "limit",
        "100000",
    ])
    .map(|_| ())
}

/// A destination on a dummy device `ifindex` (whose packets go nowhere):
/// 10.98.0.1:4000 to 10.98.0.2:5000, MAC 02:00:00:00:00:01.
pub(crate) fn dummy_config(ifindex: u32) -> DestConfig {
    let mut c = DestConfig::new(
        ifindex,
        SocketAddr::new(Ipv4Addr::new(10, 98, 0, 1).into(), 4000),
        SocketAddr::new(Ipv4Addr::new(10, 98, 0, 2).into(), 5000),
    );
    c.dst_mac = Some([2, 0, 0, 0, 0, 1]);
    c
}

/// A topology without receivers and an up dummy device `d0` in the
/// sender's namespace, behind netem holding each packet `hold` ms when
/// given; this thread enters the sender's namespace. Returns a destination
/// on `d0` ([`dummy_config`]).
pub(crate) fn dummy_sender(hold: Option<u64>) -> Result<(Topology, DestConfig), String> {
    let topo = Topology::new(0)?;
    let ifindex = add_dummy(&topo.sender, "d0", true)?;
    if let Some(ms) = hold {
        netem(&topo.sender, "d0", ms)?;
    }
    enter(&topo.sender)?;
    Ok((topo, dummy_config(ifindex)))
}
