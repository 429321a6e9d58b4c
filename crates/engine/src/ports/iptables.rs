//! The DNAT rules of published ports, through the system's `iptables` (`-w`: waits for the
//! xtables lock), in a chain of the `nat` table that only this engine writes:
//! `BERTH` for the default root, `BERTH-<10 hex of the root path's sha256>` for any other, so two
//! engines never touch each other's rules.
//!
//! The chain is reached from `PREROUTING` and `OUTPUT` for packets to a local address (`OUTPUT`
//! leaves 127.0.0.0/8 alone: loopback is the userland proxy's, so no `route_localnet` is needed).
//! Each rule is `-p PROTO [-d HOST_IP] --dport HOST_PORT ! -i BRIDGE -j DNAT --to-destination
//! CONTAINER_IP:PORT`, tagged with a comment naming the container. The chain is made at the first
//! publish and removed (with its jumps) at a graceful stop; at boot a chain a killed engine left
//! behind is removed before anything is published again.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::spec::PortBinding;
#[cfg(test)]
use super::spec::Proto;
use crate::error::EngineError;

/// The longest one `iptables` call may take (it waits for the xtables lock at most this long).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// The chain of the engine on `root`.
pub fn chain_for(root: &Path) -> String {
    if root == Path::new(crate::cgroups::DEFAULT_ROOT) {
        return "BERTH".to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("BERTH-{hex}")
}

/// One DNAT rule, as its `iptables` arguments after `-A/-D CHAIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule(Vec<String>);

impl Rule {
    pub fn dnat(
        b: &PortBinding,
        host_port: u16,
        bridge: &str,
        target: Ipv4Addr,
        container_id: &str,
    ) -> Rule {
        let mut args = vec!["-p".to_owned(), b.proto.as_str().to_owned()];
        if let Some(ip) = b.host_ip {
            args.extend(["-d".to_owned(), format!("{ip}/32")]);
        }
        args.extend(
            [
                "-m",
                b.proto.as_str(),
                "--dport",
                &host_port.to_string(),
                "!",
                "-i",
                bridge,
                "-m",
                "comment",
                "--comment",
                &format!("berth:{}", &container_id[..12.min(container_id.len())]),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{target}:{}", b.container_port),
            ]
            .map(str::to_owned),
        );
        Rule(args)
    }

    /// Whether a loopback-only binding (the proxy serves it alone).
    pub fn needed(b: &PortBinding) -> bool {
        !b.host_ip.is_some_and(|ip| ip.is_loopback())
    }

    #[cfg(test)]
    pub fn args(&self) -> &[String] {
        &self.0
    }
}

/// The engine's `iptables` chain.
#[derive(Debug)]
pub struct Firewall {
    chain: String,
}

fn failed(what: String) -> EngineError {
    EngineError::Firewall(what)
}

async fn iptables(args: &[&str]) -> Result<(), EngineError> {
    let mut cmd = tokio::process::Command::new("iptables");
    cmd.arg("-w")
        .arg("5")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let line = format!("iptables {}", args.join(" "));
    let out = tokio::time::timeout(CALL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| failed(format!("{line}: no answer in {CALL_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("{line}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(failed(format!("{line}: {}", stderr.trim())))
}

/// The jumps into the chain: (built-in chain, match arguments).
fn jumps() -> [(&'static str, Vec<&'static str>); 2] {
    [
        ("PREROUTING", vec!["-m", "addrtype", "--dst-type", "LOCAL"]),
        (
            "OUTPUT",
            vec![
                "!",
                "-d",
                "127.0.0.0/8",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
            ],
        ),
    ]
}

impl Firewall {
    pub fn new(root: &Path) -> Firewall {
        Firewall {
            chain: chain_for(root),
        }
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Boot: removes the chain, its rules and its jumps if a killed engine left them (nothing is
    /// published yet; the first publish makes the chain again).
    pub async fn sweep(&self) -> Result<(), EngineError> {
        if iptables(&["-t", "nat", "-S", self.chain.as_str()])
            .await
            .is_ok()
        {
            self.remove().await;
        }
        Ok(())
    }

    /// Creates the chain and its jumps when missing (before the first publish).
    pub async fn ensure(&self) -> Result<(), EngineError> {
        let c = self.chain.as_str();
        if iptables(&["-t", "nat", "-S", c]).await.is_err() {
            iptables(&["-t", "nat", "-N", c]).await?;
        }
        for (builtin, matches) in jumps() {
            let mut rule = matches.clone();
            rule.extend(["-j", c]);
            let mut check = vec!["-t", "nat", "-C", builtin];
            check.extend(&rule);
            if iptables(&check).await.is_err() {
                let mut add = vec!["-t", "nat", "-A", builtin];
                add.extend(&rule);
                iptables(&add).await?;
            }
        }
        Ok(())
    }

    /// Removes the jumps, the rules and the chain (graceful daemon stop, boot sweep).
    pub async fn remove(&self) {
        let c = self.chain.as_str();
        for (builtin, matches) in jumps() {
            let mut del = vec!["-t", "nat", "-D", builtin];
            del.extend(&matches);
            del.extend(["-j", c]);
            let _ = iptables(&del).await;
        }
        let _ = iptables(&["-t", "nat", "-F", c]).await;
        if let Err(e) = iptables(&["-t", "nat", "-X", c]).await {
            tracing::warn!(error = %e, "removing the published ports' chain");
        }
    }

    /// Adds `rule` to the chain.
    pub async fn add(&self, rule: &Rule) -> Result<(), EngineError> {
        let mut args = vec!["-t", "nat", "-A", self.chain.as_str()];
        args.extend(rule.0.iter().map(String::as_str));
        iptables(&args).await
    }

    /// Deletes `rule` from the chain (a missing rule is not an error worth more than a log).
    pub async fn delete(&self, rule: &Rule) {
        let mut args = vec!["-t", "nat", "-D", self.chain.as_str()];
        args.extend(rule.0.iter().map(String::as_str));
        if let Err(e) = iptables(&args).await {
            tracing::warn!(error = %e, "removing a published port's rule");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_iptables() {
        assert_eq!(chain_for(Path::new("/var/lib/berth")), "BERTH");
        let other = chain_for(Path::new("/tmp/x/root"));
        assert!(other.starts_with("BERTH-") && other.len() <= 28, "{other}");
        assert_ne!(other, chain_for(Path::new("/tmp/y/root")));
    }

    #[test]
    fn dnat_rule_names_the_container_and_target() {
        let b = PortBinding {
            container_port: 80,
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 8080,
        };
        let r = Rule::dnat(
            &b,
            8080,
            "br-0123",
            Ipv4Addr::new(172, 17, 0, 2),
            &"a".repeat(64),
        );
        let line = r.args().join(" ");
        assert_eq!(
            line,
            "-p tcp -m tcp --dport 8080 ! -i br-0123 -m comment --comment berth:aaaaaaaaaaaa \
             -j DNAT --to-destination 172.17.0.2:80"
        );
        assert!(!Rule::needed(&PortBinding {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            ..b.clone()
        }));
        assert!(Rule::needed(&b));
    }
}
