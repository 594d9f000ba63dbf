//! The HTTP/1.1 responder: a request reader over a bounded per-connection buffer and the
//! response builder. Pure code (no sockets): the stack feeds it what TCP received and sends
//! what it returns, so it is tested byte by byte on the host.
//!
//! What it accepts (RFC 9112): leading empty lines are skipped, lines end in CRLF or a bare
//! LF, the request line is `method SP target SP HTTP/1.0|HTTP/1.1`, an HTTP/1.1 request must
//! carry `Host`, a request body is delimited by `Content-Length` only and is read and thrown
//! away. Anything else ends the connection after one error response: 400 for a malformed
//! head, 431 when the head does not fit the buffer, 501 for `Transfer-Encoding`, 505 for
//! another HTTP version. Memory is the buffer given at construction and never grows.

use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// A response status the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 200: `GET /` or `HEAD /`.
    Ok,
    /// 400: malformed request line or header.
    BadRequest,
    /// 404: any other path.
    NotFound,
    /// 405: a method other than GET or HEAD (the response carries `Allow`).
    MethodNotAllowed,
    /// 431: the request head does not fit the connection's buffer.
    HeaderTooLarge,
    /// 501: `Transfer-Encoding` (chunked request bodies are not supported).
    NotImplemented,
    /// 505: an HTTP version other than 1.0 and 1.1.
    VersionNotSupported,
}

