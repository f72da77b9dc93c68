//! Reading one TOML file: the toml crate for the values, its spanned document for positions.
//!
//! The spanned document is parsed once and deserialized directly. Positions are only needed to
//! place an error, so they are walked ([`positions`]) only when one is found.

use serde::Deserialize;
use toml::de::{DeTable, DeValue, Deserializer};

use super::mirror::FileDoc;
use super::positions::{child_index, child_key, LineIndex, Pos, Positions};
use super::FileError;

/// Parses a TOML file into its mirror.
pub(crate) fn parse(text: &str) -> Result<FileDoc, FileError> {
    let table = DeTable::parse(text).map_err(|e| FileError {
        pos: e.span().map(|s| Pos::from_offset(text, s.start)),
        field: None,
        message: e.message().trim().to_owned(),
    })?;
    // The same as `toml::from_str`, without parsing the text a second time.
    FileDoc::deserialize(Deserializer::from(table)).map_err(|e| {
        let pos = e.span().map(|s| Pos::from_offset(text, s.start));
        let message = e.message().trim().to_owned();
        FileError::from_serde(pos, message, || positions(text))
    })
}

/// Field paths and positions from the spanned document; empty if the text does not parse
/// (the parse error is reported by [`parse`]).
pub(crate) fn positions(text: &str) -> Positions {
    let mut positions = Positions::default();
    if let Ok(table) = DeTable::parse(text) {
        walk_table(&LineIndex::new(text), table.get_ref(), "", &mut positions);
    }
    positions
}

// Offsets become positions through a `LineIndex`: every key and value is placed, and scanning
// the text from its start for each would make a large file's error cost quadratic time.
fn walk_table(text: &LineIndex<'_>, table: &DeTable<'_>, path: &str, positions: &mut Positions) {
    for (key, value) in table {
        let child = child_key(path, key.get_ref());
        positions.record_key(&child, text.pos(key.span().start));
        positions.record_value(&child, text.pos(value.span().start));
        walk_value(text, value.get_ref(), &child, positions);
    }
}

fn walk_value(text: &LineIndex<'_>, value: &DeValue<'_>, path: &str, positions: &mut Positions) {
    match value {
        DeValue::Table(table) => walk_table(text, table, path, positions),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let child = child_index(path, i);
                positions.record_value(&child, text.pos(item.span().start));
                walk_value(text, item.get_ref(), &child, positions);
            }
        }
        DeValue::String(_)
        | DeValue::Integer(_)
        | DeValue::Float(_)
        | DeValue::Boolean(_)
        | DeValue::Datetime(_) => {}
    }
}
