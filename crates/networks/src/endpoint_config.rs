//! What a client asks of one container's endpoint on one network
//! (`NetworkingConfig.EndpointsConfig.<net>` at create, `EndpointConfig` of `network connect`),
//! kept on the membership for inspect: links, driver options, the requested IPv6 and
//! link-local addresses, and the MAC address (applied to the interface when it is wired).
//!
//! The static IPv4 address and the aliases are kept apart (`Member::requested_ip`, checked
//! against the pool; `Member::aliases`, which the embedded resolver answers).
//! Berth's networks are IPv4 only: a requested IPv6 or link-local address is kept and shown,
//! not configured (a documented difference).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::NetworkError;

/// One endpoint's settings as asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    /// `container:alias` entries (Docker resolves them through its DNS on user networks).
    pub links: Vec<String>,
    pub driver_opts: BTreeMap<String, String>,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
    #[serde(rename = "LinkLocalIPs")]
    pub link_local_ips: Vec<String>,
    /// `aa:bb:cc:dd:ee:ff`; empty = the kernel's random one.
    pub mac_address: String,
}

impl EndpointConfig {
    /// Checks the settings Berth acts on (the MAC address).
    pub fn validate(&self) -> Result<(), NetworkError> {
        if !self.mac_address.is_empty() {
            parse_mac(&self.mac_address)?;
        }
        Ok(())
    }

    /// The requested MAC address, parsed (`None` when not asked for).
    pub fn mac(&self) -> Result<Option<[u8; 6]>, NetworkError> {
        if self.mac_address.is_empty() {
            return Ok(None);
        }
        parse_mac(&self.mac_address).map(Some)
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`; refuses multicast addresses (the low bit of the first byte), which
/// no interface may have.
pub fn parse_mac(s: &str) -> Result<[u8; 6], NetworkError> {
    let bad = |why: &str| NetworkError::Invalid(format!("invalid MAC address {s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("use six hex bytes separated by colons"));
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return Err(bad("use six hex bytes separated by colons"));
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad("not hexadecimal"))?;
    }
    if mac[0] & 1 == 1 {
        return Err(bad("a multicast address cannot be an interface's"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:0a").unwrap(),
            [2, 0x42, 0xac, 0x11, 0, 0x0a]
        );
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:0a").is_err());
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
    }
}
