use std::io::ErrorKind;

use super::read_length_prefixed;

fn framed(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&(r.len() as u32).to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

#[test]
fn reads_records_in_order_then_a_clean_end() {
    let file = framed(&[b"first", b"", b"third record"]);
    let mut r = file.as_slice();
    assert_eq!(read_length_prefixed(&mut r).unwrap().unwrap(), b"first");
    assert_eq!(read_length_prefixed(&mut r).unwrap().unwrap(), b"");
    assert_eq!(
        read_length_prefixed(&mut r).unwrap().unwrap(),
        b"third record"
    );
    assert!(read_length_prefixed(&mut r).unwrap().is_none());
}

#[test]
fn a_file_cut_inside_a_length_or_a_record_is_an_error_saying_so() {
    let file = framed(&[b"whole", b"cut short"]);
    let mut r = &file[..file.len() - 3];
    assert!(read_length_prefixed(&mut r).unwrap().is_some());
    let e = read_length_prefixed(&mut r).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
    assert!(e.to_string().contains("record of 9 bytes after 6"), "{e}");

    let mut r: &[u8] = &[0, 0];
    let e = read_length_prefixed(&mut r).unwrap_err();
    assert!(e.to_string().contains("inside a record length"), "{e}");
}

#[test]
fn a_huge_announced_length_allocates_only_what_arrives() {
    let mut file = u32::MAX.to_be_bytes().to_vec();
    file.extend_from_slice(b"tiny");
    let mut r = file.as_slice();
    let e = read_length_prefixed(&mut r).unwrap_err();
    assert!(e.to_string().contains("after 4"), "{e}");
}
