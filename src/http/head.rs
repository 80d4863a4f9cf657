//! The request head's size, checked before hyper reads it, so an oversized
//! one is answered in JSON like every other error.
//!
//! hyper answers a request line over 64 KiB (414) or a head past its buffer
//! or 100 fields (431) itself, with an empty body. [`HeadLimit`] sits
//! between the socket and hyper with lower limits: it counts the head's
//! bytes, lines and request line as they arrive and, past a limit, writes a
//! JSON 414 or 431 itself, closes its side, and reads what the client still
//! sends until it leaves (closing with unread data would reset the
//! connection and could lose the answer). hyper only sees the connection end.
//!
//! Every head of a keep-alive connection is checked, except after a chunked
//! body or behind a pipelined request: the wrapper then cannot tell where the
//! next head starts, and leaves it to hyper's limits.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request line (method, target, version): as nginx's and Apache's
/// default buffers; far below hyper's 64 KiB.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head, request line included.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most header fields: hyper's own limit, refused here first.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Bytes read from a refused client before giving up on a clean close.
const DRAIN_BYTES: usize = 256 * 1024;

enum State {
    /// Reading a head: its bytes so far, complete lines, the current line's
    /// length (without CR).
    Head {
        bytes: usize,
        lines: usize,
        line: usize,
    },
    /// Past the head: bytes read since.
    Passed { read: u64 },
    /// The next head's start is unknown: hyper's limits alone apply.
    Unchecked,
    /// Writing the refusal.
    Refusing { response: Vec<u8>, written: usize },
    /// Refusal sent; reading until the client closes.
    Draining { left: usize },
}

/// The value of [`Answered`] until a request is answered.
const UNANSWERED: u64 = u64::MAX;

/// Set by the service when it has answered a request: the length of the
/// request's body, after which the next head starts.
#[derive(Clone)]
pub struct Answered(Arc<AtomicU64>);

impl Answered {
    /// None answered yet.
    pub fn new() -> Answered {
        Answered(Arc::new(AtomicU64::new(UNANSWERED)))
    }

    /// The request, whose body had `body_len` bytes (`None`: chunked), is
    /// answered.
    pub fn set(&self, body_len: Option<u64>) {
        self.0
            .store(body_len.unwrap_or(UNANSWERED), Ordering::Relaxed);
    }
}

/// A socket whose request heads are checked before hyper reads them.
pub struct HeadLimit<S> {
    inner: S,
    state: State,
    answered: Answered,
}

impl<S> HeadLimit<S> {
    /// Wraps `inner`; the service reports each answer through `answered`.
    pub fn new(inner: S, answered: Answered) -> HeadLimit<S> {
        HeadLimit {
            inner,
            state: State::Head {
                bytes: 0,
                lines: 0,
                line: 0,
            },
            answered,
        }
    }
}

/// What `bytes` do to a head in progress: `Ok(Some(n))` the head ends after
/// `n` of them, `Ok(None)` it goes on, `Err(response)` it is refused.
fn scan(
    bytes: &[u8],
    total: &mut usize,
    lines: &mut usize,
    line: &mut usize,
) -> Result<Option<usize>, Vec<u8>> {
    for (i, &b) in bytes.iter().enumerate() {
        *total += 1;
        match b {
            b'\n' if *line == 0 && *lines > 0 => return Ok(Some(i + 1)),
            // Blank lines before the request line are skipped, as hyper does.
            b'\n' if *line == 0 => {}
            b'\n' => {
                *lines += 1;
                *line = 0;
            }
            b'\r' => {}
            _ => *line += 1,
        }
        if *lines == 0 && *line > MAX_REQUEST_LINE {
            return Err(refusal(
                "414 URI Too Long",
                &format!("request line over {MAX_REQUEST_LINE} bytes"),
            ));
        }
        if *total > MAX_HEAD_BYTES || *lines > MAX_HEADER_FIELDS + 1 {
            return Err(refusal(
                "431 Request Header Fields Too Large",
                &format!(
                    "request headers over {MAX_HEAD_BYTES} bytes or {MAX_HEADER_FIELDS} fields"
                ),
            ));
        }
    }
    Ok(None)
}

