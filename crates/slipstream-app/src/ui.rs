//! The status page served by the admin server at `/`: the SLO table sorted by budget burn,
//! per-SLO charts (SLI, burn rate per window, budget remaining) with deploy markers, the event
//! timeline, and the services missing from the catalog.
//!
//! It is a static page (`ui/index.html`, `ui/app.js`, `ui/style.css`, embedded in the binary)
//! that reads the JSON API ([`crate::api`]) and refreshes itself every 10 seconds; no external
//! resources, no build step.

use http::{HeaderValue, Response, StatusCode, header};
use slipstream_receiver::ResponseBody;

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// Only this origin's scripts, styles and API; no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(
    status: StatusCode,
    body: &'static str,
    content_type: &'static str,
) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    r
}

/// Answers a GET or HEAD of the status page (`/`) or one of its assets (`/ui/...`; 404 for an
/// unknown one); `None` for any other path.
pub fn handle(path: &str) -> Option<Response<ResponseBody>> {
    const HTML: &str = "text/html; charset=utf-8";
    Some(match path {
        "/" | "/ui" | "/ui/" | "/ui/index.html" => asset(StatusCode::OK, INDEX, HTML),
        "/ui/app.js" => asset(StatusCode::OK, APP, "text/javascript; charset=utf-8"),
        "/ui/style.css" => asset(StatusCode::OK, STYLE, "text/css; charset=utf-8"),
        p if p.starts_with("/ui/") => asset(
            StatusCode::NOT_FOUND,
            "not found: the status page is at /\n",
            "text/plain; charset=utf-8",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(r: &Response<ResponseBody>) -> &str {
        r.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn serves_the_page_and_its_assets() {
        for (path, ty) in [
            ("/", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/style.css", "text/css"),
        ] {
            let r = handle(path).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(content_type(&r).starts_with(ty), "{path}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        }
        let page = handle("/").unwrap();
        let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("script-src 'self'"));
        assert_eq!(
            handle("/ui/nope.js").unwrap().status(),
            StatusCode::NOT_FOUND
        );
        assert!(handle("/api/v1/slos").is_none());
        assert!(handle("/metrics").is_none());
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
        for text in [INDEX, APP, STYLE] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
    }
}
