//! What the bad requests share: an attribute value's share of the bad requests against its
//! share of all requests, as burn-rate events name them.

use std::fmt;

/// An attribute value that concentrates the bad requests of a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ValueShare {
    /// The candidate attribute (`http.route`).
    pub attribute: String,
    /// Its value, as text (`/pay`).
    pub value: String,
    /// Share of the window's bad requests that carry the value (0 to 1).
    pub bad_share: f64,
    /// Share of all the window's requests that carry it (0 to 1).
    pub all_share: f64,
}

impl ValueShare {
    /// How much more the value is among the bad requests than among all: the ranking score.
    pub fn score(&self) -> f64 {
        self.bad_share - self.all_share
    }
}

impl fmt::Display for ValueShare {
    /// `http.route=/pay: 92% of bad, 7% of all`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}: {:.0}% of bad, {:.0}% of all",
            self.attribute,
            self.value,
            self.bad_share * 100.0,
            self.all_share * 100.0
        )
    }
}

/// The annotation of an event's shares (`bad_requests_share`): each as [`ValueShare`]
/// displays it, best ranked first, separated by `; `.
pub fn render_shares(shares: &[ValueShare]) -> String {
    shares
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The annotation key events carry [`render_shares`] under.
pub const SHARES_ANNOTATION: &str = "bad_requests_share";