fn refusal(status: &str, error: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": error }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadLimit<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Refusing { response, written } => {
                    while *written < response.len() {
                        match ready!(Pin::new(&mut this.inner).poll_write(cx, &response[*written..]))
                        {
                            Ok(0) | Err(_) => return Poll::Ready(Ok(())),
                            Ok(n) => *written += n,
                        }
                    }
                    let _ = ready!(Pin::new(&mut this.inner).poll_shutdown(cx));
                    this.state = State::Draining { left: DRAIN_BYTES };
                }
                State::Draining { left } => {
                    let mut scratch = [0u8; 8192];
                    let mut sink = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sink)) {
                        Ok(()) if !sink.filled().is_empty() && sink.filled().len() < *left => {
                            *left -= sink.filled().len();
                        }
                        // The client left, failed, or will not stop: the end.
                        _ => return Poll::Ready(Ok(())),
                    }
                }
                State::Passed { read } => {
                    let body_len = this.answered.0.load(Ordering::Relaxed);
                    if body_len != UNANSWERED && *read == body_len {
                        this.state = State::Head {
                            bytes: 0,
                            lines: 0,
                            line: 0,
                        };
                        continue;
                    }
                    if body_len != UNANSWERED && *read > body_len {
                        // Pipelined: the next head is already partly read.
                        this.state = State::Unchecked;
                        continue;
                    }
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    *read += (buf.filled().len() - before) as u64;
                    return Poll::Ready(Ok(()));
                }
                State::Unchecked => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Head { bytes, lines, line } => {
                    let before = buf.filled().len();
                    ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                    match scan(&buf.filled()[before..], bytes, lines, line) {
                        Ok(None) => {}
                        Ok(Some(end)) => {
                            this.answered.0.store(UNANSWERED, Ordering::Relaxed);
                            this.state = State::Passed {
                                read: (buf.filled().len() - before - end) as u64,
                            };
                        }
                        Err(response) => {
                            // hyper never sees the refused bytes.
                            buf.set_filled(before);
                            this.state = State::Refusing {
                                response,
                                written: 0,
                            };
                            continue;
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeadLimit<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What hyper would read from the wrapper, and what the client receives.
    async fn exchange(request: &[u8]) -> (Vec<u8>, String) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut server = HeadLimit::new(server, Answered::new());
        let (mut client_read, mut client_write) = tokio::io::split(client);
        client_write.write_all(request).await.unwrap();
        client_write.shutdown().await.unwrap();
        let mut seen = Vec::new();
        server.read_to_end(&mut seen).await.unwrap();
        drop(server);
        let mut answer = String::new();
        client_read.read_to_string(&mut answer).await.unwrap();
        (seen, answer)
    }

    #[tokio::test]
    async fn heads_within_limits_pass_untouched() {
        let request =
            b"\r\nPOST /api/v1/suppressions HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\n{}";
        let (seen, answer) = exchange(request).await;
        assert_eq!(seen, request);
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn a_long_request_line_is_answered_414_in_json() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        let (seen, answer) = exchange(long.as_bytes()).await;
        assert!(
            seen.len() <= MAX_REQUEST_LINE,
            "hyper never sees the refused bytes: {}",
            seen.len()
        );
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["error"].as_str().unwrap().contains("request line"));
    }

    #[tokio::test]
    async fn large_or_many_headers_are_answered_431_in_json() {
        let big = format!(
            "GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "b".repeat(MAX_HEAD_BYTES)
        );
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..=MAX_HEADER_FIELDS)
                .map(|i| format!("X-{i}: v\r\n"))
                .collect::<String>()
        );
        for request in [big, many] {
            let (_, answer) = exchange(request.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
            assert!(
                answer.contains("content-type: application/json"),
                "{answer}"
            );
        }
        let fits = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            (0..MAX_HEADER_FIELDS)
                .map(|i| format!("X-{i}: v\r\n"))
                .collect::<String>()
        );
        assert!(exchange(fits.as_bytes()).await.1.is_empty());
    }

    #[tokio::test]
    async fn each_head_of_a_keep_alive_connection_is_checked() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let answered = Answered::new();
        let mut server = HeadLimit::new(server, answered.clone());
        let mut buf = vec![0u8; 1 << 16];
        let post = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n";
        client.write_all(post).await.unwrap();
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], post);
        client.write_all(b"{}").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 2);
        answered.set(Some(2));
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        client.write_all(long.as_bytes()).await.unwrap();
        client.shutdown().await.unwrap();
        tokio::spawn(async move { server.read_to_end(&mut Vec::new()).await });
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
    }

    #[tokio::test]
    async fn a_pipelined_head_is_left_to_hyper() {
        let mut request = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        request.extend(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE)).bytes());
        let (seen, answer) = exchange(&request).await;
        assert_eq!(seen, request);
        assert!(answer.is_empty());
    }
}
