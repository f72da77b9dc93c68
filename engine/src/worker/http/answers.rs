//! The answers the proxy writes itself: errors, each with a short body saying what went wrong,
//! and the `301` of a frontend that sends plain-HTTP clients to https.
//!
//! An answer is rendered when it is given (status line, `Date`, its fields, and the body
//! unless the request was `HEAD`) into an allocation of its own rather than a pool buffer, so
//! even an exhausted buffer pool can answer `503`. Listeners may replace the 404 and 503
//! bodies. An answer on a route whose frontend sets `hsts` carries its
//! `Strict-Transport-Security` field, as forwarded answers on it do.

use std::io::Write as _;

use super::date::HttpDate;

/// One of the proxy's own answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A frontend's `redirect_https`: the answer carries a `Location` and no body.
    MovedPermanently,
    BadRequest,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    /// The request line alone does not fit a buffer (RFC 9112 3: 414, not 431).
    UriTooLong,
    HeadTooLarge,
    /// A transfer coding other than `chunked` (RFC 9112 6.1).
    NotImplemented,
    BadGateway,
    Unavailable,
    GatewayTimeout,
    /// A well-formed request line with an HTTP major version other than 1 (`HTTP/2.0`, the
    /// HTTP/2 preface sent in the clear, `HTTP/3.0`) or an unknown 1.x minor.
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::MovedPermanently => 301,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::RequestTimeout => 408,
            Status::PayloadTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeadTooLarge => 431,
            Status::NotImplemented => 501,
            Status::BadGateway => 502,
            Status::Unavailable => 503,
            Status::GatewayTimeout => 504,
            Status::VersionNotSupported => 505,
        }
    }

    /// The status line, through its CRLF.
    fn status_line(self) -> &'static str {
        match self {
            Status::MovedPermanently => "HTTP/1.1 301 Moved Permanently\r\n",
            Status::BadRequest => "HTTP/1.1 400 Bad Request\r\n",
            Status::NotFound => "HTTP/1.1 404 Not Found\r\n",
            Status::RequestTimeout => "HTTP/1.1 408 Request Timeout\r\n",
            Status::PayloadTooLarge => "HTTP/1.1 413 Content Too Large\r\n",
            Status::UriTooLong => "HTTP/1.1 414 URI Too Long\r\n",
            Status::HeadTooLarge => "HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::NotImplemented => "HTTP/1.1 501 Not Implemented\r\n",
            Status::BadGateway => "HTTP/1.1 502 Bad Gateway\r\n",
            Status::Unavailable => "HTTP/1.1 503 Service Unavailable\r\n",
            Status::GatewayTimeout => "HTTP/1.1 504 Gateway Timeout\r\n",
            Status::VersionNotSupported => "HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
    }

    /// The default body: the status and what it means here.
    fn body(self) -> &'static str {
        match self {
            // Every client follows a redirect by its `Location`; a body would only be read
            // by a person, and nginx's `return 301` body is HTML nobody sees.
            Status::MovedPermanently => "",
            Status::BadRequest => "400 Bad Request: malformed request\n",
            Status::NotFound => "404 Not Found: no route for this host and path\n",
            Status::RequestTimeout => {
                "408 Request Timeout: the request head did not arrive in time\n"
            }
            Status::PayloadTooLarge => {
                "413 Content Too Large: the body is over this listener's limit\n"
            }
            Status::UriTooLong => "414 URI Too Long: the request line does not fit a buffer\n",
            Status::HeadTooLarge => {
                "431 Request Header Fields Too Large: the head does not fit a buffer\n"
            }
            Status::NotImplemented => {
                "501 Not Implemented: no transfer coding but chunked is supported\n"
            }
            Status::BadGateway => {
                "502 Bad Gateway: the backend refused, closed or answered garbage\n"
            }
            Status::Unavailable => {
                "503 Service Unavailable: no healthy backend, or over capacity\n"
            }
            Status::GatewayTimeout => "504 Gateway Timeout: the backend did not answer in time\n",
            Status::VersionNotSupported => {
                "505 HTTP Version Not Supported: this listener speaks HTTP/1.0 and HTTP/1.1\n"
            }
        }
    }
}

