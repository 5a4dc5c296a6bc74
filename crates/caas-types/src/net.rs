//! Network values: an instance's endpoint and a host's port range.

use crate::error::{Error, Result};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Where an instance answers: `{hostIP}:{hostPort}`, the data of its ZooKeeper node. Port 0 and
/// unspecified addresses (`0.0.0.0`) are refused: a client could not reach them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint(SocketAddr);

impl Endpoint {
    /// Builds an endpoint from an address and port, with the same checks as parsing.
    pub fn new(ip: IpAddr, port: u16) -> Result<Self> {
        Self::check(SocketAddr::new(ip, port))
    }

    fn check(addr: SocketAddr) -> Result<Self> {
        if addr.port() == 0 {
            return Err(Error::invalid("endpoint", "port 0 is not reachable"));
        }
        if addr.ip().is_unspecified() {
            return Err(Error::invalid(
                "endpoint",
                "an unspecified address is not reachable",
            ));
        }
        Ok(Endpoint(addr))
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }

    /// The IP address.
    pub fn ip(&self) -> IpAddr {
        self.0.ip()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.0.port()
    }
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.len() > 64 {
            return Err(Error::TooLong {
                kind: "endpoint",
                len: s.len(),
                max: 64,
            });
        }
        let addr: SocketAddr = s
            .parse()
            .map_err(|_| Error::invalid("endpoint", "expected ip:port, like 127.0.0.2:25700"))?;
        Self::check(addr)
    }
}

impl TryFrom<String> for Endpoint {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(e: Endpoint) -> SocketAddr {
        e.0
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An inclusive range of host ports handed to instances, written `25700-25999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// A range from `first` to `last` inclusive; privileged ports (< 1024) and empty ranges are refused.
    pub fn new(first: u16, last: u16) -> Result<Self> {
        if first < 1024 {
            return Err(Error::range(
                "port range",
                "ports below 1024 are privileged",
            ));
        }
        if last < first {
            return Err(Error::range(
                "port range",
                "the last port is below the first",
            ));
        }
        Ok(PortRange { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port (inclusive).
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// Never true: a range holds at least one port. Here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` is inside the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            first: 25700,
            last: 25999,
        }
    }
}

impl FromStr for PortRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::invalid("port range", "expected FIRST-LAST, like 25700-25999");
        if s.len() > 11 {
            return Err(bad());
        }
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first = a.parse().map_err(|_| bad())?;
        let last = b.parse().map_err(|_| bad())?;
        PortRange::new(first, last)
    }
}

impl TryFrom<String> for PortRange {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_round_trips() {
        let e: Endpoint = "127.0.0.2:25700".parse().expect("valid");
        assert_eq!(e.to_string(), "127.0.0.2:25700");
        assert_eq!(e.port(), 25700);
        let v6: Endpoint = "[::1]:8080".parse().expect("valid");
        assert_eq!(v6.to_string(), "[::1]:8080");
    }

    #[test]
    fn endpoint_rejects_hostile_input() {
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:0",
            "0.0.0.0:80",
            "host:80",
            "127.0.0.1:65536",
            "127.0.0.1:80/x",
            " 127.0.0.1:80",
            "127.0.0.1:80\0",
            "..",
            "a:b",
            "ünï:1",
        ] {
            assert!(
                bad.parse::<Endpoint>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!("1".repeat(100).parse::<Endpoint>().is_err());
    }

    #[test]
    fn port_range_parses_and_checks() {
        let r: PortRange = "25700-25999".parse().expect("valid");
        assert_eq!((r.first(), r.last(), r.len()), (25700, 25999, 300));
        assert!(r.contains(25700) && r.contains(25999) && !r.contains(26000));
        for bad in [
            "",
            "25999-25700",
            "80-90",
            "a-b",
            "1-2-3",
            "25700",
            "-",
            "25700-70000",
        ] {
            assert!(
                bad.parse::<PortRange>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(PortRange::default().to_string(), "25700-25999");
    }
}
