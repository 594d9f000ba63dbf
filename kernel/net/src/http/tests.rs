use std::vec::Vec;

use proptest::prelude::*;

use super::*;

const BODY: &[u8] = b"hi\n";

fn events(reader: &mut RequestReader, input: &[u8]) -> Vec<Event> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        while let Some(e) = reader.next_request() {
            out.push(e);
        }
        if rest.is_empty() {
            return out;
        }
        let n = reader.push(rest);
        rest = &rest[n..];
    }
}

fn one(input: &[u8]) -> Vec<Event> {
    events(&mut RequestReader::new(256), input)
}

fn req(method: Method, root: bool, http11: bool, keep_alive: bool, content_length: u64) -> Event {
    Event::Request(Request {
        method,
        root,
        http11,
        keep_alive,
        content_length,
    })
}

fn wire(e: Event) -> Vec<u8> {
    let r = Response::for_event(e, BODY, "text/plain");
    let (a, b) = r.remaining(0);
    [a, b].concat()
}

#[test]
fn get_root_keep_alive() {
    assert_eq!(
        one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        [req(Method::Get, true, true, true, 0)]
    );
    assert_eq!(
        wire(req(Method::Get, true, true, true, 0)),
        b"HTTP/1.1 200 OK\r\nServer: exo-os\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nhi\n"
    );
}

#[test]
fn bare_lf_leading_blank_lines_and_absolute_form() {
    assert_eq!(
        one(b"\r\n\nGET /?q=1 HTTP/1.1\nhost: x\n\n"),
        [req(Method::Get, true, true, true, 0)]
    );
    assert_eq!(
        one(b"GET http://x:80/ HTTP/1.1\r\nHost: x\r\n\r\n"),
        [req(Method::Get, true, true, true, 0)]
    );
    assert_eq!(
        one(b"GET http://x HTTP/1.1\r\nHost: x\r\n\r\n"),
        [req(Method::Get, true, true, true, 0)]
    );
}

