//! The built-in IPAM ("default" IPAM driver): IPv4 subnets in CIDR form, the default address
//! pools, overlap detection, and address allocation inside a subnet (optionally restricted to an
//! `IPRange`), honouring static requests. Pure computation: no I/O, no kernel state; the network
//! store keeps the leases and persists them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors of address management.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid CIDR address: {0}")]
    InvalidCidr(String),
    #[error("invalid IP address: {0}")]
    InvalidAddress(String),
    #[error("{what} {addr} is not in subnet {subnet}")]
    OutsideSubnet {
        what: &'static str,
        addr: String,
        subnet: Subnet,
    },
    #[error("address {0} is reserved in subnet {1} (network, broadcast or gateway address)")]
    Reserved(Ipv4Addr, Subnet),
    #[error("address {0} is already in use")]
    InUse(Ipv4Addr),
    #[error("no available IPv4 addresses in {0}")]
    Exhausted(Subnet),
    #[error("no available pool for a new network: every default pool overlaps a network in use")]
    NoPool,
}

/// An IPv4 subnet, `a.b.c.d/n`. The address is normalised to the network address on parse,
/// except that [`Subnet::parse_host`] keeps the host part (for `IP/prefix` addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// A subnet with the host bits of `addr` cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Subnet, IpamError> {
        if prefix > 32 {
            return Err(IpamError::InvalidCidr(format!("{addr}/{prefix}")));
        }
        Ok(Subnet {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    /// The last address of the subnet (broadcast for prefixes below 31).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely in this subnet.
    pub fn contains_subnet(&self, other: &Subnet) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }

    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The first usable host address (`.1` in a /24): Docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        if self.prefix >= 31 {
            self.addr
        } else {
            Ipv4Addr::from(u32::from(self.addr) + 1)
        }
    }

    /// Whether `ip` is the network or broadcast address (never handed out below /31).
    fn is_edge(&self, ip: Ipv4Addr) -> bool {
        self.prefix < 31 && (ip == self.network() || ip == self.last())
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpamError::InvalidCidr(s.to_owned());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        Subnet::new(addr, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses an IPv4 address as clients send it (`--ip`, `--gateway`).
pub fn parse_addr(s: &str) -> Result<Ipv4Addr, IpamError> {
    s.trim()
        .parse()
        .map_err(|_| IpamError::InvalidAddress(s.to_owned()))
}

/// One network's address pool: subnet, gateway and the optional range addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pool {
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<Subnet>,
}

impl Pool {
    /// Builds a pool from the client's strings (`IPAM.Config[]`): the gateway defaults to the
    /// first host address; gateway and range must lie in the subnet.
    pub fn from_config(
        subnet: &str,
        gateway: Option<&str>,
        ip_range: Option<&str>,
    ) -> Result<Pool, IpamError> {
        let subnet: Subnet = subnet.parse()?;
        if subnet.prefix > 30 {
            return Err(IpamError::InvalidCidr(format!(
                "{subnet}: the subnet is too small for a gateway and a container (use /30 or larger)"
            )));
        }
        let gateway = match gateway.filter(|g| !g.is_empty()) {
            Some(g) => {
                let g = parse_addr(g)?;
                if !subnet.contains(g) {
                    return Err(IpamError::OutsideSubnet {
                        what: "gateway",
                        addr: g.to_string(),
                        subnet,
                    });
                }
                if subnet.is_edge(g) {
                    return Err(IpamError::Reserved(g, subnet));
                }
                g
            }
            None => subnet.first_host(),
        };
        let ip_range = match ip_range.filter(|r| !r.is_empty()) {
            Some(r) => {
                let r: Subnet = r.parse()?;
                if !subnet.contains_subnet(&r) {
                    return Err(IpamError::OutsideSubnet {
                        what: "ip-range",
                        addr: r.to_string(),
                        subnet,
                    });
                }
                Some(r)
            }
            None => None,
        };
        Ok(Pool {
            subnet,
            gateway,
            ip_range,
        })
    }

    /// The pool Berth picks for a network without `--subnet`: gateway `.1`.
    pub fn default_for(subnet: Subnet) -> Pool {
        Pool {
            subnet,
            gateway: subnet.first_host(),
            ip_range: None,
        }
    }

    /// Checks a static address request: in the subnet, not reserved, not leased.
    pub fn check_static(
        &self,
        ip: Ipv4Addr,
        used: &BTreeSet<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if !self.subnet.contains(ip) {
            return Err(IpamError::OutsideSubnet {
                what: "address",
                addr: ip.to_string(),
                subnet: self.subnet,
            });
        }
        if self.subnet.is_edge(ip) || ip == self.gateway {
            return Err(IpamError::Reserved(ip, self.subnet));
        }
        if used.contains(&ip) {
            return Err(IpamError::InUse(ip));
        }
        Ok(ip)
    }

    /// Allocates an address: `requested` if given (checked), else the lowest free address of the
    /// range (or subnet) that is neither reserved (the subnet's and the range's network and
    /// broadcast addresses, the gateway) nor in `used`.
    pub fn allocate(
        &self,
        used: &BTreeSet<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = requested {
            return self.check_static(ip, used);
        }
        let range = self.ip_range.unwrap_or(self.subnet);
        let (first, last) = (u32::from(range.network()), u32::from(range.last()));
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| {
                !self.subnet.is_edge(*ip)
                    && !range.is_edge(*ip)
                    && *ip != self.gateway
                    && !used.contains(ip)
            })
            .ok_or(IpamError::Exhausted(range))
    }
}