impl Status {
    /// Every status, in the order of [`Stats::responses`](crate::Stats::responses).
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::HeaderTooLarge,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];

    /// The numeric code (200, 404, ...).
    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeaderTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrase.
    pub const fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeaderTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Index into [`Status::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Status::Ok => 0,
            Status::BadRequest => 1,
            Status::NotFound => 2,
            Status::MethodNotAllowed => 3,
            Status::HeaderTooLarge => 4,
            Status::NotImplemented => 5,
            Status::VersionNotSupported => 6,
        }
    }
}

/// The request method, as far as the server distinguishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Any other syntactically valid method.
    Other,
}

/// A parsed request head (what the responder needs of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The target's path (query stripped) is exactly `/`.
    pub root: bool,
    /// `HTTP/1.1` (else `HTTP/1.0`).
    pub http11: bool,
    /// The connection stays open after the response.
    pub keep_alive: bool,
    /// `Content-Length` of the request body (read and discarded).
    pub content_length: u64,
}

/// What [`RequestReader::next_request`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete request head; its body (if any) is being discarded.
    Request(Request),
    /// The input is not a request this server accepts: answer with this status and close.
    Error(Status),
}

/// Reassembles request heads from a TCP byte stream in a buffer of fixed capacity.
#[derive(Debug)]
pub struct RequestReader {
    buf: Vec<u8>,
    limit: usize,
    /// Body bytes still to be thrown away before the next request starts.
    discard: u64,
    /// An error was reported: everything that follows is ignored.
    failed: bool,
}

impl RequestReader {
    /// A reader whose request heads may be at most `limit` bytes (at least 16).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(16);
        Self {
            buf: Vec::with_capacity(limit),
            limit,
            discard: 0,
            failed: false,
        }
    }

    /// Forgets all state (the slot serves a new connection).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discard = 0;
        self.failed = false;
    }

    /// Bytes buffered and not yet parsed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Nothing of a request is pending: no bytes buffered, no body being discarded, no
    /// error reported (the connection is between requests, as far as its input goes).
    pub fn idle(&self) -> bool {
        self.buf.is_empty() && self.discard == 0 && !self.failed
    }

    /// A request's body is being read and thrown away (its head was returned).
    pub fn discarding(&self) -> bool {
        self.discard > 0
    }

    /// Takes bytes from the stream and returns how many were taken (fewer than offered only
    /// when the buffer is full: call [`next_request`](Self::next_request) to make room).
    pub fn push(&mut self, mut data: &[u8]) -> usize {
        let offered = data.len();
        if self.failed {
            return offered;
        }
        if self.discard > 0 {
            let n = (self.discard.min(data.len() as u64)) as usize;
            self.discard -= n as u64;
            data = &data[n..];
        }
        let n = data.len().min(self.limit - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        offered - (data.len() - n)
    }

    /// Parses the next request out of the buffer, if a complete head is there.
    ///
    /// Returns `None` when more bytes are needed. After an [`Event::Error`] the reader
    /// ignores all further input and returns `None`.
    pub fn next_request(&mut self) -> Option<Event> {
        if self.failed || self.discard > 0 {
            return None;
        }
        // RFC 9112 2.2: ignore empty lines before the request line.
        let blank = self
            .buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        if blank > 0 {
            self.buf.drain(..blank);
        }
        let Some(head_len) = head_end(&self.buf) else {
            if self.buf.len() >= self.limit {
                return Some(self.fail(Status::HeaderTooLarge));
            }
            return None;
        };
        let parsed = parse_head(&self.buf[..head_len]);
        match parsed {
            Ok(req) => {
                self.buf.drain(..head_len);
                let n = (req.content_length.min(self.buf.len() as u64)) as usize;
                self.buf.drain(..n);
                self.discard = req.content_length - n as u64;
                Some(Event::Request(req))
            }
            Err(status) => Some(self.fail(status)),
        }
    }

    fn fail(&mut self, status: Status) -> Event {
        self.failed = true;
        self.buf.clear();
        Event::Error(status)
    }
}

/// Length of the head (through the empty line) if `buf` holds a complete one.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = &buf[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// `tchar` of RFC 9110 5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses a complete head (request line, header lines, empty line).
fn parse_head(head: &[u8]) -> Result<Request, Status> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().ok_or(Status::BadRequest)?;
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if !is_token(method) || target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Status::BadRequest);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Status::VersionNotSupported);
        }
        _ => return Err(Status::BadRequest),
    };

    let mut content_length: Option<u64> = None;
    let mut host = false;
    let mut close = false;
    let mut keep_alive_token = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(Status::BadRequest); // obsolete line folding
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Status::BadRequest)?;
        let name = &line[..colon];
        let value = trim_ows(&line[colon + 1..]);
        if !is_token(name) || value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(Status::BadRequest);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(value).ok_or(Status::BadRequest)?;
            if content_length.is_some_and(|m| m != n) {
                return Err(Status::BadRequest);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Status::NotImplemented);
        } else if name.eq_ignore_ascii_case(b"host") {
            if host {
                return Err(Status::BadRequest);
            }
            host = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if http11 && !host {
        return Err(Status::BadRequest);
    }

    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(Request {
        method,
        root: path_of(target) == b"/",
        http11,
        keep_alive: !close && (http11 || keep_alive_token),
        content_length: content_length.unwrap_or(0),
    })
}

/// Decimal `Content-Length` (digits only, no overflow).
fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The path of an origin-form or absolute-form target, query and fragment removed.
fn path_of(target: &[u8]) -> &[u8] {
    let mut t = target;
    for scheme in [&b"http://"[..], &b"https://"[..]] {
        if t.len() >= scheme.len() && t[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &t[scheme.len()..];
            t = rest
                .iter()
                .position(|&b| b == b'/')
                .map_or(&b"/"[..], |i| &rest[i..]);
            break;
        }
    }
    let end = t
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(t.len());
    &t[..end]
}

/// Capacity of a response head: the longest one this server writes is well under it.
const HEAD_CAPACITY: usize = 256;

/// A response ready to be written: the head, then `body`.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status line's status.
    pub status: Status,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    head: [u8; HEAD_CAPACITY],
    head_len: usize,
    /// The body (empty for HEAD).
    pub body: &'static [u8],
}

impl Response {
    /// The response to `event`. `body` and `content_type` are what `GET /` serves.
    pub fn for_event(event: Event, body: &'static [u8], content_type: &str) -> Self {
        match event {
            Event::Error(status) => {
                Self::build(status, false, false, error_body(status), "text/plain", true)
            }
            Event::Request(req) => {
                let (status, body, ctype) = match (req.method, req.root) {
                    (Method::Other, _) => (
                        Status::MethodNotAllowed,
                        error_body(Status::MethodNotAllowed),
                        "text/plain",
                    ),
                    (_, false) => (Status::NotFound, error_body(Status::NotFound), "text/plain"),
                    (_, true) => (Status::Ok, body, content_type),
                };
                let head_only = req.method == Method::Head;
                Self::build(status, req.keep_alive, !req.http11, body, ctype, !head_only)
            }
        }
    }

    fn build(
        status: Status,
        keep_alive: bool,
        http10: bool,
        body: &'static [u8],
        content_type: &str,
        with_body: bool,
    ) -> Self {
        let mut w = HeadWriter {
            buf: [0; HEAD_CAPACITY],
            len: 0,
        };
        // Content types come from the configuration: keep them bounded so the head always fits.
        let content_type = if content_type.len() <= 64 {
            content_type
        } else {
            "application/octet-stream"
        };
        let connection = match (keep_alive, http10) {
            (false, _) => "Connection: close\r\n",
            (true, true) => "Connection: keep-alive\r\n",
            (true, false) => "",
        };
        let allow = if status == Status::MethodNotAllowed {
            "Allow: GET, HEAD\r\n"
        } else {
            ""
        };
        // Cannot fail: the fixed parts and a 64-byte content type fit HEAD_CAPACITY.
        let _ = write!(
            w,
            "HTTP/1.1 {} {}\r\nServer: exo-os\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n",
            status.code(),
            status.reason(),
            content_type,
            body.len(),
            allow,
            connection,
        );
        Self {
            status,
            keep_alive,
            head: w.buf,
            head_len: w.len,
            body: if with_body { body } else { &[] },
        }
    }

    /// The status line and headers, through the empty line.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        self.head_len + self.body.len()
    }

    /// Never true (a response always has a head); here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes from offset `at` on, in at most two pieces (head rest, body rest).
    pub fn remaining(&self, at: usize) -> (&[u8], &[u8]) {
        if at < self.head_len {
            (&self.head[at..self.head_len], self.body)
        } else {
            let b = (at - self.head_len).min(self.body.len());
            (&[], &self.body[b..])
        }
    }
}

fn error_body(status: Status) -> &'static [u8] {
    match status {
        Status::Ok => b"",
        Status::BadRequest => b"bad request\n",
        Status::NotFound => b"not found\n",
        Status::MethodNotAllowed => b"method not allowed\n",
        Status::HeaderTooLarge => b"request header fields too large\n",
        Status::NotImplemented => b"transfer-encoding not implemented\n",
        Status::VersionNotSupported => b"http version not supported\n",
    }
}

struct HeadWriter {
    buf: [u8; HEAD_CAPACITY],
    len: usize,
}

impl fmt::Write for HeadWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
