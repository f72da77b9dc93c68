//! The path a request is routed on. Sans-io.
//!
//! A backend resolves `/api/../secret` to `/secret`, and most also `/api/%2e%2e/secret` and
//! `/api//../secret`; routing on the raw target would send those to the cluster of `/api` with
//! a path the operator routed elsewhere (path confusion). So the router is given the path
//! normalised the way backends resolve it, as nginx does before matching a location and Envoy
//! with `normalize_path` and `merge_slashes`. **Only routing sees the normalised path: the
//! request is forwarded exactly as it was received.**
//!
//! [`routing_path`] does, in this order:
//!
//! 1. Drops the query: only what precedes the first `?` is routed on. Route prefixes are
//!    matched against the whole string they are given, and a prefix without `?` matches a
//!    target exactly when it matches the target's part before the `?` (that part is the
//!    prefix's own length or longer), so for every route without a `?` this changes nothing;
//!    a route whose path holds a `?` no longer matches anything. No test or example routes on
//!    a query, and the schema's paths are prefixes of paths, so the query is out.
//! 2. Decodes percent-encoded unreserved characters (`ALPHA / DIGIT / - . _ ~`, RFC 3986 2.3
//!    and 6.2.2.2), in either case of hex digit: `%2e` and `%2E` are `.`, `%7E` is `~`. Every
//!    other triplet stays encoded (`%2F` is not a separator, `%00` is not decoded), its hex
//!    digits in uppercase (RFC 3986 6.2.2.1: `%c3%a9` and `%C3%A9` are the same, and backends
//!    decode them alike), and so does a `%` that does not start a triplet. A
//!    triplet whose character is a hex digit is not decoded right after such a stray `%` or
//!    `%` and one hex digit (`%%34`, `%4%31`): decoding it would make a new triplet, which a
//!    second pass would decode again.
//! 3. Removes dot segments (RFC 3986 5.2.4): `.` goes, `..` goes with the segment before it,
//!    and at the root it simply goes (`/../x` is `/x`).
//! 4. Merges runs of `/` into one (nginx's default `merge_slashes on`). Empty segments are
//!    dropped *before* dot segments are resolved, so `..` never consumes an empty segment:
//!    `/a//../b` is `/b`, as nginx, Go's `path.Clean` and a file system resolve it (RFC 3986
//!    alone, without merging, would give `/a/b`). A trailing `/`, `/.` or `/..` leaves one
//!    trailing `/`, as RFC 3986 does.
//!
//! The result is a fixed point: normalising it again gives it back. Normalisation only ever
//! shortens a path.
//!
//! Targets are ASCII (the parser refuses anything else); any other input is handled without
//! panicking. A path that does not start with `/` (the parser never gives one) is normalised
//! as a relative path: leading `.` and `..` segments go (RFC 3986 5.2.4 rule A).
//!
//! The common path holds no `%`, no `/.` and no `//`: it costs one scan without branches (and,
//! with a query, a search for its `?` and a scan of what precedes it), and is returned
//! borrowed. Only the rare other paths allocate (a `String` no longer than the path): a buffer
//! handed in by the caller would need a size bound (a target may be as long as a head) and an
//! allocating fallback anyway, for no gain on paths that are either unusual or hostile.

use std::borrow::Cow;

/// The path to route a request on, from [`RequestHead::path`](super::parser::RequestHead::path)
/// (origin form: the whole target, query included; absolute form: from its path on): its part
/// before any `?`, normalised as the [module](self) describes. Borrowed when nothing needed
/// changing.
pub fn routing_path(target: &str) -> Cow<'_, str> {
    // One scan decides for most targets; a query costs a search for its `?` and a second
    // scan of what precedes it (which may still need nothing).
    if is_plain(target.as_bytes(), b'?') {
        return Cow::Borrowed(target);
    }
    let path = match target.find('?') {
        Some(query) => &target[..query],
        None => target,
    };
    if is_plain(path.as_bytes(), b'%') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normalize(path))
    }
}

/// Whether `path` holds nothing to normalise and no `also`: no `%`, no `/.` (which covers
/// every dot segment after the first), no `//`, and no `.` first (a relative path's first dot
/// segment). `also` is `?` to find targets with a query, or `%` again for a path without one.
///
/// As one reduction over adjacent pairs without early exit, like the parser's line-ending
/// check: it vectorises, where `str::find` and a word-at-a-time (SWAR) version both measured
/// slower. It runs for every request. It may answer `false` for a normal path
/// (`/.well-known`); the slow path then gives it back unchanged.
#[inline]
fn is_plain(path: &[u8], also: u8) -> bool {
    let next = path.get(1..).unwrap_or_default();
    let odd = path.iter().zip(next).fold(false, |odd, (&a, &b)| {
        odd | (a == b'%') | (a == also) | ((a == b'/') & ((b == b'/') | (b == b'.')))
    });
    let last_odd = path.last().is_some_and(|&c| (c == b'%') | (c == also));
    !(odd | last_odd | (path.first() == Some(&b'.')))
}

