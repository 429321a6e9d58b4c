//! Runs against the host's real cgroup hierarchy (the tests run as root).

use super::*;

fn test_id(tag: &str) -> String {
    format!("berth-unit-{tag}-{}", std::process::id())
}

#[test]
fn shares_convert_like_runc() {
    assert_eq!(v2::shares_to_weight(2), 1);
    assert_eq!(v2::shares_to_weight(1024), 39);
    assert_eq!(v2::shares_to_weight(262_144), 10_000);
}

#[test]
fn create_applies_limits_and_remove_deletes() {
    let id = test_id("limits");
    let res = Resources {
        memory: 64 << 20,
        pids_limit: 10,
        nano_cpus: 500_000_000,
        cpu_shares: 512,
        ..Default::default()
    };
    let procs = create(&id, &res, true).unwrap();
    assert!(!procs.is_empty());
    assert!(procs.iter().all(|p| p.exists()), "{procs:?}");
    let dirs = existing_dirs(&id);
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
        }
        _ => {
            assert_eq!(read("memory.max").trim(), (64u64 << 20).to_string());
            assert_eq!(read("pids.max").trim(), "10");
            assert_eq!(read("cpu.max").trim(), "50000 100000");
        }
    }
    let s = stats(&id).unwrap();
    assert_eq!(s.pids_limit, Some(10));
    assert_eq!(s.memory_limit, 64 << 20);
    assert!(!oom_killed(&id));
    remove(&id).unwrap();
    assert!(existing_dirs(&id).is_empty());
    remove(&id).unwrap();
}

#[test]
fn sweep_removes_only_unknown_containers() {
    let (stale, kept) = (test_id("stale"), test_id("kept"));
    create(&stale, &Resources::default(), true).unwrap();
    create(&kept, &Resources::default(), true).unwrap();
    // Other tests' cgroups (running concurrently in this process) are kept too.
    let keep: HashSet<String> = hierarchy()
        .unwrap()
        .parents()
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|e| e.flatten())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| *n != stale)
        .collect();
    let swept = sweep(&keep);
    assert_eq!(swept, vec![stale.clone()]);
    assert!(existing_dirs(&stale).is_empty());
    assert!(!existing_dirs(&kept).is_empty());
    remove(&kept).unwrap();
}
