use super::{Outcome, percent_decode, percent_encode};

#[test]
fn service_names_travel_in_the_path_unchanged() {
    for name in ["cart", "a b/c?d%e", "checkout.v2_x~y-z", "ünïcode", "100%"] {
        let encoded = percent_encode(name);
        assert!(
            encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
            "{encoded}"
        );
        assert_eq!(percent_decode(&encoded), name);
    }
    assert_eq!(percent_decode("100%"), "100%");
}

#[test]
fn outcomes_are_labelled_in_counter_order() {
    let all = [Outcome::Imported, Outcome::Empty, Outcome::Failed];
    for (i, o) in all.into_iter().enumerate() {
        assert_eq!(o as usize, i);
    }
    assert_eq!(all.map(Outcome::as_str), ["imported", "empty", "failed"]);
}
