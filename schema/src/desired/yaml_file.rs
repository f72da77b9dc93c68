//! Reading one YAML file: serde_yaml for the values, yaml-rust2's event stream for positions.
//!
//! Positions are only needed to place an error, so the second pass ([`positions`]) runs only
//! when one is found: on serde's error here, or later when `resolve` first reports a problem
//! in the file. A file without errors is parsed once.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::mirror::FileDoc;
use super::positions::{child_index, child_key, Pos, Positions};
use super::FileError;

/// Parses a YAML file into its mirror.
pub(crate) fn parse(text: &str) -> Result<FileDoc, FileError> {
    // An empty file (or one holding only comments) is an empty document, not an error.
    let doc: Option<FileDoc> = serde_yaml::from_str(text).map_err(|e| {
        let pos = e.location().map(|l| editor_pos(text, l.line(), l.column()));
        let message = clean_message(&e.to_string());
        FileError::from_serde(pos, message, || positions(text))
    })?;
    Ok(doc.unwrap_or_default())
}

/// The position of serde_yaml's `line` and `column` (both from 1, columns in characters) as
/// an editor shows it. serde_yaml reads YAML 1.1, whose line breaks include NEL, LS and PS
/// (U+0085, U+2028, U+2029); editors, `sed -n Np`, yaml-rust2's positions and YAML 1.2 break
/// lines only at CR, LF and CRLF, so an error after such a character would name a line the
/// file does not have. One pass over the text up to the error, only when there is one.
fn editor_pos(text: &str, line: usize, column: usize) -> Pos {
    let (mut yaml_line, mut yaml_column) = (1, 1);
    let mut at = Pos { line: 1, column: 1 };
    let mut chars = text.chars().peekable();
    while (yaml_line, yaml_column) < (line, column) {
        let Some(c) = chars.next() else {
            break;
        };
        match c {
            '\r' | '\n' => {
                if c == '\r' && chars.peek() == Some(&'\n') {
                    chars.next();
                }
                (yaml_line, yaml_column) = (yaml_line + 1, 1);
                at = Pos {
                    line: at.line + 1,
                    column: 1,
                };
            }
            '\u{85}' | '\u{2028}' | '\u{2029}' => {
                (yaml_line, yaml_column) = (yaml_line + 1, 1);
                at.column += 1;
            }
            _ => {
                yaml_column += 1;
                at.column += 1;
            }
        }
    }
    at
}

/// serde_yaml's message without the position (we print our own) and without its own path
/// prefix (we print the field separately).
fn clean_message(raw: &str) -> String {
    let mut message = raw.to_owned();
    if let Some(at) = message.find(" at line ") {
        let rest = &message[at + " at line ".len()..];
        // " at line N column M": drop exactly that clause, keep anything after it.
        let clause_len = rest
            .split_once(" column ")
            .and_then(|(line, after)| {
                line.bytes().all(|b| b.is_ascii_digit()).then(|| {
                    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                    " at line ".len() + line.len() + " column ".len() + digits
                })
            })
            .unwrap_or(0);
        message.replace_range(at..at + clause_len, "");
    }
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
        if is_path {
            message = rest.to_owned();
        }
    }
    message
}

/// Deepest nesting of mappings and sequences whose fields get positions. A desired-state file
/// nests five levels; an error deeper than this is placed at its closest recorded parent.
const MAX_DEPTH: usize = 64;

/// Field paths and positions from the YAML event stream. A file that yaml-rust2 cannot parse
/// gives the positions it reached; serde_yaml reports the syntax error itself.
pub(crate) fn positions(text: &str) -> Positions {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    // Event by event, not through `Parser::load`, which recurses once per nesting level: a
    // file nested a few thousand levels deep (a megabyte of indentation) would overflow the
    // stack. Errors are serde_yaml's to report; the positions collected so far are kept.
    while let Ok((event, mark)) = parser.next_token() {
        if matches!(event, Event::StreamEnd) {
            break;
        }
        builder.on_event(event, mark);
    }
    builder.positions
}

#[derive(Debug)]
enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Mappings and sequences open beyond [`MAX_DEPTH`]: their contents are not recorded.
    too_deep: usize,
    positions: Positions,
}

