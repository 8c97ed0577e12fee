use super::ForwardCompression;
use crate::Config;

#[test]
fn compression_takes_none_gzip_and_zstd_and_names_the_field_otherwise() {
    for (value, want) in [
        ("none", ForwardCompression::None),
        ("gzip", ForwardCompression::Gzip),
        ("zstd", ForwardCompression::Zstd),
    ] {
        let yaml = format!("forward:\n  compression: {value}\n");
        let c = Config::from_yaml(&yaml).unwrap();
        assert_eq!(c.forward.compression, want, "{value}");
    }
    let err = Config::from_yaml("forward:\n  compression: brotli\n").unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains("forward.compression"), "{shown}");
    assert!(
        shown.contains("zstd"),
        "the accepted values are listed: {shown}"
    );
}
