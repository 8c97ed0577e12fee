//! Recorded export requests in a file, as `slipstream replay` reads them: length-prefixed
//! protobuf, each record a 4-byte big-endian length and then that many bytes of an
//! `ExportTraceServiceRequest`; and its other input, OTLP JSON lines, each decoded by
//! [`json::to_protobuf`] into what the span scanner reads.

use std::io::{self, Read};

pub mod json;

/// Reads one length-prefixed record; `None` at a clean end of input. Memory grows with the
/// bytes actually read, never with the length a hostile header announces. A file that ends
/// inside a record is an [`io::ErrorKind::UnexpectedEof`] error saying where.
pub fn read_length_prefixed<R: Read>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(truncated(
                    "the file ends inside a record length (truncated length-prefixed protobuf)"
                        .to_owned(),
                ));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let n = u64::from(u32::from_be_bytes(len));
    let mut buf = Vec::new();
    r.take(n).read_to_end(&mut buf)?;
    if buf.len() as u64 != n {
        return Err(truncated(format!(
            "the file ends inside a record of {n} bytes after {} (truncated length-prefixed protobuf)",
            buf.len()
        )));
    }
    Ok(Some(buf))
}

fn truncated(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

#[cfg(test)]
mod tests;