impl Builder {
    /// A node starts at `pos`: either a mapping key or a value. Returns the value's path.
    fn node(&mut self, pos: Pos, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let child = child_index(path, *next);
                *next += 1;
                Some(child)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(child_key(path, &k)),
                None => {
                    // A key. Complex (non-scalar) keys are not part of the format; give them a
                    // placeholder so the value after them still lines up.
                    let k = scalar.unwrap_or("?").to_owned();
                    let child = child_key(path, &k);
                    *key = Some(k);
                    // yaml-rust2 marks a block mapping's start after its first key; the
                    // mapping really starts no later than that key.
                    let path = path.clone();
                    self.positions.record_key(&child, pos);
                    self.positions.lower_value(&path, pos);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2 counts lines from 1 and columns from 0.
        let pos = Pos {
            line: mark.line(),
            column: mark.col() + 1,
        };
        if self.too_deep > 0 || self.stack.len() >= MAX_DEPTH {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.too_deep += 1,
                Event::MappingEnd | Event::SequenceEnd if self.too_deep > 0 => self.too_deep -= 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.stack.pop();
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(path) = self.node(pos, Some(&value)) {
                    self.positions.record_value(&path, pos);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.node(pos, None) {
                    self.positions.record_value(&path, pos);
                }
            }
            Event::MappingStart(..) => {
                let path = self.node(pos, None);
                let path = path.unwrap_or_else(|| "?".to_owned());
                self.positions.record_value(&path, pos);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node(pos, None);
                let path = path.unwrap_or_else(|| "?".to_owned());
                self.positions.record_value(&path, pos);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    const SAMPLE: &str = "\
listeners:
  - name: web
    address: 127.0.0.1:8080
    protocol: http
clusters:
  - id: app
    backends:
      - id: blue
        address: 127.0.0.1:9001
";

    #[test]
    fn positions_name_every_field() {
        let p = positions(SAMPLE);
        assert_eq!(
            p.value("listeners[0].address"),
            Some(Pos {
                line: 3,
                column: 14
            })
        );
        assert_eq!(
            p.value("clusters[0].backends[0].address"),
            Some(Pos {
                line: 9,
                column: 18
            })
        );
        assert_eq!(
            p.value("clusters[0].backends[0].weight"),
            p.value("clusters[0].backends[0]")
        );
    }

    #[test]
    fn a_deeply_nested_file_is_placed_without_exhausting_the_stack() {
        // Nested 1,500 levels deep by indentation (1.1 MB): the recursive event loader
        // overflowed the stack on it.
        let mut text = String::from("listeners:\n");
        for depth in 0..1500 {
            text.push_str(&" ".repeat(depth));
            text.push_str("-\n");
        }
        // The first listener is a sequence: refused there, at its line.
        let e = parse(&text).unwrap_err();
        assert_eq!(e.pos, Some(Pos { line: 3, column: 2 }));
        assert_eq!(e.field.as_deref(), Some("listeners[0]"));
        let p = positions(&text);
        let deepest = format!("listeners{}", "[0]".repeat(MAX_DEPTH - 1));
        assert!(p.value(&deepest).is_some());
        assert_eq!(p.value(&format!("{deepest}[0][0]")), p.value(&deepest));
    }

    /// Found by the `desired_yaml` fuzzer: `'<NEL><<NEL>` (an unterminated quoted scalar
    /// holding two NEL characters) was placed at line 3 of a one-line file.
    #[test]
    fn errors_after_yaml_1_1_line_breaks_name_the_line_an_editor_shows() {
        let e = parse("'\u{85}<\u{85}").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(1), "{e:?}");
        // The same error with real line breaks: lines counted, CRLF as one.
        let e = parse("listeners: []\r\nclusters: 'x\n\u{2028}y").unwrap_err();
        assert_eq!(e.pos.map(|p| p.line), Some(3), "{e:?}");
        // Without such characters the position is serde_yaml's own.
        let text = "listeners:\n  - address: [\n";
        let serde = serde_yaml::from_str::<FileDoc>(text).unwrap_err();
        let l = serde.location().unwrap();
        assert_eq!(
            parse(text).unwrap_err().pos,
            Some(Pos {
                line: l.line(),
                column: l.column()
            })
        );
        assert_eq!(editor_pos("ab\u{2029}cd", 2, 2), Pos { line: 1, column: 5 });
    }

    #[test]
    fn clean_message_drops_position_and_path() {
        assert_eq!(
            clean_message("clusters[0]: unknown field `x`, expected `id` at line 3 column 5"),
            "unknown field `x`, expected `id`"
        );
        assert_eq!(
            clean_message("invalid type: string \"a\", expected u32 at line 1 column 2"),
            "invalid type: string \"a\", expected u32"
        );
    }
}
