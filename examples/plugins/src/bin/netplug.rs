//! `netplug`: an example network plugin on the SDK speaking Docker's remote `NetworkDriver` and
//! `IpamDriver` protocols (it answers only `/Plugin.Activate`, so it works with Docker too). Its
//! data plane: one Linux bridge per network (`np<net10>`, the gateway address on it) and one veth
//! pair per endpoint (host end `nh<ep10>` on the bridge; the peer `nc<ep10>` is handed to the
//! engine as `SrcName` and becomes `eth<N>` inside the container), made with `ip` commands, so it
//! must run in the host's network namespace with CAP_NET_ADMIN (load it with `--socket`). Its IPAM
//! hands out the pool the user asked for (else `10.251.<n>.0/24`) and addresses in it.
//!
//! For tests and demos: `--log FILE` appends one JSON line per call (`{"call", "body"}`),
//! `--fail METHOD=500|200` makes a call fail (500 + `Err`, or 200 + `Err`/IPAM `Error`; `Join`
//! fails after its veth pair was made, to show the engine cleans up), `--delay METHOD=MS` answers a
//! call late (a slow or hung plugin), `--stall-file FILE` makes the calls it lists never answer
//! (a crash mid-call), and `--mvp` also answers the
//! MVP v2 handshake and network messages, appending its name to the `chain` option of `create`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use berth_plugin_sdk::protocol::Protocol;
use berth_plugin_sdk::protocol::mvp::{NetworkEvent, NetworkMessage};
use berth_plugin_sdk::{HandlerError, Plugin, PluginBuilder, Reply};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Socket to serve on.
    #[arg(
        long,
        env = "NETPLUG_SOCKET",
        default_value = "/run/docker/plugins/netplug.sock"
    )]
    socket: PathBuf,
    /// Name (MVP handshake; also used in the `chain` option).
    #[arg(long, default_value = "netplug")]
    name: String,
    /// Append one JSON line per call to this file.
    #[arg(long, env = "NETPLUG_LOG")]
    log: Option<PathBuf>,
    /// `METHOD=500` or `METHOD=200`: fail that call (e.g. `Join=500`, `RequestAddress=200`).
    #[arg(long)]
    fail: Vec<String>,
    /// `METHOD=MS`: answer that call this many milliseconds late (`CreateNetwork=600000` is a
    /// hung plugin); the call is logged when it arrives. Repeatable.
    #[arg(long, value_name = "METHOD=MS")]
    delay: Vec<String>,
    /// A file read at each call, one `METHOD` or `METHOD before` a line: a listed call does its
    /// work (or, with `before`, nothing) and is then never answered, so a test can kill the
    /// engine while the call is in flight and see what a crash leaves plugin-side. Editing the
    /// file changes what stalls without restarting the plugin (which would lose its state).
    #[arg(long, value_name = "FILE")]
    stall_file: Option<PathBuf>,
    /// Also speak the MVP v2 handshake and network messages.
    #[arg(long)]
    mvp: bool,
    /// Misbehave: answer Join with this `SrcName` (an interface not made for the endpoint)
    /// instead of the veth it made. The engine must refuse it.
    #[arg(long)]
    src_name: Option<String>,
}

#[derive(Default)]
struct State {
    /// Network id → (bridge, gateway CIDR).
    networks: BTreeMap<String, (String, String)>,
    /// Pool id (= pool CIDR) → addresses handed out.
    pools: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    next_auto: u8,
}

struct Ctx {
    name: String,
    log: Option<PathBuf>,
    fail: BTreeMap<String, u16>,
    delay: BTreeMap<String, u64>,
    stall_file: Option<PathBuf>,
    src_name: Option<String>,
    state: Mutex<State>,
    /// Held while a call does its work (see [`route`]).
    ops: Mutex<()>,
}

type Shared = Arc<Ctx>;

/// When a call listed in `--stall-file` stops.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stall {
    Before,
    After,
}