/// Docker's default bridge subnet, used for Berth's `bridge` network.
pub const DEFAULT_BRIDGE_SUBNET: Subnet = Subnet {
    addr: Ipv4Addr::new(172, 17, 0, 0),
    prefix: 16,
};

/// The default pools for new networks, in the order they are tried: 172.18.0.0/16 up to
/// 172.31.0.0/16, then 192.168.0.0/20 up to 192.168.240.0/20 (Docker's local defaults).
pub fn default_pools() -> impl Iterator<Item = Subnet> {
    let b = (18u8..=31).map(|x| Subnet {
        addr: Ipv4Addr::new(172, x, 0, 0),
        prefix: 16,
    });
    let c = (0u8..16).map(|x| Subnet {
        addr: Ipv4Addr::new(192, 168, x * 16, 0),
        prefix: 20,
    });
    b.chain(c)
}

/// The first default pool that overlaps none of `in_use`.
pub fn pick_default(in_use: &[Subnet]) -> Result<Subnet, IpamError> {
    default_pools()
        .find(|p| !in_use.iter().any(|u| u.overlaps(p)))
        .ok_or(IpamError::NoPool)
}

/// Root: unit tests of the IPAM (no privileges needed).
#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_normalise_and_reject() {
        let s: Subnet = "10.1.2.3/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.1.0.0/16");
        assert_eq!(s.last(), ip("10.1.255.255"));
        for bad in ["10.1.0.0", "10.1.0.0/33", "300.1.0.0/8", "x/8", ""] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad} accepted");
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"10.1.0.0/16\"");
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
    }

    #[test]
    fn overlap_detection() {
        let a: Subnet = "10.1.0.0/16".parse().unwrap();
        let b: Subnet = "10.1.5.0/24".parse().unwrap();
        let c: Subnet = "10.2.0.0/16".parse().unwrap();
        let all: Subnet = "0.0.0.0/0".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
        assert!(all.overlaps(&c));
        assert!(a.contains_subnet(&b) && !b.contains_subnet(&a));
    }

    #[test]
    fn default_pools_skip_those_in_use() {
        assert_eq!(pick_default(&[]).unwrap().to_string(), "172.18.0.0/16");
        let used =
            ["172.18.0.0/16", "172.19.3.0/24", "10.0.0.0/8"].map(|s| s.parse::<Subnet>().unwrap());
        assert_eq!(pick_default(&used).unwrap().to_string(), "172.20.0.0/16");
        let everything = ["0.0.0.0/0".parse::<Subnet>().unwrap()];
        assert_eq!(pick_default(&everything), Err(IpamError::NoPool));
    }

    #[test]
    fn allocation_is_sequential_and_skips_reserved_and_used() {
        let pool = Pool::from_config("10.5.0.0/24", None, None).unwrap();
        assert_eq!(pool.gateway, ip("10.5.0.1"));
        let mut used = BTreeSet::new();
        let a = pool.allocate(&used, None).unwrap();
        assert_eq!(a, ip("10.5.0.2"));
        used.insert(a);
        assert_eq!(pool.allocate(&used, None).unwrap(), ip("10.5.0.3"));
        used.remove(&a);
        assert_eq!(pool.allocate(&used, None).unwrap(), ip("10.5.0.2"));
    }

    #[test]
    fn ip_range_restricts_dynamic_addresses_only() {
        let pool =
            Pool::from_config("10.1.0.0/16", Some("10.1.0.254"), Some("10.1.7.0/24")).unwrap();
        let used = BTreeSet::new();
        assert_eq!(pool.allocate(&used, None).unwrap(), ip("10.1.7.1"));
        // A static address outside the range but inside the subnet is fine (Docker's rule).
        assert_eq!(
            pool.allocate(&used, Some(ip("10.1.0.9"))).unwrap(),
            ip("10.1.0.9")
        );
        assert!(Pool::from_config("10.1.0.0/16", None, Some("10.2.0.0/24")).is_err());
        assert!(Pool::from_config("10.1.0.0/16", Some("10.2.0.1"), None).is_err());
        assert!(Pool::from_config("10.1.0.0/16", Some("10.1.0.0"), None).is_err());
        assert!(Pool::from_config("10.1.0.0/31", None, None).is_err());
    }

    #[test]
    fn static_addresses_are_checked() {
        let pool = Pool::from_config("1.2.0.0/16", None, None).unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(
            pool.allocate(&used, Some(ip("1.2.3.4"))).unwrap(),
            ip("1.2.3.4")
        );
        used.insert(ip("1.2.3.4"));
        assert_eq!(
            pool.allocate(&used, Some(ip("1.2.3.4"))),
            Err(IpamError::InUse(ip("1.2.3.4")))
        );
        assert!(matches!(
            pool.allocate(&used, Some(ip("1.3.0.1"))),
            Err(IpamError::OutsideSubnet { .. })
        ));
        for reserved in ["1.2.0.0", "1.2.0.1", "1.2.255.255"] {
            assert!(matches!(
                pool.allocate(&used, Some(ip(reserved))),
                Err(IpamError::Reserved(..))
            ));
        }
        // Dynamic allocation steps over the static lease.
        used.insert(ip("1.2.0.2"));
        assert_eq!(pool.allocate(&used, None).unwrap(), ip("1.2.0.3"));
    }

    #[test]
    fn exhaustion() {
        let pool = Pool::from_config("10.9.0.0/30", None, None).unwrap();
        let mut used = BTreeSet::new();
        let only = pool.allocate(&used, None).unwrap();
        assert_eq!(only, ip("10.9.0.2"));
        used.insert(only);
        assert!(matches!(
            pool.allocate(&used, None),
            Err(IpamError::Exhausted(_))
        ));
    }
}
