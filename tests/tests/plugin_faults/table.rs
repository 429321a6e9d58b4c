//! The fault matrix's table in `docs/semantics.md` ("Fault matrix"): one row per call site, one
//! column per fault. Each site's test compares its row with what its cases observed
//! ([`check_docs_row`]); `BERTH_BLESS_DOCS=1` rewrites the row instead. Only the table under the
//! matrix's header line is read, so a row label can never match another table of the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{Fault, Site};

/// The docs file holding the table.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/semantics.md")
}

/// Serialises rewrites of the docs table (the sites run as parallel tests).
static DOCS: Mutex<()> = Mutex::new(());

/// The table's header line.
fn header() -> String {
    let headings: Vec<&str> = Fault::ALL.iter().map(|f| f.heading()).collect();
    format!(
        "| call site | deadline | {} | left after a failure |",
        headings.join(" | ")
    )
}

/// The table's rows: the lines after the header up to the first one that is not a table line.
fn rows(text: &str) -> Vec<&str> {
    let header = header();
    let mut lines = text.lines().skip_while(|l| *l != header);
    assert!(
        lines.next().is_some(),
        "docs/semantics.md lacks the fault-matrix header {header}"
    );
    lines.skip(1).take_while(|l| l.starts_with('|')).collect()
}

fn row(site: Site, cells: &[String]) -> String {
    format!(
        "| {} | {} | {} | {} |",
        site.label(),
        fmt_duration(site.deadline()),
        cells.join(" | "),
        site.left()
    )
}

/// `1s`, `1500ms` (the engine's own wording).
fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn find<'a>(rows: &[&'a str], site: Site) -> Option<&'a str> {
    let prefix = format!("| {} |", site.label());
    rows.iter().copied().find(|l| l.starts_with(&prefix))
}

/// Compares the site's row in the docs table with what the cases observed (or rewrites it).
pub fn check_docs_row(site: Site, cells: &[String]) {
    let _g = DOCS.lock().unwrap_or_else(|e| e.into_inner());
    let want = row(site, cells);
    let text = std::fs::read_to_string(docs()).unwrap();
    let found = find(&rows(&text), site);
    if std::env::var_os("BERTH_BLESS_DOCS").is_some() {
        let Some(old) = found else {
            panic!("docs/semantics.md has no fault-matrix row for {site:?}");
        };
        // The row is unique inside the table, and the table comes after the header.
        let at = text.find(&header()).unwrap();
        let (head, tail) = text.split_at(at);
        std::fs::write(docs(), format!("{head}{}", tail.replacen(old, &want, 1))).unwrap();
        return;
    }
    assert_eq!(
        found,
        Some(want.as_str()),
        "docs/semantics.md's fault matrix disagrees with what the engine does at {site:?}; \
         update the row (BERTH_BLESS_DOCS=1 rewrites it)"
    );
}

#[test]
fn the_docs_table_has_every_site_and_fault() {
    let text = std::fs::read_to_string(docs()).unwrap();
    let rows = rows(&text);
    assert_eq!(
        rows.len(),
        Site::ALL.len(),
        "one row per call site: {rows:#?}"
    );
    for site in Site::ALL {
        let row = find(&rows, site);
        let cols = row.map_or(0, |r| r.matches(" | ").count() + 1);
        assert_eq!(
            cols,
            Fault::ALL.len() + 3,
            "docs/semantics.md: the fault-matrix row of {site:?}: {row:?}"
        );
    }
}
