//! Group 4, `NetworkDriver` and `IpamDriver`, in the order Docker calls them: IPAM
//! `GetCapabilities`, `GetDefaultAddressSpaces`, `RequestPool`, `RequestAddress` (gateway, then an
//! endpoint), driver `GetCapabilities`, `CreateNetwork`, `CreateEndpoint`, `Join`, `Leave`,
//! `DeleteEndpoint`, `DeleteNetwork`, then `ReleaseAddress` and `ReleasePool`. Join replies are
//! checked against what an engine refuses; after `DeleteNetwork` nothing may be left behind.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{Value, json};

use crate::handshake::Found;
use crate::volume_driver::mount_id;
use crate::wire::{Call, field, str_field};
use crate::{Ctx, Group, Outcome, verdict};

const G: Group = Group::Network;

/// `a.b.c.d/n` → (address, prefix).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn in_pool(addr: &str, pool: &str) -> bool {
    match (parse_cidr(addr), parse_cidr(pool)) {
        (Some((IpAddr::V4(a), _)), Some((IpAddr::V4(p), len))) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            u32::from(a) & mask == u32::from(p) & mask
        }
        _ => false,
    }
}

fn ok(c: &Call, what: &str) -> Outcome {
    verdict(c.ok(), || format!("{what} failed: {}", c.describe()))
}

/// What an engine refuses in a `Join` reply.
pub fn join_problems(v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if let Some(i) = field(v, "InterfaceName").filter(|i| !i.is_null()) {
        let src = str_field(i, "SrcName");
        if !src.is_empty() && str_field(i, "DstPrefix").is_empty() {
            p.push(format!(
                "InterfaceName.SrcName {src:?} needs a DstPrefix (eth)"
            ));
        }
    }
    for (key, v6) in [("Gateway", false), ("GatewayIPv6", true)] {
        let g = str_field(v, key);
        if !g.is_empty() {
            match g.parse::<IpAddr>() {
                Ok(ip) if ip.is_ipv6() == v6 => {}
                _ => p.push(format!(
                    "{key} must be a plain IPv{} address (not CIDR), got {g:?}",
                    if v6 { 6 } else { 4 }
                )),
            }
        }
    }
    for r in field(v, "StaticRoutes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let dst = str_field(r, "Destination");
        if parse_cidr(dst).is_none() {
            p.push(format!(
                "static route Destination must be a CIDR, got {dst:?}"
            ));
        }
        match field(r, "RouteType").and_then(Value::as_u64).unwrap_or(0) {
            0 => {
                if str_field(r, "NextHop").parse::<IpAddr>().is_err() {
                    p.push(format!(
                        "static route to {dst:?} has RouteType 0 (next hop) without a NextHop IP"
                    ));
                }
            }
            1 => {}
            t => p.push(format!("static route RouteType must be 0 or 1, got {t}")),
        }
    }
    p
}