impl Ctx {
    fn record(&self, call: &str, body: &Value) {
        if let Some(path) = &self.log
            && let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        {
            // One `write` per line: the driver and the IPAM (two processes) append to one log,
            // and `writeln!` on a `File` writes each formatted piece with a call of its own, so
            // their lines interleaved mid-line.
            let line = format!(
                "{}\n",
                json!({"plugin": self.name, "call": call, "body": body})
            );
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// Whether `--stall-file` lists `method` now.
    fn stall(&self, method: &str) -> Option<Stall> {
        let text = std::fs::read_to_string(self.stall_file.as_ref()?).ok()?;
        text.lines()
            .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
                [m] if m == method => Some(Stall::After),
                [m, "before"] if m == method => Some(Stall::Before),
                _ => None,
            })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Asks `ip`, not `/sys/class/net`: sysfs shows the links of the network namespace it was
/// mounted in, which is not this process's when it was started with `nsenter --net` alone (the
/// torture test does that); a delete that believed its link gone left it behind.
fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn short(id: &str) -> &str {
    &id[..10.min(id.len())]
}

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn parse_cidr(c: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, p) = c.split_once('/')?;
    Some((a.parse().ok()?, p.parse().ok()?))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// Adds a route for `Interface.Method` that logs the call, applies `--delay` and `--fail`, and
/// runs `f`.
fn route<F>(b: PluginBuilder, ctx: &Shared, interface: &str, method: &str, f: F) -> PluginBuilder
where
    F: Fn(&Ctx, &Value) -> Result<Value, String> + Send + Sync + 'static,
{
    let ctx = ctx.clone();
    let f = Arc::new(f);
    let call = format!("{interface}.{method}");
    let err_key = if interface == "IpamDriver" {
        "Error"
    } else {
        "Err"
    };
    b.route_raw(format!("/{call}"), move |body| {
        let (ctx, f, call) = (ctx.clone(), f.clone(), call.clone());
        async move {
            let req: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            ctx.record(&call, &req);
            let method = call.split('.').nth(1).unwrap_or_default();
            // A delayed call does its work only when the delay is over (a hung call makes
            // nothing).
            if let Some(ms) = ctx.delay.get(method) {
                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await;
            }
            let stall = ctx.stall(method);
            if stall == Some(Stall::Before) {
                std::future::pending::<()>().await;
            }
            let injected = ctx
                .fail
                .get(method)
                .map(|code| (*code, format!("{} refuses {method} (injected)", ctx.name)));
            // One call's work at a time: a call still running for an engine that died (a
            // CreateNetwork half-way through its `ip` commands) finishes before the next
            // engine's tear-down of the same object starts, instead of racing it.
            let result = {
                let _one = ctx.ops.lock().unwrap_or_else(|p| p.into_inner());
                match injected {
                    // Join fails after its work (the veth pair exists), the others before theirs.
                    Some(err) if method == "Join" => {
                        f(&ctx, &req).and(Err(err.1)).map_err(|e| (err.0, e))
                    }
                    Some(err) => Err(err),
                    None => f(&ctx, &req).map_err(|e| (500, e)),
                }
            };
            if stall == Some(Stall::After) {
                std::future::pending::<()>().await;
            }
            match result {
                Ok(v) => Reply::json(&v),
                Err((200, msg)) => Reply::json(&json!({ err_key: msg })),
                Err((code, msg)) => Reply::error(code, &msg),
            }
        }
    })
}

fn create_network(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let id = s(req, "NetworkID");
    let v4 = req
        .get("IPv4Data")
        .and_then(|d| d.get(0))
        .cloned()
        .unwrap_or(json!({}));
    let gateway = s(&v4, "Gateway");
    if parse_cidr(&gateway).is_none() {
        return Err(format!("netplug needs an IPv4 gateway, got {gateway:?}"));
    }
    let bridge = format!("np{}", short(&id));
    if !link_exists(&bridge) {
        ip(&["link", "add", &bridge, "type", "bridge"])?;
    }
    let setup = ip(&["addr", "replace", &gateway, "dev", &bridge])
        .and_then(|()| ip(&["link", "set", &bridge, "up"]));
    if let Err(e) = setup {
        let _ = ip(&["link", "del", &bridge]);
        return Err(e);
    }
    ctx.state().networks.insert(id, (bridge, gateway));
    Ok(json!({}))
}

fn delete_network(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let id = s(req, "NetworkID");
    let bridge = ctx
        .state()
        .networks
        .remove(&id)
        .map(|(b, _)| b)
        .unwrap_or_else(|| format!("np{}", short(&id)));
    if link_exists(&bridge) {
        ip(&["link", "del", &bridge])?;
    }
    Ok(json!({}))
}

fn join(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let net = s(req, "NetworkID");
    let ep = s(req, "EndpointID");
    let (bridge, gateway) = ctx
        .state()
        .networks
        .get(&net)
        .cloned()
        .ok_or_else(|| format!("network {net} is unknown to netplug"))?;
    let (host, peer) = (format!("nh{}", short(&ep)), format!("nc{}", short(&ep)));
    ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
    if let Err(e) = ip(&["link", "set", &host, "master", &bridge, "up"]) {
        let _ = ip(&["link", "del", &host]);
        return Err(e);
    }
    let gw = gateway.split('/').next().unwrap_or_default();
    Ok(json!({
        "InterfaceName": {"SrcName": ctx.src_name.clone().unwrap_or(peer), "DstPrefix": "eth"},
        "Gateway": gw,
        "StaticRoutes": [],
        "DisableGatewayService": true,
    }))
}

/// Leave and DeleteEndpoint: the veth pair goes (idempotent).
fn drop_endpoint(_ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let ep = s(req, "EndpointID");
    for name in [format!("nh{}", short(&ep)), format!("nc{}", short(&ep))] {
        if link_exists(&name) {
            ip(&["link", "del", &name])?;
        }
    }
    Ok(json!({}))
}

fn request_pool(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let wanted = s(req, "Pool");
    let mut st = ctx.state();
    let pool = if wanted.is_empty() {
        loop {
            let n = st.next_auto;
            st.next_auto = st.next_auto.wrapping_add(1);
            let p = format!("10.251.{n}.0/24");
            if !st.pools.contains_key(&p) {
                break p;
            }
        }
    } else {
        let (a, p) = parse_cidr(&wanted).ok_or_else(|| format!("bad pool {wanted:?}"))?;
        format!("{}/{p}", Ipv4Addr::from(u32::from(a) & mask(p)))
    };
    st.pools.entry(pool.clone()).or_default();
    Ok(json!({"PoolID": pool, "Pool": pool, "Data": {}}))
}

fn release_pool(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    ctx.state().pools.remove(&s(req, "PoolID"));
    Ok(json!({}))
}

fn request_address(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    let pool_id = s(req, "PoolID");
    let (net, prefix) = parse_cidr(&pool_id).ok_or_else(|| format!("unknown pool {pool_id:?}"))?;
    let wanted = s(req, "Address");
    let mut st = ctx.state();
    let used = st.pools.entry(pool_id.clone()).or_default();
    let first = u32::from(net) + 1;
    let last = (u32::from(net) | !mask(prefix)).saturating_sub(1);
    let addr = if wanted.is_empty() {
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| format!("pool {pool_id} is full"))?
    } else {
        let a: Ipv4Addr = wanted
            .parse()
            .map_err(|_| format!("bad address {wanted:?}"))?;
        if used.contains(&a) {
            return Err(format!("address {a} is in use"));
        }
        a
    };
    used.insert(addr);
    Ok(json!({"Address": format!("{addr}/{prefix}"), "Data": {}}))
}

fn release_address(ctx: &Ctx, req: &Value) -> Result<Value, String> {
    if let (Some(used), Ok(a)) = (
        ctx.state().pools.get_mut(&s(req, "PoolID")),
        s(req, "Address").parse::<Ipv4Addr>(),
    ) {
        used.remove(&a);
    }
    Ok(json!({}))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut fail = BTreeMap::new();
    for f in &args.fail {
        let (m, code) = f.split_once('=').unwrap_or((f.as_str(), "500"));
        fail.insert(m.to_owned(), code.parse::<u16>()?);
    }
    let mut delay = BTreeMap::new();
    for d in &args.delay {
        let (m, ms) = d
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--delay {d}: want METHOD=MS"))?;
        delay.insert(m.to_owned(), ms.parse::<u64>()?);
    }
    let ctx: Shared = Arc::new(Ctx {
        name: args.name.clone(),
        log: args.log.clone(),
        fail,
        delay,
        stall_file: args.stall_file.clone(),
        src_name: args.src_name.clone(),
        state: Mutex::new(State::default()),
        ops: Mutex::new(()),
    });
    let protocols: &[Protocol] = if args.mvp {
        &[Protocol::V2, Protocol::Activate]
    } else {
        &[Protocol::Activate]
    };
    let mut b = Plugin::builder(args.name.clone())
        .author("Berth examples")
        .answer_only(protocols)
        .implements("NetworkDriver")
        .implements("IpamDriver");
    let nd = "NetworkDriver";
    b = route(b, &ctx, nd, "GetCapabilities", |_, _| {
        Ok(json!({"Scope": "local", "ConnectivityScope": "local"}))
    });
    b = route(b, &ctx, nd, "CreateNetwork", create_network);
    b = route(b, &ctx, nd, "DeleteNetwork", delete_network);
    b = route(b, &ctx, nd, "CreateEndpoint", |_, _| {
        Ok(json!({"Interface": {}}))
    });
    b = route(b, &ctx, nd, "EndpointOperInfo", |_, _| {
        Ok(json!({"Value": {"driver": "netplug"}}))
    });
    b = route(b, &ctx, nd, "Join", join);
    b = route(b, &ctx, nd, "Leave", drop_endpoint);
    b = route(b, &ctx, nd, "DeleteEndpoint", drop_endpoint);
    // ProgramExternalConnectivity / RevokeExternalConnectivity are not served: 404 = success.
    let id = "IpamDriver";
    b = route(b, &ctx, id, "GetCapabilities", |_, _| {
        Ok(json!({"RequiresMACAddress": false}))
    });
    b = route(b, &ctx, id, "GetDefaultAddressSpaces", |_, _| {
        Ok(
            json!({"LocalDefaultAddressSpace": "netplug-local", "GlobalDefaultAddressSpace": "netplug-global"}),
        )
    });
    b = route(b, &ctx, id, "RequestPool", request_pool);
    b = route(b, &ctx, id, "ReleasePool", release_pool);
    b = route(b, &ctx, id, "RequestAddress", request_address);
    b = route(b, &ctx, id, "ReleaseAddress", release_address);
    if args.mvp {
        let c = ctx.clone();
        b = b.network(move |m: NetworkMessage| {
            let c = c.clone();
            async move {
                let event = m.event.map(NetworkEvent::as_str).unwrap_or_default();
                c.record(&format!("mvp.{event}"), &json!(m));
                if c.fail.contains_key(&format!("mvp.{event}")) {
                    return Err(HandlerError::new(format!("{} refuses {event}", c.name)));
                }
                let mut out = NetworkMessage::default();
                if m.event == Some(NetworkEvent::Create) {
                    let mut opts = m.options.clone().unwrap_or_default();
                    let chain = opts.get("chain").cloned().unwrap_or_default();
                    let joined = if chain.is_empty() {
                        c.name.clone()
                    } else {
                        format!("{chain},{}", c.name)
                    };
                    opts.insert("chain".into(), joined);
                    out.options = Some(opts);
                }
                Ok::<_, HandlerError>(out)
            }
        });
    }
    b.build().serve_until_signal(&args.socket).await?;
    Ok(())
}
