//! A raw HTTP/1.1 client: exactly the bytes a test writes, and the response
//! read back as it came (one response: by its length, its chunks, or to the
//! end of the connection).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response, or what came before the connection closed.
#[derive(Debug, Default)]
pub struct Raw {
    /// `None` when the connection closed before a status line.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub use crate::gateway_harness::bounded;

/// A complete request with `connection: close`.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
}

/// Connects, writes `request`, reads one response.
pub async fn raw(addr: SocketAddr, request: &str) -> Raw {
    bounded(async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        read_response(&mut s).await
    })
    .await
}

/// Reads one response from `s`.
pub async fn read_response(s: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if !fill(s, &mut buf).await {
            return Raw::default();
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut res = Raw {
        status,
        headers,
        body: buf.split_off(head_end + 4),
    };
    if let Some(len) = res
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok())
    {
        while res.body.len() < len && fill(s, &mut res.body).await {}
        res.body.truncate(len);
    } else if res.header("transfer-encoding") == Some("chunked") {
        let raw = std::mem::take(&mut res.body);
        res.body = dechunk(s, raw).await;
    } else {
        while fill(s, &mut res.body).await {}
    }
    res
}

/// Reads more into `buf`; false at the end of the connection (or a reset).
async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// The body of a chunked message, `raw` being what was read of it so far;
/// stops at the last chunk or the end of the connection.
async fn dechunk(s: &mut TcpStream, mut raw: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(&raw, b"\r\n") else {
            if fill(s, &mut raw).await {
                continue;
            }
            return body;
        };
        let size = std::str::from_utf8(&raw[..line_end])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok());
        let Some(size) = size else { return body };
        if size == 0 {
            return body;
        }
        while raw.len() < line_end + 2 + size + 2 {
            if !fill(s, &mut raw).await {
                body.extend_from_slice(&raw[(line_end + 2).min(raw.len())..]);
                return body;
            }
        }
        body.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw.drain(..line_end + 2 + size + 2);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
