use crate::Config;

#[test]
fn exemplars_are_on_by_default_without_links() {
    let c = Config::from_yaml("{}").unwrap();
    assert!(c.exemplars.enabled);
    assert_eq!(c.exemplars.trace_url, None);
    assert!(c.validate().is_empty());
}

#[test]
fn a_trace_url_must_name_the_trace_id() {
    let c = Config::from_yaml(
        "exemplars:\n  enabled: false\n  trace_url: https://tempo.example/trace/{trace_id}?span={span_id}\n",
    )
    .unwrap();
    assert!(!c.exemplars.enabled);
    assert!(c.validate().is_empty());
    // Loading validates: the error names the field.
    let errs = Config::from_yaml("exemplars:\n  trace_url: https://tempo.example/search\n")
        .unwrap_err()
        .errors;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "exemplars.trace_url");
    assert!(errs[0].message.contains("{trace_id}"));
}
