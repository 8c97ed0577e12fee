//! The JSON lines reader: every line whole and in order, whatever its length against the
//! reader's buffer.

use std::io::Write as _;

use super::{InputFormat, Records, decode_json_line};

/// The file reader's buffer (`Records::open`).
const BUFFER: usize = 1 << 20;

/// A line of one span named `name`.
fn line(name: &str) -> String {
    format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"{name}"}}]}}]}}]}}"#)
}

#[test]
fn lines_are_read_whole_across_buffers() {
    // Short lines, a line longer than the buffer, lines that straddle its ends, a blank line,
    // CRLF, a malformed line and a last line without a newline.
    let mut lines = vec![line("a"), line(&"b".repeat(BUFFER * 3 + 10))];
    for i in 0..40 {
        lines.push(line(&"c".repeat(BUFFER / 7 + i * 1013)));
    }
    lines.push(String::new());
    lines.push(format!("{}\r", line("d")));
    lines.push("{\"resourceSpans\":[".to_owned());
    lines.push(line("e"));
    let content = lines.join("\n");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(content.as_bytes()).unwrap();
    f.flush().unwrap();

    let (mut records, len) = Records::open(f.path(), InputFormat::Auto).unwrap();
    let mut got = Vec::new();
    let mut bytes = 0;
    while let Some((body, size)) = records.next().unwrap() {
        got.push((body, size));
        bytes += size;
    }
    // Each line as it is in the file, its newline included.
    let expected: Vec<_> = content
        .as_bytes()
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| l != b"\n")
        .map(|l| (decode_json_line(l), l.len() as u64))
        .collect();
    assert_eq!(got.len(), expected.len());
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert!(got == expected, "record {i} differs");
    }
    assert!(
        got[got.len() - 2].0.is_err(),
        "the malformed line is an error"
    );
    assert_eq!(bytes, len - 1, "every byte but the blank line's is counted");
}
