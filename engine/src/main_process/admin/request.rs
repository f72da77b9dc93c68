//! The admin endpoint's HTTP/1.1, sans-io: one request head read (httparse) into what it asks
//! for, and the answers written, each with `Connection: close`.

use crate::main_process::input::AdminPage;

/// The longest request head read; a longer one gets a 431.
pub const MAX_HEAD: usize = 8 * 1024;

/// What a request head read so far amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// Answered without the core: an error, or a refusal.
    Answer(Vec<u8>),
    /// A page that needs the workers' metrics; `head_only` for `HEAD`.
    Query { page: AdminPage, head_only: bool },
}

/// Reads the request head in `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => Parsed::Answer(error(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        )),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Answer(error(
            "431 Request Header Fields Too Large",
            "too many header fields\n",
        )),
        Err(_) => Parsed::Answer(error("400 Bad Request", "malformed request\n")),
        Ok(httparse::Status::Complete(_)) => {
            let head_only = match request.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => {
                    return Parsed::Answer(answer(
                        "405 Method Not Allowed",
                        "text/plain; charset=utf-8",
                        &[("Allow", "GET, HEAD")],
                        b"only GET and HEAD: this endpoint is read-only\n",
                        false,
                    ))
                }
            };
            let path = request.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            let page = match path {
                "/metrics" => AdminPage::Metrics,
                "/" => AdminPage::Status,
                _ => {
                    return Parsed::Answer(answer(
                        "404 Not Found",
                        "text/plain; charset=utf-8",
                        &[],
                        b"not found: try / (status page) or /metrics (Prometheus)\n",
                        head_only,
                    ))
                }
            };
            Parsed::Query { page, head_only }
        }
    }
}

fn error(status: &str, body: &str) -> Vec<u8> {
    answer(
        status,
        "text/plain; charset=utf-8",
        &[],
        body.as_bytes(),
        false,
    )
}

/// A whole answer: status line, fields, and the body unless `head_only` (`Content-Length`
/// is the body's either way, as for a GET).
pub fn answer(
    status: &str,
    content_type: &str,
    fields: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in fields {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The answer for a connection over the cap.
pub fn busy() -> Vec<u8> {
    error(
        "503 Service Unavailable",
        "too many admin connections; try again\n",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status_of(parsed: &Parsed) -> String {
        let Parsed::Answer(bytes) = parsed else {
            panic!("not an answer: {parsed:?}")
        };
        let text = String::from_utf8_lossy(bytes);
        text.lines().next().unwrap().to_owned()
    }

    #[test]
    fn get_and_head_of_the_two_pages_go_to_the_core() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Query {
                page: AdminPage::Metrics,
                head_only: false
            }
        );
        assert_eq!(
            parse(b"HEAD /?refresh=1 HTTP/1.0\r\n\r\n"),
            Parsed::Query {
                page: AdminPage::Status,
                head_only: true
            }
        );
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHo"), Parsed::Partial);
    }

    #[test]
    fn other_methods_paths_and_broken_heads_are_answered_here() {
        let refused = parse(b"POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status_of(&refused), "HTTP/1.1 405 Method Not Allowed");
        let Parsed::Answer(bytes) = refused else {
            unreachable!()
        };
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains("Allow: GET, HEAD\r\n"));
        assert_eq!(
            status_of(&parse(b"GET /metricsx HTTP/1.1\r\n\r\n")),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status_of(&parse(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")),
            "HTTP/1.1 400 Bad Request"
        );
        let long = vec![b'a'; MAX_HEAD];
        assert_eq!(
            status_of(&parse(&[b"GET /".as_slice(), &long].concat())),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn a_head_answer_has_the_get_length_and_no_body() {
        let head = answer("200 OK", "text/plain", &[], b"hello", true);
        let text = String::from_utf8(head).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }
}
