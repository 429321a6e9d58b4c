//! Output formatting shared by the client commands: docker-style aligned tables (like Go's
//! tabwriter with min width 10 and padding 3), human durations (`2 minutes ago`), human sizes
//! (`2.05MB`), id shortening, command ellipsis and `--format json` printing.

use std::io::Write;

use serde::Serialize;

/// An aligned text table: a header row and data rows, columns padded to the widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

/// The smallest width of a non-final column (docker's tabwriter `minwidth`).
const MIN_WIDTH: usize = 10;
/// Spaces after the widest cell of a column (docker's tabwriter `padding`).
const PADDING: usize = 3;

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Appends a data row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; every line ends with a newline, the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < row.len() {
                    let width = (widths[i] + PADDING).max(MIN_WIDTH);
                    let pad = width - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Writes the rendered table to stdout.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Go's `units.HumanDuration`: the engine API's, so `ps` columns and statuses round alike.
pub use berth_engine_api::present::human_duration;

/// "N units ago" for a unix timestamp, relative to `now` (unix seconds).
pub fn ago(created: i64, now: i64) -> String {
    format!("{} ago", human_duration(now - created))
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Go's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{}{}", significant(value, 3), UNITS[unit])
}

/// Formats `value` with `digits` significant digits, trailing zeros removed (like `%.3g`).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The first 12 characters of an id, without a `sha256:` prefix.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Shortens `text` to `max` characters, ending in `…` when cut (docker's `Ellipsis`).
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Go's `strconv.Quote` for the characters that matter in a command line.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints each item as one line of compact JSON (`--format json`).
pub fn print_json_lines<T: Serialize>(items: &[T]) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Prints a value as indented JSON (inspect-type commands).
pub fn print_json_pretty<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The output format chosen with `--format`: the table, or one raw JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Parses `--format` (`table` or `json`; Go templates are not supported).
pub fn parse_format(text: &str) -> Result<Format, String> {
    match text {
        "" | "table" => Ok(Format::Table),
        "json" | "{{json .}}" => Ok(Format::Json),
        other => Err(format!(
            "unsupported format {other:?}: use \"table\" or \"json\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_alignment_like_tabwriter() {
        let mut t = Table::new(&["DRIVER", "VOLUME NAME"]);
        t.row(vec!["local".into(), "a".into()]);
        t.row(vec!["flocker".into(), "nicevol".into()]);
        assert_eq!(
            t.render(),
            "DRIVER    VOLUME NAME\nlocal     a\nflocker   nicevol\n"
        );
        let mut t = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
        t.row(vec![
            "0123456789ab".into(),
            "greatnet".into(),
            "bridge".into(),
            "local".into(),
        ]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NETWORK ID     NAME       DRIVER    SCOPE");
        assert_eq!(lines[1], "0123456789ab   greatnet   bridge    local");
        // Non-ASCII cells count in characters, not bytes.
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["\"sleep 100000000000…\"".into(), "x".into()]);
        let out = t.render();
        let first: Vec<&str> = out.lines().collect();
        assert_eq!(
            first[0].find('B').unwrap(),
            "\"sleep 100000000000…\"".chars().count() + 3
        );
    }

    #[test]
    fn ago_uses_the_shared_human_duration() {
        assert_eq!(ago(100, 250), "2 minutes ago");
        // The same rounding as a container's status (`Up 2 hours` after 90 minutes).
        assert_eq!(ago(0, 90 * 60), "2 hours ago");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(2_048_000), "2.05MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(12_345), "12.3kB");
    }

    #[test]
    fn ids_commands_and_formats() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(ellipsis("sleep 1", 20), "sleep 1");
        assert_eq!(
            ellipsis("sh -c 'echo a long line'", 20),
            "sh -c 'echo a long …"
        );
        assert_eq!(go_quote("sh -c \"x\""), "\"sh -c \\\"x\\\"\"");
        assert_eq!(parse_format("json").unwrap(), Format::Json);
        assert_eq!(parse_format("table").unwrap(), Format::Table);
        assert!(parse_format("{{.Names}}").is_err());
    }
}
