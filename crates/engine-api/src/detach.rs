//! Detach keys (`DetachKeys`, `--detach-keys`): Docker's syntax (`ctrl-p,ctrl-q`, `ctrl-a`, `x`,
//! comma-separated) and the matcher that watches a tty session's input for the sequence.
//!
//! As in Docker, the keys apply only to sessions on a tty with stdin attached: the bytes of the
//! sequence are withheld while they match, given back when the match breaks, and a complete
//! sequence ends the session (the process keeps running).

/// Docker's default sequence: ctrl-p, ctrl-q.
pub const DEFAULT: &[u8] = &[0x10, 0x11];

/// Parses `keys` (empty: [`DEFAULT`]).
pub fn parse(keys: &str) -> Result<Vec<u8>, String> {
    if keys.is_empty() {
        return Ok(DEFAULT.to_vec());
    }
    let bad = || format!("Invalid detach keys ({keys}) provided");
    keys.split(',')
        .map(|key| {
            if let Some(c) = key.strip_prefix("ctrl-") {
                let mut chars = c.chars();
                let (Some(c), None) = (chars.next(), chars.next()) else {
                    return Err(bad());
                };
                match c {
                    'a'..='z' => Ok(c as u8 - b'a' + 1),
                    '@' => Ok(0),
                    '[' => Ok(27),
                    '\\' => Ok(28),
                    ']' => Ok(29),
                    '^' => Ok(30),
                    '_' => Ok(31),
                    _ => Err(bad()),
                }
            } else {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii() => Ok(c as u8),
                    _ => Err(bad()),
                }
            }
        })
        .collect()
}

/// Watches input for a detach sequence.
#[derive(Debug)]
pub struct Matcher {
    keys: Vec<u8>,
    /// How many keys of the sequence the input has matched so far (withheld).
    matched: usize,
}

impl Matcher {
    pub fn new(keys: Vec<u8>) -> Self {
        Matcher { keys, matched: 0 }
    }

    /// Feeds a chunk of input: what to pass on, and whether the sequence was completed (what
    /// came after it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // The match broke: give back what was withheld, then look at `b` afresh.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_syntax() {
        assert_eq!(parse("").unwrap(), DEFAULT);
        assert_eq!(parse("ctrl-p,ctrl-q").unwrap(), vec![0x10, 0x11]);
        assert_eq!(
            parse("ctrl-a,x,ctrl-@,ctrl-_").unwrap(),
            vec![1, b'x', 0, 31]
        );
        for bad in ["ctrl-", "ctrl-1", "ab", "ctrl-p,", "é"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn matcher_withholds_and_gives_back() {
        let mut m = Matcher::new(vec![0x10, 0x11]);
        assert_eq!(m.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(m.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(m.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(m.feed(b"\x11after"), (Vec::new(), true));
        let mut m = Matcher::new(vec![b'x']);
        assert_eq!(m.feed(b"abxc"), (b"ab".to_vec(), true));
    }
}
