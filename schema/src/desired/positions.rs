//! Where each field of a file was written, keyed by its field path.
//!
//! serde gives a position only for the first error it meets, and none at all for values that
//! parse but turn out wrong later (an unknown cluster, a duplicate). So each file is also read
//! a second time, by the format's own parser, into this map from field path
//! (`clusters[0].backends[1].address`) to the line and column of the key and of the value.
//! Errors found after parsing look their path up here; serde's errors go the other way, from
//! a position to the path written there.

use std::collections::BTreeMap;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The line and column of byte `offset` in `text`.
    pub fn from_offset(text: &str, offset: usize) -> Pos {
        let offset = offset.min(text.len());
        // Step back to a character boundary so slicing cannot panic on a bad span.
        let offset = (0..=offset)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Pos { line, column }
    }
}

/// Bytes between two counts of characters kept by [`LineIndex`].
const STRIDE: usize = 256;

/// Positions of many offsets in one text, each found in time independent of the text's size
/// after one pass over it. [`Pos::from_offset`] scans the text from its start: once for one
/// error is fine, once for every field of a large file would be quadratic.
#[derive(Debug)]
pub(crate) struct LineIndex<'t> {
    text: &'t str,
    /// Where each line starts, in bytes.
    line_starts: Vec<usize>,
    /// Characters before each multiple of [`STRIDE`] bytes (columns count characters).
    chars_before: Vec<usize>,
}

impl<'t> LineIndex<'t> {
    pub fn new(text: &'t str) -> LineIndex<'t> {
        let bytes = text.as_bytes();
        let line_starts = std::iter::once(0)
            .chain(
                bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        let mut chars_before = Vec::with_capacity(bytes.len() / STRIDE + 2);
        let mut count = 0;
        for block in bytes.chunks(STRIDE) {
            chars_before.push(count);
            count += chars_in(block);
        }
        chars_before.push(count);
        LineIndex {
            text,
            line_starts,
            chars_before,
        }
    }

    /// The same as [`Pos::from_offset`] on this text.
    pub fn pos(&self, offset: usize) -> Pos {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines starting at or before the offset: the last of them holds it.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        Pos {
            line,
            column: self.chars_to(offset) - self.chars_to(start) + 1,
        }
    }

    /// Characters before byte `offset` (a character boundary).
    fn chars_to(&self, offset: usize) -> usize {
        let block = offset / STRIDE;
        self.chars_before[block] + chars_in(&self.text.as_bytes()[block * STRIDE..offset])
    }
}

/// Characters that start in `bytes`: every byte but UTF-8 continuation bytes.
fn chars_in(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Where the key was written (absent for sequence items and the document root).
    key: Option<Pos>,
    /// Where the value starts.
    value: Pos,
}

/// Field path → positions, for one file.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    entries: BTreeMap<String, Entry>,
}

impl Positions {
    pub fn record_key(&mut self, path: &str, pos: Pos) {
        self.entries
            .entry(path.to_owned())
            .and_modify(|e| e.key = Some(pos))
            .or_insert(Entry {
                key: Some(pos),
                value: pos,
            });
    }

    pub fn record_value(&mut self, path: &str, pos: Pos) {
        self.entries
            .entry(path.to_owned())
            .and_modify(|e| e.value = pos)
            .or_insert(Entry {
                key: None,
                value: pos,
            });
    }

    /// Moves the start of `path`'s value back to `pos` if that is earlier.
    pub fn lower_value(&mut self, path: &str, pos: Pos) {
        if let Some(e) = self.entries.get_mut(path) {
            e.value = e.value.min(pos);
        }
    }

    /// Where the value at `path` starts; if that field was not written, where its closest
    /// written parent starts (a missing field is reported at the resource that lacks it).
    pub fn value(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(e) = self.entries.get(path) {
                return Some(e.value);
            }
            path = parent(path)?;
        }
    }

    /// The field written at `pos`. serde reports an unknown field at its key, a missing field
    /// at the mapping that lacks it, and a bad value where the value starts; `at` says which
    /// of those to look for. Failing an exact match, the last field starting before `pos`.
    pub fn path_at(&self, pos: Pos, at: At) -> Option<&str> {
        let keys = || {
            self.entries
                .iter()
                .filter(move |(_, e)| e.key == Some(pos))
                .map(|(p, _)| p.as_str())
        };
        // A mapping inside a sequence item starts where its first key does, and a sequence
        // where its first item does: the deepest value starting at `pos` is the one meant.
        let values = || {
            self.entries
                .iter()
                .filter(move |(_, e)| e.value == pos)
                .map(|(p, _)| p.as_str())
                .max_by_key(|p| p.len())
        };
        let exact = match at {
            At::Key => keys().max_by_key(|p| p.len()).or_else(values),
            At::Value => values().or_else(|| keys().max_by_key(|p| p.len())),
        };
        exact.or_else(|| {
            self.entries
                .iter()
                .map(|(p, e)| (e.key.unwrap_or(e.value), p.as_str()))
                .filter(|(start, _)| *start < pos)
                .max_by_key(|(start, p)| (*start, p.len()))
                .map(|(_, p)| p)
        })
    }
}

/// What a serde error points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    Key,
    Value,
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// `parent` + `.key` (or just `key` at the root).
pub(crate) fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn child_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let text = "a: 1\nbé: 2\n";
        assert_eq!(Pos::from_offset(text, 0), Pos { line: 1, column: 1 });
        assert_eq!(Pos::from_offset(text, 5), Pos { line: 2, column: 1 });
        // "bé: " is 5 bytes but 4 characters.
        assert_eq!(Pos::from_offset(text, 10), Pos { line: 2, column: 5 });
        // An offset inside a multi-byte character does not panic.
        assert_eq!(Pos::from_offset(text, 7), Pos { line: 2, column: 2 });
    }

    #[test]
    fn the_line_index_places_every_offset_as_a_scan_from_the_start_does() {
        let mut text = String::from("a: 1\nbé: 2\n\n");
        for i in 0..200 {
            text.push_str(&format!("k{i}: \"{}\"\n", "ü€x".repeat(i % 7)));
        }
        text.push_str(&"x".repeat(3 * STRIDE));
        let index = LineIndex::new(&text);
        for offset in 0..=text.len() + 2 {
            assert_eq!(
                index.pos(offset),
                Pos::from_offset(&text, offset),
                "{offset}"
            );
        }
        assert_eq!(LineIndex::new("").pos(0), Pos { line: 1, column: 1 });
    }

    #[test]
    fn parents_walk_up_to_the_root() {
        assert_eq!(
            parent("clusters[0].backends[1].address"),
            Some("clusters[0].backends[1]")
        );
        assert_eq!(
            parent("clusters[0].backends[1]"),
            Some("clusters[0].backends")
        );
        assert_eq!(parent("clusters"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn missing_fields_fall_back_to_their_parent() {
        let mut p = Positions::default();
        p.record_value("clusters[0]", Pos { line: 3, column: 5 });
        assert_eq!(
            p.value("clusters[0].load_balancing"),
            Some(Pos { line: 3, column: 5 })
        );
        assert_eq!(p.value("frontends[0]"), None);
    }
}
