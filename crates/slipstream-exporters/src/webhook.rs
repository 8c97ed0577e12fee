//! Burn-rate events POSTed as JSON to a webhook.
//!
//! Each event is one `POST` to `exporters.webhook.url` whose body is the event's JSON form
//! (`serde_json` of [`slipstream_core::BurnRateEvent`], documented in the README's
//! "Burn-rate events" section) plus `incident_key` ([`crate::alertmanager::incident_key`]: the
//! same on every replica that fires the alert, so a receiver can deduplicate), with:
//!
//! - `Content-Type: application/json`;
//! - `X-Slipstream-Event: firing` or `resolved`;
//! - when `secret` is set, `signature_header` (default `X-Slipstream-Signature`) set to
//!   `sha256=` followed by the lowercase hex HMAC-SHA256 of the exact body bytes under the
//!   secret ([`signature`]);
//! - the configured extra `headers`.
//!
//! Delivery goes through [`crate::delivery`]: bounded queue (oldest dropped), retries of
//! connection errors, timeouts, 429 and 5xx, other 4xx dropped.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use sha2::Sha256;
use slipstream_config::exporters::WebhookConfig;
use slipstream_core::export::EventState;
use slipstream_core::{BurnRateEvent, Registry};

use crate::Error;
use crate::delivery::{self, Delivery, HttpClient};

/// The `exporter` label value of the webhook's delivery metrics.
pub const EXPORTER: &str = "webhook";
/// Header naming the event's state (`firing` or `resolved`).
pub const EVENT_HEADER: &str = "x-slipstream-event";
/// `Content-Type` of the body.
pub const CONTENT_TYPE: &str = "application/json";

/// One queued POST: the body and its headers (configured ones, event state, signature).
#[derive(Debug)]
struct Post {
    headers: HeaderMap,
    body: Bytes,
}

/// The running webhook exporter.
#[derive(Debug)]
pub struct WebhookExporter {
    delivery: Delivery<Post>,
    headers: HeaderMap,
    signer: Option<(HeaderName, Vec<u8>)>,
}

impl WebhookExporter {
    /// Starts the delivery worker for `cfg.url` (an `http://` URL) on the current tokio
    /// runtime. Fails on an unsupported URL or a header that is not valid HTTP.
    pub fn start(cfg: &WebhookConfig, registry: &Registry) -> Result<Self, Error> {
        let url = delivery::http_url("exporters.webhook.url", &cfg.url)?;
        let headers = delivery::header_map("exporters.webhook", &cfg.headers)?;
        let signer = match &cfg.secret {
            Some(secret) => {
                let name = HeaderName::from_bytes(cfg.signature_header.as_bytes())
                    .map_err(|e| Error::field("exporters.webhook.signature_header", e))?;
                Some((name, secret.as_bytes().to_vec()))
            }
            None => None,
        };
        let delivery_cfg = cfg.delivery();
        let client = delivery::http_client(
            "exporters.webhook",
            delivery_cfg.timeout,
            delivery_cfg.tls.as_ref(),
        )?;
        let timeout = delivery_cfg.timeout;
        let delivery = Delivery::start(EXPORTER, &delivery_cfg, registry, move |post: &Post| {
            let (client, url): (HttpClient, Uri) = (client.clone(), url.clone());
            let (headers, body) = (post.headers.clone(), post.body.clone());
            async move { delivery::post(&client, &url, &headers, CONTENT_TYPE, body, timeout).await }
        });
        Ok(WebhookExporter {
            delivery,
            headers,
            signer,
        })
    }

    /// Queues one POST for `event`; never waits.
    pub fn send(&self, event: &BurnRateEvent) {
        let mut json = serde_json::to_value(event).expect("an event serializes to JSON");
        if let Some(fields) = json.as_object_mut() {
            fields.insert(
                "incident_key".to_owned(),
                crate::alertmanager::incident_key(event).into(),
            );
        }
        let body = Bytes::from(serde_json::to_vec(&json).expect("JSON serializes"));
        let mut headers = self.headers.clone();
        headers.insert(
            HeaderName::from_static(EVENT_HEADER),
            HeaderValue::from_static(match event.state {
                EventState::Firing => "firing",
                EventState::Resolved => "resolved",
            }),
        );
        if let Some((name, secret)) = &self.signer {
            let value = HeaderValue::from_str(&signature(secret, &body))
                .expect("hex digits are a valid header value");
            headers.insert(name.clone(), value);
        }
        self.delivery.push(Post { headers, body });
    }

    /// Queues one POST per event, in order.
    pub fn publish(&self, events: &[BurnRateEvent]) {
        for event in events {
            self.send(event);
        }
    }

    /// Delivers what is queued within `deadline`; returns how many events were dropped.
    pub async fn shutdown(self, deadline: std::time::Duration) -> usize {
        self.delivery.shutdown(deadline).await
    }
}

crate::lifecycle::exporter!(WebhookExporter, EXPORTER);

impl crate::lifecycle::EventExporter for WebhookExporter {
    fn publish(&self, events: &[BurnRateEvent]) {
        WebhookExporter::publish(self, events);
    }
}

/// The signature header's value for `body`: `sha256=<lowercase hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests;
