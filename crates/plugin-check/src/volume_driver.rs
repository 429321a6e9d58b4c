//! Group 2, Docker's `VolumeDriver`: one volume driven through the calls an engine makes (create
//! twice, get, list, path, two mounts with distinct ids, unmount of one, remove while mounted,
//! remove twice, get after remove), checking that the answers agree with each other, that errors
//! carry `{"Err": "..."}`, and that no reply is the empty or `null` body that crashed engines.

use std::path::Path;

use serde_json::{Value, json};

use crate::wire::{Call, field, str_field};
use crate::{Ctx, Group, Outcome, verdict};

const G: Group = Group::Volume;

/// A random 64-hex mount id, as Docker makes them.
pub fn mount_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..64)
        .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
        .collect()
}

/// Accumulates every reply for the shape check.
struct Driver {
    seen: Vec<Call>,
}

impl Driver {
    async fn call(&mut self, ctx: &Ctx, method: &str, body: Value) -> Call {
        let c = ctx
            .probe
            .post(&format!("/VolumeDriver.{method}"), &body)
            .await;
        self.seen.push(c.clone());
        c
    }
}

fn volume_entry<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    field(list, "Volumes")?
        .as_array()?
        .iter()
        .find(|v| str_field(v, "Name") == name)
}

fn mountpoint(c: &Call) -> String {
    c.json()
        .map(|v| str_field(v, "Mountpoint").to_owned())
        .unwrap_or_default()
}

/// A Get answer that says "no such volume" the way engines expect: an error with `Err`.
fn missing_outcome(c: &Call, what: &str) -> Outcome {
    match c.answer() {
        None => Outcome::Fail(format!("no answer: {}", c.describe())),
        Some(a) if a.ok() => {
            let vol = a.field("Volume").filter(|v| !v.is_null());
            match vol {
                Some(_) => Outcome::Fail(format!("Get of {what} returned a volume")),
                None => Outcome::Fail(format!(
                    "Get of {what} answered success without a volume; say \"no such volume\" in Err (a null Volume with no Err crashed Docker)"
                )),
            }
        }
        Some(a) if a.proper_error() => Outcome::Pass,
        Some(a) => Outcome::Fail(format!(
            "Get of {what} failed without a non-empty Err (HTTP {})",
            a.status
        )),
    }
}

fn ok_outcome(c: &Call, what: &str) -> Outcome {
    verdict(c.ok(), || format!("{what} failed: {}", c.describe()))
}

