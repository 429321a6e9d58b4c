//! Runs against the host's real cgroup hierarchy (the tests run as root).

use super::*;

fn test_id(tag: &str) -> String {
    format!("berth-unit-{tag}-{}", std::process::id())
}

/// A root of its own per test, so the tests' sweeps never see each other's cgroups.
fn test_root(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/nonexistent/berth-unit-{tag}-{}",
        std::process::id()
    ))
}

#[test]
fn parents_are_per_root() {
    assert_eq!(parent_for(Path::new(DEFAULT_ROOT)), "berth");
    let other = parent_for(Path::new("/tmp/x"));
    assert!(
        other.starts_with("berth-") && other.len() == "berth-".len() + 12,
        "{other}"
    );
    assert_ne!(other, parent_for(Path::new("/tmp/y")));
}

#[test]
fn shares_convert_like_runc() {
    assert_eq!(v2::shares_to_weight(2), 1);
    assert_eq!(v2::shares_to_weight(1024), 39);
    assert_eq!(v2::shares_to_weight(262_144), 10_000);
}

#[test]
fn create_applies_limits_and_remove_deletes() {
    if !needs_root() {
        return;
    }
    let id = test_id("limits");
    let root = test_root("limits");
    let res = Resources {
        memory: 64 << 20,
        pids_limit: 10,
        nano_cpus: 500_000_000,
        cpu_shares: 512,
        ..Default::default()
    };
    let procs = create(&root, &id, &res, Some(&DEFAULT_RULES)).unwrap();
    assert!(!procs.is_empty());
    assert!(procs.iter().all(|p| p.exists()), "{procs:?}");
    let dirs = existing_dirs(&root, &id);
    let read = |file: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .unwrap_or_else(|| panic!("no {file} in {dirs:?}"))
    };
    match version() {
        "v1" => {
            assert_eq!(
                read("memory.limit_in_bytes").trim(),
                (64u64 << 20).to_string()
            );
            assert_eq!(read("pids.max").trim(), "10");
            assert_eq!(read("cpu.cfs_quota_us").trim(), "50000");
            assert_eq!(read("cpu.shares").trim(), "512");
            let list = read("devices.list");
            assert!(
                list.contains("c 1:3 rwm") && !list.contains("a *:* rwm"),
                "{list}"
            );
            // The hybrid layout's cgroup2 directory, with the device program.
            let unified: Vec<&PathBuf> = dirs
                .iter()
                .filter(|d| d.join("cgroup.controllers").exists())
                .collect();
            if Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
                assert_eq!(unified.len(), 1, "{dirs:?}");
            }
            for d in unified {
                assert_eq!(device_programs(d).unwrap().len(), 1, "{}", d.display());
            }
        }
        _ => {
            assert_eq!(device_programs(&dirs[0]).unwrap().len(), 1);
            assert_eq!(read("memory.max").trim(), (64u64 << 20).to_string());
            assert_eq!(read("pids.max").trim(), "10");
            assert_eq!(read("cpu.max").trim(), "50000 100000");
        }
    }
    let s = stats(&root, &id).unwrap();
    assert_eq!(s.pids_limit, Some(10));
    assert_eq!(s.memory_limit, 64 << 20);
    assert!(!oom_killed(&root, &id));
    remove(&root, &id).unwrap();
    assert!(existing_dirs(&root, &id).is_empty());
    remove(&root, &id).unwrap();
    // The engine's parents stay for the next container (no mkdir/rmdir of six parents per
    // `run --rm`); the shutdown removes them once empty. (A v1 cpuset parent exists only once a
    // container with a cpuset was created.)
    let parents = hierarchy().unwrap().parents(&parent_for(&root));
    for p in parents
        .iter()
        .filter(|p| !p.starts_with("/sys/fs/cgroup/cpuset"))
    {
        assert!(p.exists(), "{} removed with the container", p.display());
    }
    remove_parent_if_empty(&root);
    assert_parents_gone(&root);
}

/// A container's own rules (`--device`, `--device-cgroup-rule`) follow Docker's defaults: in
/// v1's `devices.list`, and in the device program (one of its own, not the shared one).
#[test]
fn for_start_adds_the_containers_own_rules() {
    if !needs_root() {
        return;
    }
    let id = test_id("devrules");
    let root = test_root("devrules");
    let extra = [
        crate::devices::parse_rule("c 1:11 r").unwrap(),
        crate::devices::parse_rule("b 7:* rw").unwrap(),
    ];
    for_start(&root, &id, &Resources::default(), false, &extra).unwrap();
    let dirs = existing_dirs(&root, &id);
    let list = dirs
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("devices.list")).ok());
    let programs: Vec<usize> = dirs
        .iter()
        .filter(|d| d.join("cgroup.controllers").exists())
        .map(|d| device_programs(d).unwrap().len())
        .collect();
    remove(&root, &id).unwrap();
    remove_parent_if_empty(&root);
    assert_parents_gone(&root);
    if version() == "v1" {
        let list = list.expect("no devices.list on v1");
        for rule in ["c 1:3 rwm", "c 1:11 r", "b 7:* rw"] {
            assert!(list.lines().any(|l| l == rule), "{rule} not in {list}");
        }
        assert!(!list.contains("c 1:11 rw"), "{list}");
    }
    assert!(programs.iter().all(|&n| n == 1), "{programs:?}");
}

#[test]
fn sweep_removes_only_unknown_containers() {
    if !needs_root() {
        return;
    }
    let root = test_root("sweep");
    let (stale, kept) = (test_id("stale"), test_id("kept"));
    create(&root, &stale, &Resources::default(), Some(&DEFAULT_RULES)).unwrap();
    create(&root, &kept, &Resources::default(), Some(&DEFAULT_RULES)).unwrap();
    // Another engine's cgroup is never swept.
    let other = test_root("other");
    create(&other, &stale, &Resources::default(), Some(&DEFAULT_RULES)).unwrap();
    let swept = sweep(&root, &HashSet::from([kept.clone()]));
    assert_eq!(swept, vec![stale.clone()]);
    assert!(existing_dirs(&root, &stale).is_empty());
    assert!(!existing_dirs(&root, &kept).is_empty());
    assert!(!existing_dirs(&other, &stale).is_empty());
    // A parent that still holds a container's cgroup stays.
    remove_parent_if_empty(&root);
    assert!(!existing_dirs(&root, &kept).is_empty());
    remove(&root, &kept).unwrap();
    remove(&other, &stale).unwrap();
    remove_parent_if_empty(&root);
    remove_parent_if_empty(&other);
    assert_parents_gone(&root);
    assert_parents_gone(&other);
}

/// The engine's `berth-<hash>` parents are gone once emptied and released (no pile-up of empty
/// parents, one set per temporary engine root).
fn assert_parents_gone(root: &Path) {
    for p in hierarchy().unwrap().parents(&parent_for(root)) {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// True when the test can run (cgroups need root); skips loudly (or fails under CI) otherwise.
fn needs_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "cgroup tests need root");
    eprintln!("SKIPPED: cgroup tests need root");
    false
}