/// Runs the group.
pub async fn run(ctx: &mut Ctx, found: &Found) {
    let has_ipam = found.implements_kind("IpamDriver");
    let has_net = found.implements_kind("NetworkDriver");
    let (mut pool, mut gw, mut addr) = {
        let base = ctx
            .opts
            .subnet
            .split_once('/')
            .and_then(|(a, _)| a.parse::<Ipv4Addr>().ok())
            .unwrap_or(Ipv4Addr::new(10, 254, 253, 0));
        let b = u32::from(base);
        (
            format!("{base}/24"),
            format!("{}/24", Ipv4Addr::from(b + 1)),
            format!("{}/24", Ipv4Addr::from(b + 2)),
        )
    };
    let mut pool_id = String::new();
    if has_ipam {
        let caps = ctx.probe.post_empty("/IpamDriver.GetCapabilities").await;
        let outcome = match caps.answer() {
            Some(a) if a.status == 404 => Outcome::Pass,
            Some(a) if a.ok() => {
                let bad: Vec<&str> = ["RequiresMACAddress", "RequiresRequestReplay"]
                    .into_iter()
                    .filter(|k| a.field(k).is_some_and(|x| !(x.is_boolean() || x.is_null())))
                    .collect();
                verdict(bad.is_empty(), || {
                    format!("{} must be booleans", bad.join(", "))
                })
            }
            _ => Outcome::Fail(format!("GetCapabilities: {}", caps.describe())),
        };
        ctx.must(
            G,
            "ipam-capabilities",
            "c-net-capabilities",
            outcome,
            Some(&caps),
        );
        let spaces = ctx
            .probe
            .post_empty("/IpamDriver.GetDefaultAddressSpaces")
            .await;
        let space = spaces
            .json()
            .map(|v| str_field(v, "LocalDefaultAddressSpace").to_owned())
            .unwrap_or_default();
        ctx.must(
            G,
            "ipam-address-spaces",
            "c-net-ipam",
            verdict(!space.is_empty(), || {
                format!(
                    "GetDefaultAddressSpaces must name LocalDefaultAddressSpace: {}",
                    spaces.describe()
                )
            }),
            Some(&spaces),
        );
        let rp = ctx
            .probe
            .post(
                "/IpamDriver.RequestPool",
                &json!({"AddressSpace": space, "Pool": "", "SubPool": "", "Options": {}, "V6": false}),
            )
            .await;
        pool_id = rp
            .json()
            .map(|v| str_field(v, "PoolID").to_owned())
            .unwrap_or_default();
        let got_pool = rp
            .json()
            .map(|v| str_field(v, "Pool").to_owned())
            .unwrap_or_default();
        ctx.must(
            G,
            "ipam-request-pool",
            "c-net-ipam",
            verdict(
                !pool_id.is_empty() && parse_cidr(&got_pool).is_some(),
                || {
                    format!(
                        "RequestPool must return a PoolID and a CIDR Pool: {}",
                        rp.describe()
                    )
                },
            ),
            Some(&rp),
        );
        if pool_id.is_empty() {
            ctx.skip_group(G, "RequestPool failed: address and network checks not run");
            return;
        }
        pool = got_pool;
        let req = |opts: Value| json!({"PoolID": pool_id, "Address": "", "Options": opts});
        let g = ctx
            .probe
            .post(
                "/IpamDriver.RequestAddress",
                &req(json!({"RequestAddressType": "com.docker.network.gateway"})),
            )
            .await;
        let e = ctx
            .probe
            .post("/IpamDriver.RequestAddress", &req(json!({})))
            .await;
        let ga = g
            .json()
            .map(|v| str_field(v, "Address").to_owned())
            .unwrap_or_default();
        let ea = e
            .json()
            .map(|v| str_field(v, "Address").to_owned())
            .unwrap_or_default();
        let mut p = Vec::new();
        for (what, c, a) in [("gateway", &g, &ga), ("endpoint", &e, &ea)] {
            if !c.ok() {
                p.push(format!("{what} RequestAddress failed: {}", c.describe()));
            } else if !in_pool(a, &pool) {
                p.push(format!("{what} Address {a:?} must be a CIDR inside {pool}"));
            }
        }
        if p.is_empty() && ga == ea {
            p.push(format!(
                "two RequestAddress calls got the same address {ga}"
            ));
        }
        ctx.must(
            G,
            "ipam-request-address",
            "c-net-ipam",
            verdict(p.is_empty(), || p.join("; ")),
            Some(&e),
        );
        if p.is_empty() {
            gw = ga;
            addr = ea;
        }
    }

    if has_net {
        driver_sequence(ctx, &pool, &gw, &addr).await;
    }

    if has_ipam {
        let mut last = None;
        let mut p = Vec::new();
        for a in [&addr, &gw] {
            let ip = a.split('/').next().unwrap_or_default();
            let c = ctx
                .probe
                .post(
                    "/IpamDriver.ReleaseAddress",
                    &json!({"PoolID": pool_id, "Address": ip}),
                )
                .await;
            if !c.ok() {
                p.push(format!("ReleaseAddress {ip}: {}", c.describe()));
            }
            last = Some(c);
        }
        ctx.must(
            G,
            "ipam-release-address",
            "c-net-ipam",
            verdict(p.is_empty(), || p.join("; ")),
            last.as_ref(),
        );
        let rel = ctx
            .probe
            .post("/IpamDriver.ReleasePool", &json!({"PoolID": pool_id}))
            .await;
        ctx.must(
            G,
            "ipam-release-pool",
            "c-net-ipam",
            ok(&rel, "ReleasePool"),
            Some(&rel),
        );
        let after = ctx
            .probe
            .post(
                "/IpamDriver.RequestAddress",
                &json!({"PoolID": pool_id, "Address": "", "Options": {}}),
            )
            .await;
        ctx.should(
            G,
            "ipam-released-pool",
            "c-net-leftovers",
            verdict(after.answer().is_some_and(|a| a.proper_error()), || {
                format!(
                    "RequestAddress on a released pool must fail with Error/Err, got {}",
                    after.describe()
                )
            }),
            Some(&after),
        );
    }
}