/// Runs the group.
pub async fn run(ctx: &mut Ctx) {
    let mut d = Driver { seen: Vec::new() };
    let name = format!("berth-check-{}", ctx.tag);
    let other = format!("berth-check-{}-opts", ctx.tag);
    let absent = format!("berth-check-{}-absent", ctx.tag);

    // Capabilities: optional; when answered, Scope is local or global.
    let caps = d.call(ctx, "Capabilities", json!({})).await;
    let outcome = match caps.answer() {
        Some(a) if a.status == 404 => Outcome::Pass,
        Some(a) if a.ok() => {
            let scope = a
                .field("Capabilities")
                .map(|c| str_field(c, "Scope").to_owned())
                .unwrap_or_default();
            verdict(matches!(scope.as_str(), "local" | "global"), || {
                format!("Capabilities.Scope must be \"local\" or \"global\", got {scope:?}")
            })
        }
        _ => Outcome::Fail(format!(
            "Capabilities must answer 200 or 404, got {}",
            caps.describe()
        )),
    };
    ctx.must(
        G,
        "capabilities",
        "c-vol-capabilities",
        outcome,
        Some(&caps),
    );

    let get_absent = d.call(ctx, "Get", json!({"Name": absent})).await;
    ctx.must(
        G,
        "get-missing",
        "c-vol-get-missing",
        missing_outcome(&get_absent, "a volume never created"),
        Some(&get_absent),
    );

    // Create, twice (Docker's Opts is null when the user gave none).
    let create = d
        .call(ctx, "Create", json!({"Name": name, "Opts": null}))
        .await;
    ctx.must(
        G,
        "create",
        "c-vol-create",
        ok_outcome(&create, "Create"),
        Some(&create),
    );
    if !create.ok() {
        ctx.skip_group(G, "Create failed: nothing else to check");
        return;
    }
    let again = d
        .call(ctx, "Create", json!({"Name": name, "Opts": null}))
        .await;
    ctx.must(
        G,
        "create-idempotent",
        "c-vol-create",
        ok_outcome(&again, "a second Create of the same name"),
        Some(&again),
    );
    let with_opts = d
        .call(
            ctx,
            "Create",
            json!({"Name": other, "Opts": {"berth-check": "1"}}),
        )
        .await;
    let outcome = match with_opts.answer() {
        Some(a) if a.ok() || a.proper_error() => Outcome::Pass,
        _ => Outcome::Fail(format!(
            "a Create with options must succeed or refuse them with Err, got {}",
            with_opts.describe()
        )),
    };
    ctx.must(
        G,
        "create-options",
        "c-vol-create",
        outcome,
        Some(&with_opts),
    );
    if with_opts.ok() {
        let _ = d.call(ctx, "Remove", json!({"Name": other})).await;
    }

    // Get, List, Path before any mount.
    let get = d.call(ctx, "Get", json!({"Name": name})).await;
    let outcome = match get.json().and_then(|v| field(v, "Volume")) {
        Some(v) if str_field(v, "Name") == name => volume_fields(v),
        Some(v) if !v.is_null() => Outcome::Fail(format!("Get returned another volume: {v}")),
        _ => Outcome::Fail(format!("Get of a created volume: {}", get.describe())),
    };
    ctx.must(G, "get", "c-vol-consistent", outcome, Some(&get));
    let list = d.call(ctx, "List", json!({})).await;
    let outcome = match list.json() {
        Some(v) => match volume_entry(v, &name) {
            Some(e) => volume_fields(e),
            None => Outcome::Fail("List does not contain the created volume".to_owned()),
        },
        None => Outcome::Fail(format!("List failed: {}", list.describe())),
    };
    ctx.must(G, "list", "c-vol-consistent", outcome, Some(&list));
    let path = d.call(ctx, "Path", json!({"Name": name})).await;
    ctx.must(
        G,
        "path",
        "c-vol-consistent",
        ok_outcome(&path, "Path"),
        Some(&path),
    );

    // Mount with id A, then everything agrees on the mountpoint.
    let (id_a, id_b) = (mount_id(), mount_id());
    let m_a = d
        .call(ctx, "Mount", json!({"Name": name, "ID": id_a}))
        .await;
    let mp = mountpoint(&m_a);
    ctx.must(
        G,
        "mount",
        "c-vol-mount",
        match () {
            _ if !m_a.ok() => Outcome::Fail(format!("Mount failed: {}", m_a.describe())),
            _ if !mp.starts_with('/') => Outcome::Fail(format!(
                "Mount must return an absolute Mountpoint, got {mp:?}"
            )),
            _ => Outcome::Pass,
        },
        Some(&m_a),
    );
    if !m_a.ok() {
        let _ = d.call(ctx, "Remove", json!({"Name": name})).await;
        ctx.skip_group(G, "Mount failed: mount checks not run");
        return;
    }
    let get2 = d.call(ctx, "Get", json!({"Name": name})).await;
    let path2 = d.call(ctx, "Path", json!({"Name": name})).await;
    let list2 = d.call(ctx, "List", json!({})).await;
    let get_mp = get2
        .json()
        .and_then(|v| field(v, "Volume"))
        .map(|v| str_field(v, "Mountpoint").to_owned());
    let list_mp = list2
        .json()
        .and_then(|v| volume_entry(v, &name))
        .map(|v| str_field(v, "Mountpoint").to_owned());
    let mut problems = Vec::new();
    match &get_mp {
        None => problems.push(format!("Get failed: {}", get2.describe())),
        Some(g) if !g.is_empty() && *g != mp => {
            problems.push(format!("Get says Mountpoint {g:?}, Mount said {mp:?}"))
        }
        _ => {}
    }
    if mountpoint(&path2) != mp {
        problems.push(format!(
            "Path says {:?}, Mount said {mp:?}",
            mountpoint(&path2)
        ));
    }
    match &list_mp {
        None => problems.push("List lost the volume once mounted".to_owned()),
        Some(l) if !l.is_empty() && *l != mp => {
            problems.push(format!("List says Mountpoint {l:?}, Mount said {mp:?}"))
        }
        _ => {}
    }
    ctx.must(
        G,
        "consistent-after-mount",
        "c-vol-consistent",
        verdict(problems.is_empty(), || problems.join("; ")),
        Some(&path2),
    );

    // A second mount id; unmounting the first keeps the second's mount.
    let m_b = d
        .call(ctx, "Mount", json!({"Name": name, "ID": id_b}))
        .await;
    ctx.must(
        G,
        "mount-second-id",
        "c-vol-mount-ids",
        verdict(m_b.ok() && mountpoint(&m_b) == mp, || {
            format!(
                "a second Mount with another ID must succeed with the same Mountpoint {mp:?}, got {}",
                m_b.describe()
            )
        }),
        Some(&m_b),
    );
    let marker = Path::new(&mp).join(format!(".berth-check-{}", ctx.tag));
    let marked = Path::new(&mp).is_dir() && std::fs::write(&marker, b"berth plugin check").is_ok();
    let un_a = d
        .call(ctx, "Unmount", json!({"Name": name, "ID": id_a}))
        .await;
    ctx.must(
        G,
        "unmount",
        "c-vol-mount-ids",
        ok_outcome(&un_a, "Unmount"),
        Some(&un_a),
    );
    let path3 = d.call(ctx, "Path", json!({"Name": name})).await;
    let mut problems = Vec::new();
    if mountpoint(&path3) != mp {
        problems.push(format!(
            "after Unmount of one ID, Path says {:?} while the other ID still has it mounted at {mp:?}",
            mountpoint(&path3)
        ));
    }
    if marked && !marker.exists() {
        problems.push(format!(
            "after Unmount of one ID, {} vanished while the other ID still has it mounted",
            marker.display()
        ));
    }
    ctx.must(
        G,
        "unmount-keeps-other",
        "c-vol-mount-ids",
        verdict(problems.is_empty(), || problems.join("; ")),
        Some(&path3),
    );
    if marked {
        let _ = std::fs::remove_file(&marker);
    }

    // Remove while mounted (id B): refuse with Err and keep it, or remove it for good.
    let rm_mounted = d.call(ctx, "Remove", json!({"Name": name})).await;
    let get3 = d.call(ctx, "Get", json!({"Name": name})).await;
    let still_there = get3
        .json()
        .and_then(|v| field(v, "Volume"))
        .is_some_and(|v| !v.is_null());
    let outcome = match rm_mounted.answer() {
        Some(a) if a.ok() && !still_there => Outcome::Pass,
        Some(a) if a.ok() => Outcome::Fail(
            "Remove of a mounted volume said success but Get still finds it".to_owned(),
        ),
        Some(a) if a.proper_error() && still_there => Outcome::Pass,
        Some(a) if a.proper_error() => {
            Outcome::Fail("Remove of a mounted volume failed but the volume is gone".to_owned())
        }
        _ => Outcome::Fail(format!(
            "Remove of a mounted volume must succeed or refuse with Err, got {}",
            rm_mounted.describe()
        )),
    };
    ctx.must(
        G,
        "remove-mounted",
        "c-vol-remove",
        outcome,
        Some(&rm_mounted),
    );
    if still_there {
        let un_b = d
            .call(ctx, "Unmount", json!({"Name": name, "ID": id_b}))
            .await;
        ctx.must(
            G,
            "unmount-last",
            "c-vol-mount-ids",
            ok_outcome(&un_b, "Unmount of the last ID"),
            Some(&un_b),
        );
        let rm = d.call(ctx, "Remove", json!({"Name": name})).await;
        ctx.must(
            G,
            "remove",
            "c-vol-remove",
            ok_outcome(&rm, "Remove"),
            Some(&rm),
        );
    }
    let rm_again = d.call(ctx, "Remove", json!({"Name": name})).await;
    ctx.should(
        G,
        "remove-idempotent",
        "c-vol-remove",
        ok_outcome(&rm_again, "Remove of an already removed volume"),
        Some(&rm_again),
    );
    let get_gone = d.call(ctx, "Get", json!({"Name": name})).await;
    ctx.must(
        G,
        "get-removed",
        "c-vol-get-missing",
        missing_outcome(&get_gone, "a removed volume"),
        Some(&get_gone),
    );
    let list3 = d.call(ctx, "List", json!({})).await;
    ctx.must(
        G,
        "list-after-remove",
        "c-vol-consistent",
        verdict(
            list3
                .json()
                .is_some_and(|v| volume_entry(v, &name).is_none()),
            || format!("List after Remove: {}", list3.describe()),
        ),
        Some(&list3),
    );

    // Error bodies.
    let bad = d
        .call(ctx, "Mount", json!({"Name": absent, "ID": mount_id()}))
        .await;
    ctx.must(
        G,
        "error-body",
        "c-vol-errors",
        verdict(bad.answer().is_some_and(|a| a.proper_error()), || {
            format!(
                "Mount of a missing volume must fail with a non-empty Err, got {}",
                bad.describe()
            )
        }),
        Some(&bad),
    );
    let worst = d.seen.iter().find(|c| {
        c.answer()
            .is_some_and(|a| a.status == 200 && a.err_text().is_some())
    });
    ctx.should(
        G,
        "error-status",
        "c-vol-errors",
        verdict(worst.is_none(), || {
            "an error was sent as 200 + Err: Podman ignores those; send a non-200 status".to_owned()
        }),
        worst,
    );

    // No empty or null replies, Err always a string.
    let broken = d.seen.iter().find(|c| {
        c.answer().is_some_and(|a| {
            a.status == 200
                && (!a.json.as_ref().is_some_and(Value::is_object)
                    || a.field("Err")
                        .is_some_and(|e| !(e.is_string() || e.is_null())))
        })
    });
    ctx.must(
        G,
        "reply-shapes",
        "c-vol-replies",
        verdict(broken.is_none(), || {
            "a 200 reply was not a JSON object (empty, null or garbage) or its Err was not a string"
                .to_owned()
        }),
        broken,
    );
}

/// Field types of a volume object (`Get`'s `Volume`, `List`'s entries).
fn volume_fields(v: &Value) -> Outcome {
    let mut p = Vec::new();
    if let Some(m) = field(v, "Mountpoint")
        && !(m.is_string() || m.is_null())
    {
        p.push(format!("Mountpoint must be a string, got {m}"));
    }
    if let Some(s) = field(v, "Status")
        && !(s.is_object() || s.is_null())
    {
        p.push(format!("Status must be an object, got {s}"));
    }
    if let Some(c) = field(v, "CreatedAt")
        && !c.is_null()
        && !c.as_str().is_some_and(looks_rfc3339)
    {
        p.push(format!(
            "CreatedAt must be RFC 3339 (Docker fails the whole reply otherwise), got {c}"
        ));
    }
    verdict(p.is_empty(), || p.join("; "))
}

fn looks_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}
