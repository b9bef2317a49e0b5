//! `[admin]`: the job's admin HTTP endpoint (metrics, health, readiness, snapshot look-ups).

use std::net::{Ipv4Addr, SocketAddr};

use crate::document::Document;
use crate::read::Section;

/// `[admin]`: where the admin endpoint listens.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Address and port of the admin HTTP endpoint (`/metrics`, `/healthz`, `/readyz`,
    /// `/snapshot/{kind}/{id}`); `None` (written `""`) turns the endpoint off.
    pub listen: Option<SocketAddr>,
}

/// Loopback port 9898: a scraper or probe on the same host reaches it, nothing else does
/// until the operator chooses an address to expose it on.
pub(crate) fn default_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 9898)))
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_listen(),
        }
    }
}

impl AdminConfig {
    pub(crate) fn read(mut s: Section<'_>) -> AdminConfig {
        let config = AdminConfig {
            listen: s.listen_address("listen", default_listen()),
        };
        s.finish();
        config
    }

    pub(crate) fn write(&self, doc: &mut Document) {
        let section = doc.section("admin");
        section.set("listen", listen_text(self.listen));
    }
}

/// The address as the configuration writes it: `""` when the endpoint is off.
pub(crate) fn listen_text(listen: Option<SocketAddr>) -> String {
    listen.map(|addr| addr.to_string()).unwrap_or_default()
}