async fn driver_sequence(ctx: &mut Ctx, pool: &str, gw: &str, addr: &str) {
    let caps = ctx.probe.post_empty("/NetworkDriver.GetCapabilities").await;
    let outcome = match caps.json() {
        Some(v) => {
            let scope = str_field(v, "Scope");
            let conn = str_field(v, "ConnectivityScope");
            verdict(
                matches!(scope, "local" | "global") && matches!(conn, "" | "local" | "global"),
                || {
                    format!(
                        "Scope must be local|global and ConnectivityScope empty|local|global, got {scope:?}/{conn:?}"
                    )
                },
            )
        }
        None => Outcome::Fail(format!("GetCapabilities: {}", caps.describe())),
    };
    ctx.must(
        G,
        "driver-capabilities",
        "c-net-capabilities",
        outcome,
        Some(&caps),
    );
    let nid = mount_id();
    let eid = mount_id();
    let create_body = json!({
        "NetworkID": nid,
        "Options": {"com.docker.network.generic": {}, "com.docker.network.enable_ipv4": true,
                    "com.docker.network.enable_ipv6": false},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool, "Gateway": gw}],
        "IPv6Data": []
    });
    let create = ctx
        .probe
        .post("/NetworkDriver.CreateNetwork", &create_body)
        .await;
    ctx.must(
        G,
        "driver-create-network",
        "c-net-order",
        ok(&create, "CreateNetwork"),
        Some(&create),
    );
    if !create.ok() {
        ctx.skip_group(G, "CreateNetwork failed: endpoint checks not run");
        return;
    }
    let ids = json!({"NetworkID": nid, "EndpointID": eid});
    let ep = ctx
        .probe
        .post(
            "/NetworkDriver.CreateEndpoint",
            &json!({"NetworkID": nid, "EndpointID": eid,
                    "Interface": {"Address": addr, "AddressIPv6": "", "MacAddress": ""},
                    "Options": {}}),
        )
        .await;
    let changed = ep
        .json()
        .and_then(|v| field(v, "Interface"))
        .map(|i| str_field(i, "Address").to_owned())
        .filter(|a| !a.is_empty() && a != addr);
    ctx.must(
        G,
        "driver-create-endpoint",
        "c-net-order",
        match (&changed, ep.ok()) {
            (_, false) => Outcome::Fail(format!("CreateEndpoint failed: {}", ep.describe())),
            (Some(a), true) => Outcome::Fail(format!(
                "the reply changed the endpoint's Address {addr} to {a}: a driver may only fill empty fields"
            )),
            (None, true) => Outcome::Pass,
        },
        Some(&ep),
    );
    let sandbox = format!("/var/run/docker/netns/berth-check-{}", ctx.tag);
    let join = ctx
        .probe
        .post(
            "/NetworkDriver.Join",
            &json!({"NetworkID": nid, "EndpointID": eid, "SandboxKey": sandbox, "Options": {}}),
        )
        .await;
    let src = join
        .json()
        .and_then(|v| field(v, "InterfaceName"))
        .map(|i| str_field(i, "SrcName").to_owned())
        .unwrap_or_default();
    let link_seen = !src.is_empty() && std::path::Path::new("/sys/class/net").join(&src).exists();
    let problems = join.json().map(join_problems);
    ctx.must(
        G,
        "driver-join",
        "c-net-join",
        match problems {
            None => Outcome::Fail(format!("Join failed: {}", join.describe())),
            Some(p) => verdict(p.is_empty(), || p.join("; ")),
        },
        Some(&join),
    );
    let leave = ctx.probe.post("/NetworkDriver.Leave", &ids).await;
    ctx.must(
        G,
        "driver-leave",
        "c-net-order",
        ok(&leave, "Leave"),
        Some(&leave),
    );
    let del_ep = ctx.probe.post("/NetworkDriver.DeleteEndpoint", &ids).await;
    ctx.must(
        G,
        "driver-delete-endpoint",
        "c-net-order",
        ok(&del_ep, "DeleteEndpoint"),
        Some(&del_ep),
    );
    let del = ctx
        .probe
        .post("/NetworkDriver.DeleteNetwork", &json!({"NetworkID": nid}))
        .await;
    ctx.must(
        G,
        "driver-delete-network",
        "c-net-order",
        ok(&del, "DeleteNetwork"),
        Some(&del),
    );

    // Leftovers: the Join link is gone, and the same network id can be created (and deleted) again.
    let mut p = Vec::new();
    if link_seen && std::path::Path::new("/sys/class/net").join(&src).exists() {
        p.push(format!(
            "interface {src} from Join still exists after DeleteNetwork"
        ));
    }
    let again = ctx
        .probe
        .post("/NetworkDriver.CreateNetwork", &create_body)
        .await;
    if again.ok() {
        let d2 = ctx
            .probe
            .post("/NetworkDriver.DeleteNetwork", &json!({"NetworkID": nid}))
            .await;
        if !d2.ok() {
            p.push(format!("second DeleteNetwork: {}", d2.describe()));
        }
    } else {
        p.push(format!(
            "re-creating the deleted network id failed (state left behind?): {}",
            again.describe()
        ));
    }
    ctx.must(
        G,
        "driver-no-leftovers",
        "c-net-leftovers",
        verdict(p.is_empty(), || p.join("; ")),
        Some(&again),
    );
}