/// The slow path: one pass over the segments, each decoded straight into the output and
/// taken back out when it turns out to be empty or a dot segment.
fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut out = String::with_capacity(path.len());
    let mut segments = path.split('/');
    if absolute {
        // The empty string before the leading `/`.
        segments.next();
    }
    let mut ends_in_slash = false;
    for segment in segments {
        let mark = out.len();
        if absolute || !out.is_empty() {
            out.push('/');
        }
        let start = out.len();
        decode_into(&mut out, segment);
        // Every cut below is at a `/` or at `mark`, so on a char boundary.
        match &out[start..] {
            "" | "." => {
                out.truncate(mark);
                ends_in_slash = true;
            }
            ".." => {
                out.truncate(mark);
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
                ends_in_slash = true;
            }
            _ => ends_in_slash = false,
        }
    }
    if ends_in_slash && (absolute || !out.is_empty()) {
        out.push('/');
    }
    out
}

/// Appends `segment` (which holds no `/`) to `out`, percent-encoded unreserved characters
/// decoded. `out` ends in `/` or is empty when a segment starts, so what comes before does not
/// change how a segment decodes.
fn decode_into(out: &mut String, segment: &str) {
    let bytes = segment.as_bytes();
    let mut copied = 0;
    while let Some(offset) = bytes[copied..].iter().position(|&b| b == b'%') {
        let at = copied + offset;
        out.push_str(&segment[copied..at]);
        let triplet = bytes
            .get(at + 1..at + 3)
            .and_then(|hex| Some((hex_value(hex[0])? << 4) | hex_value(hex[1])?));
        match triplet {
            Some(c) if is_unreserved(c) && !(c.is_ascii_hexdigit() && after_stray_percent(out)) => {
                out.push(char::from(c));
                copied = at + 3;
            }
            // Kept encoded, in uppercase: three ASCII bytes.
            Some(_) => {
                out.push('%');
                out.push_str(&segment[at + 1..at + 3].to_ascii_uppercase());
                copied = at + 3;
            }
            None => {
                out.push('%');
                copied = at + 1;
            }
        }
    }
    out.push_str(&segment[copied..]);
}

