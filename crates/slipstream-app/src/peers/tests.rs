use super::{Outcome, Ranking, percent_decode, percent_encode};

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

#[test]
fn each_service_is_ranked_by_exactly_its_replicas_and_as_the_sidecars_rank() {
    let members: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{}", 4000 + i))
        .collect();
    let rankings: Vec<Ranking> = members
        .iter()
        .map(|m| {
            let cfg = slipstream_config::aggregates::PeersConfig {
                endpoints: vec!["http://127.0.0.1:8888".into()],
                bearer_token: Some("t".into()),
                replicas: 2,
                members: members.iter().rev().cloned().collect(),
                member: Some(m.clone()),
                ..Default::default()
            };
            Ranking::of(&cfg).expect("a member")
        })
        .collect();
    let sidecars = slipstream_core::route::Rendezvous::for_endpoints(&members);
    for i in 0..200 {
        let service = format!("service-{i}");
        let ranking: Vec<usize> = (0..3).filter(|&g| rankings[g].ranks(&service)).collect();
        let mut want = sidecars.pick_n(service.as_bytes(), 2);
        want.sort_unstable();
        assert_eq!(ranking, want, "{service}");
    }
    let off = slipstream_config::aggregates::PeersConfig::default();
    assert!(Ranking::of(&off).is_none());
}
