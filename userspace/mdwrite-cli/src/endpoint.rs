// SPDX-License-Identifier: GPL-2.0

//! `HOST:PORT` arguments: IPv4, `[IPv6]`, or a host name resolved when the
//! command runs; `:PORT` for every local address.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs},
};

use crate::error::Error;

/// A host (address or name) and a UDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// An address, a name, or empty for every local address.
    host: String,
    port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Splits `HOST:PORT`, `[V6]:PORT` or `:PORT`.
fn split(s: &str) -> Result<Endpoint, String> {
    let bad =
        || format!("{s:?} is not ADDR:PORT (examples: 10.0.0.2:5000, [fd00::2]:5000, host:5000)");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once("]:").ok_or_else(bad)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (v6, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            // An IPv6 address needs its brackets.
            return Err(bad());
        }
        (host, port)
    };
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok(Endpoint {
        host: host.to_owned(),
        port,
    })
}

/// `--to`: a host and a non-zero port.
pub(crate) fn parse_destination(s: &str) -> Result<Endpoint, String> {
    let e = split(s)?;
    if e.host.is_empty() {
        return Err(format!("{s:?} has no address (ADDR:PORT)"));
    }
    if e.port == 0 {
        return Err(format!("{s:?}: port 0 is not a destination port"));
    }
    Ok(e)
}

/// `--listen`: a host (empty: every IPv4 address) and a port (0: any).
pub(crate) fn parse_listen(s: &str) -> Result<Endpoint, String> {
    split(s)
}

impl Endpoint {
    /// The socket address: the literal address, or the first IPv4 address
    /// the resolver gives for the name (its first address when it has no
    /// IPv4 one); `:PORT` is `0.0.0.0:PORT`.
    pub(crate) fn resolve(&self) -> Result<SocketAddr, Error> {
        if self.host.is_empty() {
            return Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), self.port));
        }
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| Error::Resolve {
                host: self.host.clone(),
                message: e.to_string(),
            })?
            .collect();
        let v4 = addrs.iter().find(|a| a.is_ipv4());
        v4.or(addrs.first()).copied().ok_or_else(|| Error::Resolve {
            host: self.host.clone(),
            message: "no address".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let e = parse_destination("10.0.0.2:5000").unwrap();
        assert_eq!(e.resolve().unwrap(), "10.0.0.2:5000".parse().unwrap());
        let e = parse_destination("[fd00::2]:5000").unwrap();
        assert_eq!(e.to_string(), "[fd00::2]:5000");
        assert_eq!(e.resolve().unwrap(), "[fd00::2]:5000".parse().unwrap());
        let e = parse_destination("localhost:5000").unwrap();
        assert_eq!(e.resolve().unwrap(), "127.0.0.1:5000".parse().unwrap());
        let e = parse_listen(":5000").unwrap();
        assert_eq!(e.resolve().unwrap(), "0.0.0.0:5000".parse().unwrap());
        assert!(parse_listen("127.0.0.1:0").is_ok());
    }

    #[test]
    fn bad_forms() {
        assert!(parse_destination("localhost")
            .unwrap_err()
            .contains("not ADDR:PORT"));
        assert!(parse_destination("fd00::2:5000").is_err());
        assert!(parse_destination("[fd00::2]5000").is_err());
        assert!(parse_destination("1.2.3.4:70000").is_err());
        assert!(parse_destination("1.2.3.4:0")
            .unwrap_err()
            .contains("port 0"));
        assert!(parse_destination(":5000")
            .unwrap_err()
            .contains("no address"));
        let e = parse_destination("no-such-host.invalid:5000").unwrap();
        assert!(e.resolve().is_err());
    }
}
