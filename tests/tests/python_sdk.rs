//! The python `docker` SDK (docker-py 7.x) driving a real `berth daemon`: version negotiation,
//! an attached `containers.run` on the built-in `host` image, and the volume collection.
//!
//! Needs root (the daemon makes namespaces and mounts) and `pip install docker`; CI runs it as root.

// Test code: a panic is how a test fails, so unwrap is fine in helpers too.
#![allow(clippy::unwrap_used)]

use berth_tests::Daemon;

/// Needs root. `client.version()`, `containers.run("host", "echo hi")` == b"hi\n", detached run +
/// wait + logs + remove, volumes create/list/get/remove, and `NotFound`/`ImageNotFound` errors.
#[test]
fn python_sdk_scenario() {
    let d = Daemon::start();
    let out = d.python(
        r#"
v = client.version()
assert v["ApiVersion"] == "1.50", v
assert client.ping() is True

out = client.containers.run("host", "echo hi", remove=True)
assert out == b"hi\n", out

c = client.containers.run("host", ["sh", "-c", "echo bye; exit 3"], detach=True, name="pyc")
res = c.wait(timeout=30)
assert res["StatusCode"] == 3, res
assert c.logs() == b"bye\n", c.logs()
c.reload()
assert c.status == "exited", c.status
assert c.name == "pyc", c.name
assert "pyc" in [x.name for x in client.containers.list(all=True)]
c.remove()
assert "pyc" not in [x.name for x in client.containers.list(all=True)]

try:
    client.containers.run("host", ["sh", "-c", "exit 9"], remove=True)
    raise SystemExit("ContainerError expected")
except docker.errors.ContainerError as e:
    assert e.exit_status == 9, e.exit_status

vol = client.volumes.create("pyvol")
assert vol.name == "pyvol"
assert client.volumes.create("pyvol").name == "pyvol"
assert "pyvol" in [x.name for x in client.volumes.list()]
assert client.volumes.get("pyvol").attrs["Driver"] == "local"
vol.remove()
assert "pyvol" not in [x.name for x in client.volumes.list()]
try:
    client.volumes.get("pyvol")
    raise SystemExit("NotFound expected")
except docker.errors.NotFound:
    pass
try:
    client.containers.create("nosuchimage", "true")
    raise SystemExit("ImageNotFound expected")
except docker.errors.ImageNotFound:
    pass
print("python scenario ok")
"#,
    );
    assert!(
        out.ok().contains("python scenario ok"),
        "{}",
        out.describe()
    );
}