#[test]
fn connection_header_and_http10() {
    assert_eq!(
        one(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n\r\n"),
        [req(Method::Get, true, true, false, 0)]
    );
    assert_eq!(
        one(b"GET / HTTP/1.0\r\n\r\n"),
        [req(Method::Get, true, false, false, 0)]
    );
    assert_eq!(
        one(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"),
        [req(Method::Get, true, false, true, 0)]
    );
    let r = wire(req(Method::Get, true, false, true, 0));
    assert!(r.windows(24).any(|w| w == b"Connection: keep-alive\r\n"));
    let r = wire(req(Method::Get, true, false, false, 0));
    assert!(r.windows(19).any(|w| w == b"Connection: close\r\n"));
}

#[test]
fn statuses() {
    let status = |input: &[u8]| match one(input).as_slice() {
        [e] => Response::for_event(*e, BODY, "text/plain").status,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        status(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::NotFound
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::MethodNotAllowed
    );
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), Status::BadRequest); // no Host
    assert_eq!(
        status(b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        Status::BadRequest
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
        Status::NotImplemented
    );
    assert_eq!(
        status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
        Status::VersionNotSupported
    );
    assert_eq!(status(b"GET / HTTX/1.1\r\n\r\n"), Status::BadRequest);
    assert_eq!(status(&[b'A'; 300]), Status::HeaderTooLarge);
}

#[test]
fn method_not_allowed_has_allow_and_head_has_no_body() {
    let r = wire(req(Method::Other, true, true, true, 0));
    assert!(r.starts_with(b"HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(r.windows(18).any(|w| w == b"Allow: GET, HEAD\r\n"));
    let r = wire(req(Method::Head, true, true, true, 0));
    assert!(r.ends_with(b"Content-Length: 3\r\n\r\n"));
}

#[test]
fn errors_close_and_ignore_the_rest() {
    let mut r = RequestReader::new(256);
    let e = events(&mut r, b"BAD\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(e, [Event::Error(Status::BadRequest)]);
    assert_eq!(r.buffered(), 0);
    let resp = Response::for_event(e[0], BODY, "text/plain");
    assert!(!resp.keep_alive);
    assert!(
        resp.head()
            .windows(19)
            .any(|w| w == b"Connection: close\r\n")
    );
}

#[test]
fn body_is_discarded_across_pushes() {
    let mut r = RequestReader::new(64);
    let mut input = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".to_vec();
    input.extend_from_slice(&[b'Z'; 100]);
    input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let e = events(&mut r, &input);
    assert_eq!(
        e,
        [
            req(Method::Other, true, true, true, 100),
            req(Method::Get, true, true, true, 0)
        ]
    );
}

#[test]
fn head_exactly_at_the_limit_is_accepted() {
    let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut r = RequestReader::new(head.len());
    assert_eq!(
        events(&mut r, head),
        [req(Method::Get, true, true, true, 0)]
    );
    let mut r = RequestReader::new(head.len() - 1);
    assert_eq!(events(&mut r, head), [Event::Error(Status::HeaderTooLarge)]);
}

#[test]
fn remaining_walks_head_then_body() {
    let r = Response::for_event(req(Method::Get, true, true, true, 0), BODY, "text/plain");
    let h = r.head().len();
    assert_eq!(r.remaining(h - 1), (&r.head()[h - 1..], BODY));
    assert_eq!(r.remaining(h + 1), (&[][..], &BODY[1..]));
    assert_eq!(r.remaining(r.len()), (&[][..], &[][..]));
    assert_eq!(r.remaining(usize::MAX), (&[][..], &[][..]));
}

/// A valid request as bytes, with its expected event.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, Event)> {
    (
        prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")],
        prop_oneof![Just("/"), Just("/index.html"), Just("/?a=b"), Just("/x/y")],
        any::<bool>(),
        prop_oneof![Just(""), Just("close"), Just("keep-alive")],
        0u64..40,
        any::<bool>(),
    )
        .prop_map(|(method, path, http11, conn, len, crlf)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut s = std::format!("{method} {path} HTTP/1.{}{nl}Host: h{nl}", u8::from(http11));
            if !conn.is_empty() {
                s += &std::format!("Connection: {conn}{nl}");
            }
            if len > 0 {
                s += &std::format!("Content-Length: {len}{nl}");
            }
            s += nl;
            let mut bytes = s.into_bytes();
            bytes.extend(std::iter::repeat_n(b'b', len as usize));
            let m = match method {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                _ => Method::Other,
            };
            let keep_alive = conn != "close" && (http11 || conn == "keep-alive");
            (
                bytes,
                req(m, path == "/" || path == "/?a=b", http11, keep_alive, len),
            )
        })
}

/// Feeds `input` in pieces of the given sizes (cycled).
fn events_split(limit: usize, input: &[u8], sizes: &[usize]) -> Vec<Event> {
    let mut r = RequestReader::new(limit);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let mut piece = &rest[..sizes[i % sizes.len()].clamp(1, rest.len())];
        rest = &rest[piece.len()..];
        i += 1;
        while !piece.is_empty() {
            let n = r.push(piece);
            piece = &piece[n..];
            while let Some(e) = r.next_request() {
                out.push(e);
            }
            if n == 0 && r.next_request().is_none() {
                panic!("reader stalled with a full buffer");
            }
        }
    }
    while let Some(e) = r.next_request() {
        out.push(e);
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_grow(
        input in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        limit in 16usize..512,
    ) {
        let mut r = RequestReader::new(limit);
        let mut rest = &input[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = r.push(&rest[..sizes[i % sizes.len()].min(rest.len())]);
            prop_assert!(r.buffered() <= limit.max(16));
            rest = &rest[n..];
            i += 1;
            while let Some(e) = r.next_request() {
                let resp = Response::for_event(e, BODY, "text/plain");
                prop_assert!(resp.head().ends_with(b"\r\n\r\n"));
            }
        }
    }

    #[test]
    fn pipelined_valid_requests_parse_the_same_whatever_the_split(
        reqs in proptest::collection::vec(valid_request(), 1..6),
        sizes in proptest::collection::vec(1usize..80, 1..10),
    ) {
        let input: Vec<u8> = reqs.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let expected: Vec<Event> = reqs.iter().map(|(_, e)| *e).collect();
        prop_assert_eq!(&events_split(512, &input, &[input.len()]), &expected);
        prop_assert_eq!(&events_split(512, &input, &sizes), &expected);
        prop_assert_eq!(&events_split(512, &input, &[1]), &expected);
    }
}
