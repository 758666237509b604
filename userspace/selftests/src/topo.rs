// SPDX-License-Identifier: GPL-2.0

//! The test network, shaped like the claims' system: a sender namespace,
//! a veth to a bridge in a "switch" namespace, and one veth from the bridge
//! to each receiver namespace. Removed on drop.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    process::Command,
};

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
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                dev,
            ])?;
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
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
