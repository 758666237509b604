// SPDX-License-Identifier: GPL-2.0

//! The `clients` property: `host:port` items separated by commas, as
//! `multiudpsink` takes them, and their resolution to socket addresses.

use std::{
    fmt, io,
    net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs},
};

/// One client as written: a host (an address or a name) and a UDP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// An IPv4 or IPv6 address, or a host name.
    pub host: String,
    /// The UDP port, never 0.
    pub port: u16,
}

impl fmt::Display for Client {
    /// `host:port`, with an IPv6 address in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.parse::<Ipv6Addr>().is_ok() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a clients string was refused: the item and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The item as written.
    pub item: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad client \"{}\": {}", self.item, self.reason)
    }
}

impl std::error::Error for ParseError {}

impl Client {
    /// Parses `host:port`, `[ipv6]:port` or an unbracketed IPv6 address
    /// followed by `:port` (`::1:5000`).
    pub fn parse(item: &str) -> Result<Client, ParseError> {
        let err = |reason| ParseError {
            item: item.to_owned(),
            reason,
        };
        let s = item.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, port) = rest.split_once("]:").ok_or(err("expected [ipv6]:port"))?;
            host.parse::<Ipv6Addr>()
                .map_err(|_| err("not an IPv6 address in brackets"))?;
            (host, port)
        } else {
            s.rsplit_once(':').ok_or(err("no port (host:port)"))?
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
            return Err(err("not a host or an address"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '/') {
            return Err(err("not a host or an address"));
        }
        let port: u16 = port.parse().map_err(|_| err("port is not 1 to 65535"))?;
        if port == 0 {
            return Err(err("port is not 1 to 65535"));
        }
        Ok(Client {
            host: host.to_owned(),
            port,
        })
    }

    /// The socket address: the host parsed as an address, else the first
    /// address the resolver gives for the name.
    pub fn resolve(&self) -> io::Result<SocketAddr> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} has no address", self.host),
                )
            })
    }
}

/// Parses a comma-separated list of clients; empty items (and an empty
/// string) are skipped, a duplicate is kept once.
pub fn parse_list(s: &str) -> Result<Vec<Client>, ParseError> {
    let mut out: Vec<Client> = Vec::new();
    for item in s.split(',').filter(|i| !i.trim().is_empty()) {
        let c = Client::parse(item)?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The list as the `clients` property reads: `host:port,host:port`.
pub fn format_list(clients: &[Client]) -> String {
    clients
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(host: &str, port: u16) -> Client {
        Client {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn good_lists() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(
            parse_list("127.0.0.1:5000, localhost:5002,,[::1]:6000,::1:6001"),
            Ok(vec![
                c("127.0.0.1", 5000),
                c("localhost", 5002),
                c("::1", 6000),
                c("::1", 6001)
            ])
        );
        assert_eq!(
            parse_list("10.0.0.1:1,10.0.0.1:1"),
            Ok(vec![c("10.0.0.1", 1)])
        );
        let l = parse_list("[::1]:6000,127.0.0.1:5000").unwrap();
        assert_eq!(format_list(&l), "[::1]:6000,127.0.0.1:5000");
    }

    #[test]
    fn bad_items_are_named() {
        for (s, item) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:70000", "127.0.0.1:70000"),
            ("127.0.0.1:5000,:5001", ":5001"),
            ("host:port", "host:port"),
            ("[::1:5000", "[::1:5000"),
            ("[zz]:5000", "[zz]:5000"),
            ("a b:5000", "a b:5000"),
            ("1:2:3:5000x", "1:2:3:5000x"),
        ] {
            let e = parse_list(s).unwrap_err();
            assert_eq!(e.item, item, "{s}");
        }
    }

    #[test]
    fn addresses_resolve_without_a_resolver() {
        assert_eq!(
            c("127.0.0.1", 5000).resolve().unwrap(),
            "127.0.0.1:5000".parse().unwrap()
        );
        assert_eq!(
            c("::1", 5000).resolve().unwrap(),
            "[::1]:5000".parse().unwrap()
        );
    }
}
