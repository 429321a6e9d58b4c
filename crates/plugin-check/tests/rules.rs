//! Every rule a check names is written down: each `"c-…"` anchor used in the kit's source has an
//! `<a id="…">` in `docs/protocol.md` ("Conformance rules").

use std::path::Path;

#[test]
fn every_rule_anchor_exists_in_protocol_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../../docs/protocol.md")).unwrap_or_default();
    assert!(
        doc.contains("## 8. Conformance rules"),
        "docs/protocol.md lacks the rules section"
    );
    let mut used = Vec::new();
    for entry in std::fs::read_dir(root.join("src"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for piece in text.split('"').skip(1).step_by(2) {
            if (piece.starts_with("c-") && piece.len() > 4 && !piece.contains(' '))
                || piece == "conformance-rules"
            {
                used.push(piece.to_owned());
            }
        }
    }
    used.sort();
    used.dedup();
    assert!(used.len() >= 25, "found only {used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|a| !doc.contains(&format!("<a id=\"{a}\"></a>")))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without an anchor in docs/protocol.md: {missing:?}"
    );
}