/// Whether `out` ends in a `%`, or a `%` and a hex digit, that start no triplet: a hex digit
/// decoded now would complete one.
fn after_stray_percent(out: &str) -> bool {
    match out.as_bytes() {
        [.., b'%'] => true,
        [.., b'%', h] => h.is_ascii_hexdigit(),
        _ => false,
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 2.3.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(path: &str) -> String {
        routing_path(path).into_owned()
    }

    /// RFC 3986 5.2.4 as written: the input and output buffers and rules A to E. The oracle
    /// for paths without empty segments, where merging slashes first changes nothing.
    fn rfc_remove_dot_segments(path: &str) -> String {
        let mut input = path.to_owned();
        let mut output = String::new();
        let pop = |output: &mut String| {
            let cut = output.rfind('/').unwrap_or(0);
            output.truncate(cut);
        };
        while !input.is_empty() {
            if let Some(rest) = input.strip_prefix("../") {
                input = rest.to_owned();
            } else if let Some(rest) = input.strip_prefix("./") {
                input = rest.to_owned();
            } else if input.starts_with("/./") {
                input = input[2..].to_owned();
            } else if input == "/." {
                input = "/".to_owned();
            } else if input.starts_with("/../") {
                input = input[3..].to_owned();
                pop(&mut output);
            } else if input == "/.." {
                input = "/".to_owned();
                pop(&mut output);
            } else if input == "." || input == ".." {
                input.clear();
            } else {
                let skip = usize::from(input.starts_with('/'));
                let end = input[skip..].find('/').map_or(input.len(), |i| i + skip);
                output.push_str(&input[..end]);
                input = input[end..].to_owned();
            }
        }
        output
    }

    #[test]
    fn the_oracle_is_rfc_3986() {
        // The two examples of RFC 3986 5.2.4.
        assert_eq!(rfc_remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(rfc_remove_dot_segments("mid/content=5/../6"), "mid/6");
    }

    #[test]
    fn rfc_3986_examples() {
        // RFC 3986 5.2.4's examples, then 5.4's references resolved against the base
        // `http://a/b/c/d;p?q`, as the merged path (5.2.3) a client would send before
        // removing dot segments.
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("mid/content=5/../6", "mid/6"),
            // 5.4.1 normal examples.
            ("/b/c/g", "/b/c/g"),
            ("/b/c/./g", "/b/c/g"),
            ("/b/c/g/", "/b/c/g/"),
            ("/b/c/.", "/b/c/"),
            ("/b/c/./", "/b/c/"),
            ("/b/c/..", "/b/"),
            ("/b/c/../", "/b/"),
            ("/b/c/../g", "/b/g"),
            ("/b/c/../..", "/"),
            ("/b/c/../../", "/"),
            ("/b/c/../../g", "/g"),
            ("/b/c/d;p", "/b/c/d;p"),
            ("/b/c/g;x", "/b/c/g;x"),
            // 5.4.2 abnormal examples.
            ("/b/c/../../../g", "/g"),
            ("/b/c/../../../../g", "/g"),
            ("/./g", "/g"),
            ("/../g", "/g"),
            ("/b/c/g.", "/b/c/g."),
            ("/b/c/.g", "/b/c/.g"),
            ("/b/c/g..", "/b/c/g.."),
            ("/b/c/..g", "/b/c/..g"),
            ("/b/c/./../g", "/b/g"),
            ("/b/c/./g/.", "/b/c/g/"),
            ("/b/c/g/./h", "/b/c/g/h"),
            ("/b/c/g/../h", "/b/c/h"),
            ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
            ("/b/c/g;x=1/../y", "/b/c/y"),
        ];
        for (path, want) in cases {
            assert_eq!(n(path), want, "{path}");
            assert_eq!(rfc_remove_dot_segments(path), want, "oracle: {path}");
        }
    }

    #[test]
    fn encoded_dots_are_dot_segments() {
        assert_eq!(n("/api/%2e%2e/secret"), "/secret");
        assert_eq!(n("/api/%2E%2E/secret"), "/secret");
        assert_eq!(n("/api/%2E%2e/secret"), "/secret");
        assert_eq!(n("/api/.%2e/secret"), "/secret");
        assert_eq!(n("/api/%2e./secret"), "/secret");
        assert_eq!(n("/api/%2e/x"), "/api/x");
        assert_eq!(n("/api/%2e%2e"), "/");
        assert_eq!(n("/api/x/%2e"), "/api/x/");
        // Not dot segments: more than two dots, or a dot with something else.
        assert_eq!(n("/api/%2e%2e%2e/x"), "/api/.../x");
        assert_eq!(n("/api/%2e%2ex/y"), "/api/..x/y");
    }

    #[test]
    fn only_unreserved_characters_are_decoded() {
        assert_eq!(n("/%41%62%7e%5F%2D%30"), "/Ab~_-0");
        assert_eq!(n("/%7E%7euser"), "/~~user");
        // Mixed: decoded ones next to kept ones, which are uppercased.
        assert_eq!(n("/a%2Fb%2fc%41"), "/a%2Fb%2FcA");
        assert_eq!(n("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(n("/caf%C3%a9/x"), "/caf%C3%A9/x");
        assert_eq!(n("/%00%20%25%3F%23%2e"), "/%00%20%25%3F%23.");
        assert_eq!(n("/%C3%A9t%C3%A9"), "/%C3%A9t%C3%A9");
    }

    #[test]
    fn an_encoded_slash_is_not_a_separator() {
        assert_eq!(n("/api/..%2Fsecret"), "/api/..%2Fsecret");
        assert_eq!(n("/api/%2e%2e%2Fsecret"), "/api/..%2Fsecret");
        assert_eq!(n("/api%2F..%2F..%2Fsecret"), "/api%2F..%2F..%2Fsecret");
        assert_eq!(n("/%2F%2Fapi"), "/%2F%2Fapi");
    }

    #[test]
    fn slashes_are_merged_before_dot_segments_are_resolved() {
        assert_eq!(n("//a//b/"), "/a/b/");
        assert_eq!(n("//api/x"), "/api/x");
        assert_eq!(n("///"), "/");
        assert_eq!(n("/a//"), "/a/");
        assert_eq!(n("/a//../b"), "/b");
        assert_eq!(n("/a/..//b"), "/b");
        assert_eq!(n("/a/.//b"), "/a/b");
    }

    #[test]
    fn trailing_dot_segments_leave_a_slash() {
        assert_eq!(n("/a/b/."), "/a/b/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/.."), "/");
        assert_eq!(n("/."), "/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../.."), "/");
        assert_eq!(n("/../x"), "/x");
    }

    #[test]
    fn the_query_is_not_routed_on() {
        assert_eq!(routing_path("/api?x=1"), Cow::Borrowed("/api"));
        assert_eq!(n("/?/../x"), "/");
        assert_eq!(n("/a/../b?c=/../d&e=%2e%2e"), "/b");
        assert_eq!(n("/a?"), "/a");
        assert_eq!(n("?x"), "");
        assert_eq!(n("//?//"), "/");
    }

    #[test]
    fn malformed_percent_signs_stay() {
        assert_eq!(n("/%"), "/%");
        assert_eq!(n("/a%"), "/a%");
        assert_eq!(n("/%4"), "/%4");
        assert_eq!(n("/%zz/%4g/%g4"), "/%zz/%4g/%g4");
        assert_eq!(n("/%%2e"), "/%.");
        assert_eq!(n("/%/../x"), "/x");
        // A decoded hex digit would complete a triplet with a stray `%` before it.
        assert_eq!(n("/%%34%31"), "/%%341");
        assert_eq!(n("/%4%31"), "/%4%31");
        assert_eq!(n("%3%30"), "%3%30");
        assert_eq!(n("/%%7e"), "/%~");
        assert_eq!(n("/%x%41"), "/%xA");
    }

    #[test]
    fn empty_and_relative_paths() {
        assert_eq!(routing_path(""), Cow::Borrowed(""));
        assert_eq!(n("."), "");
        assert_eq!(n(".."), "");
        assert_eq!(n("../a"), "a");
        assert_eq!(n("./a/./b"), "a/b");
        assert_eq!(n("a/../b"), "b");
        assert_eq!(n(".hidden"), ".hidden");
    }

    #[test]
    fn common_paths_are_borrowed_unchanged() {
        for path in [
            "/",
            "/api",
            "/api/v1/items/42",
            "/a.b/c.d",
            "/a-b_c~d",
            "/x/y/",
        ] {
            assert!(
                matches!(routing_path(path), Cow::Borrowed(p) if p == path),
                "{path}"
            );
        }
        // Sent to the slow path, and given back as they were.
        for path in ["/.well-known/acme-challenge/x", "/%2F", "/a%"] {
            assert!(
                matches!(routing_path(path), Cow::Owned(p) if p == path),
                "{path}"
            );
        }
    }

    /// Paths built from the pieces normalisation cares about, often absolute.
    fn path_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("/"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%2F"),
            Just("%"),
            Just("%%"),
            Just("%4"),
            Just("%41"),
            Just("%3"),
            Just("%34"),
            Just("%7e"),
            Just("%25"),
            Just("a"),
            Just("b1"),
            Just("~"),
            Just("?"),
            Just(";"),
        ];
        (
            any::<bool>(),
            proptest::collection::vec(piece, 0..16),
            "[a-zA-Z0-9/.%~_?-]{0,6}",
        )
            .prop_map(|(absolute, pieces, tail)| {
                let mut path = if absolute {
                    "/".to_owned()
                } else {
                    String::new()
                };
                path.push_str(&pieces.concat());
                path.push_str(&tail);
                path
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn normalising_twice_is_normalising_once(path in path_like()) {
            let once = n(&path);
            prop_assert_eq!(n(&once), once.clone(), "from {:?}", path);
        }

        #[test]
        fn results_hold_no_empty_or_dot_segments(path in path_like()) {
            let before_query = path.split('?').next().unwrap();
            let out = n(&path);
            prop_assert_eq!(out.starts_with('/'), before_query.starts_with('/'));
            prop_assert!(out.len() <= before_query.len());
            prop_assert!(!out.contains('?'));
            prop_assert!(!out.contains("//"), "{:?} from {:?}", out, path);
            prop_assert!(!out.contains("/./") && !out.ends_with("/."), "{:?} from {:?}", out, path);
            prop_assert!(!out.contains("/../") && !out.ends_with("/.."), "{:?} from {:?}", out, path);
            prop_assert!(!out.contains("%2e") && !out.contains("%2E"), "{:?} from {:?}", out, path);
            prop_assert!(!matches!(out.split('/').next(), Some("." | "..")), "{:?} from {:?}", out, path);
        }

        #[test]
        fn without_empty_segments_it_is_rfc_3986(path in "(/[a-z.]{1,3}){0,8}/?") {
            // No `%`, no `//`: exactly RFC 3986 5.2.4.
            prop_assert_eq!(n(&path), rfc_remove_dot_segments(&path));
        }

        #[test]
        fn plain_paths_are_borrowed_as_they_are(path in path_like()) {
            let before_query = path.split('?').next().unwrap();
            let plain = !before_query.contains('%')
                && !before_query.contains("/.")
                && !before_query.contains("//")
                && !before_query.starts_with('.');
            let out = routing_path(&path);
            prop_assert_eq!(matches!(out, Cow::Borrowed(_)), plain, "{:?}", path);
            if plain {
                prop_assert_eq!(out, before_query);
            }
        }

        #[test]
        fn any_input_is_handled(path in "\\PC{0,40}") {
            let once = n(&path);
            prop_assert_eq!(n(&once), once);
        }
    }
}