/// How one answer is to be written.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: Status,
    /// A listener's own body in place of the default one.
    pub custom_body: Option<&'a str>,
    /// `Connection: close`: the proxy closes after it.
    pub close: bool,
    /// The request was `HEAD`: the fields a `GET` would get, no body (RFC 9110 9.3.2).
    pub head_only: bool,
}

/// The fields an answer takes from the route it was given on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteFields<'a> {
    /// The `Location` of a redirect (checked bytes only: see [`redirect_location`]).
    pub location: Option<&'a str>,
    /// The route's `Strict-Transport-Security` value.
    pub hsts: Option<&'a str>,
}

impl Answer<'_> {
    /// The whole response, for an answer given before any route was found.
    pub fn render(&self, date: &HttpDate) -> Vec<u8> {
        self.render_on(date, RouteFields::default())
    }

    /// The whole response, with the fields of the route it was given on.
    pub fn render_on(&self, date: &HttpDate, route: RouteFields<'_>) -> Vec<u8> {
        let body = self.custom_body.unwrap_or(self.status.body());
        let extra = route.location.map_or(0, str::len) + route.hsts.map_or(0, str::len);
        let mut out = Vec::with_capacity(200 + extra + body.len());
        out.extend_from_slice(self.status.status_line().as_bytes());
        out.extend_from_slice(date.field());
        if let Some(location) = route.location {
            out.extend_from_slice(b"Location: ");
            out.extend_from_slice(location.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // A redirect is meant to be followed and may be cached (that is what 301 says); an
        // error is neither.
        if !body.is_empty() {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        }
        if self.status != Status::MovedPermanently {
            out.extend_from_slice(b"Cache-Control: no-store\r\n");
        }
        if let Some(hsts) = route.hsts {
            out.extend_from_slice(b"Strict-Transport-Security: ");
            out.extend_from_slice(hsts.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // Cannot fail: writing to a Vec.
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(body.as_bytes());
        }
        out
    }
}

/// Where a `redirect_https` frontend sends a request: `https://`, the host it was routed on
/// (already lowercased, without its port or trailing dot, and made only of the bytes a Host
/// may hold: see [`normalize_host`](crate::worker::router::normalize_host)), then the path and
/// query as received. The http port is dropped because the https one is not knowable from a
/// frontend: the client goes to 443, its default.
///
/// `target` is the request target: a path as received (the parser refused control characters,
/// spaces and non-ASCII bytes in it, so it cannot break the field); `path_and_query` stands in
/// for a target that is not a path (absolute form, `OPTIONS *`).
pub fn redirect_location(host: &str, target: &str, path_and_query: (&str, &str)) -> String {
    let mut location = String::with_capacity(8 + host.len() + target.len());
    location.push_str("https://");
    location.push_str(host);
    if target.starts_with('/') {
        location.push_str(target);
    } else {
        location.push_str(path_and_query.0);
        location.push_str(path_and_query.1);
    }
    location
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const ALL: [Status; 12] = [
        Status::MovedPermanently,
        Status::BadRequest,
        Status::NotFound,
        Status::RequestTimeout,
        Status::PayloadTooLarge,
        Status::UriTooLong,
        Status::HeadTooLarge,
        Status::NotImplemented,
        Status::BadGateway,
        Status::Unavailable,
        Status::GatewayTimeout,
        Status::VersionNotSupported,
    ];

    fn parse(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut res = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = res.parse(bytes).unwrap() else {
            panic!("incomplete answer");
        };
        let fields = res
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        (res.code.unwrap(), fields, bytes[len..].to_vec())
    }

    fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_answer_is_a_well_framed_dated_response() {
        let date = HttpDate::new(UNIX_EPOCH + Duration::from_secs(784_111_777));
        for status in ALL {
            for close in [false, true] {
                for custom_body in [None, Some("custom\n")] {
                    let answer = Answer {
                        status,
                        custom_body,
                        close,
                        head_only: false,
                    };
                    let (code, fields, body) = parse(&answer.render(&date));
                    assert_eq!(code, status.code());
                    let expected = custom_body.unwrap_or(status.body());
                    assert_eq!(body, expected.as_bytes(), "{status:?}");
                    let len = field(&fields, "Content-Length").unwrap();
                    assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{status:?}");
                    assert_eq!(
                        field(&fields, "Date"),
                        Some("Sun, 06 Nov 1994 08:49:37 GMT")
                    );
                    assert_eq!(field(&fields, "Connection"), close.then_some("close"));
                }
            }
        }
    }

    #[test]
    fn a_head_request_gets_the_fields_without_the_body() {
        let date = HttpDate::new(UNIX_EPOCH);
        for status in ALL {
            let get = Answer {
                status,
                custom_body: None,
                close: false,
                head_only: false,
            };
            let head = Answer {
                head_only: true,
                ..get
            };
            let (_, get_fields, _) = parse(&get.render(&date));
            let (_, head_fields, head_body) = parse(&head.render(&date));
            assert!(head_body.is_empty(), "{status:?}");
            assert_eq!(get_fields, head_fields, "{status:?}");
        }
    }

    fn redirect(head_only: bool, date: &HttpDate) -> Vec<u8> {
        let answer = Answer {
            status: Status::MovedPermanently,
            custom_body: None,
            close: false,
            head_only,
        };
        let route = RouteFields {
            location: Some("https://shop.test/a/b?q=1"),
            hsts: None,
        };
        answer.render_on(date, route)
    }

    #[test]
    fn a_redirect_is_a_kept_301_with_its_location_and_no_body() {
        let date = HttpDate::new(UNIX_EPOCH);
        for head_only in [false, true] {
            let bytes = redirect(head_only, &date);
            let (code, fields, body) = parse(&bytes);
            assert_eq!(code, 301);
            assert!(bytes.starts_with(b"HTTP/1.1 301 Moved Permanently\r\n"));
            assert_eq!(
                field(&fields, "Location"),
                Some("https://shop.test/a/b?q=1")
            );
            assert_eq!(field(&fields, "Content-Length"), Some("0"));
            assert_eq!(field(&fields, "Connection"), None);
            // Cacheable, as a 301 is meant to be; no body, so no type.
            assert_eq!(field(&fields, "Cache-Control"), None);
            assert_eq!(field(&fields, "Content-Type"), None);
            assert!(body.is_empty());
        }
    }

    #[test]
    fn hsts_is_one_field_on_any_answer_that_has_it() {
        let date = HttpDate::new(UNIX_EPOCH);
        for status in ALL {
            for hsts in [None, Some("max-age=31536000; includeSubDomains")] {
                let answer = Answer {
                    status,
                    custom_body: None,
                    close: true,
                    head_only: false,
                };
                let route = RouteFields {
                    location: None,
                    hsts,
                };
                let (_, fields, _) = parse(&answer.render_on(&date, route));
                let found: Vec<_> = fields
                    .iter()
                    .filter(|(n, _)| n == "Strict-Transport-Security")
                    .map(|(_, v)| v.as_str())
                    .collect();
                assert_eq!(found, hsts.into_iter().collect::<Vec<_>>(), "{status:?}");
            }
        }
    }

    #[test]
    fn the_location_is_https_the_host_and_the_target_as_received() {
        assert_eq!(
            redirect_location("shop.test", "/a/../b?x=%20&y", ("/a/../b?x=%20&y", "")),
            "https://shop.test/a/../b?x=%20&y"
        );
        // Absolute form: the path (with its query) from the target, or `/` and the query.
        assert_eq!(
            redirect_location("a.test", "http://A.test:8080/p?q", ("/p?q", "")),
            "https://a.test/p?q"
        );
        assert_eq!(
            redirect_location("a.test", "http://a.test?q", ("/", "?q")),
            "https://a.test/?q"
        );
        assert_eq!(
            redirect_location("a.test", "*", ("/", "")),
            "https://a.test/"
        );
        assert_eq!(redirect_location("[::1]", "/", ("/", "")), "https://[::1]/");
    }
}
