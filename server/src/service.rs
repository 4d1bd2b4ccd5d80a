//! The service of phase 3: named requests answered from a table.
//!
//! By default it holds the original lab's hard-coded value (`memo`) and a
//! few requests someone exploring the system wants.

use std::collections::BTreeMap;

use pki_common::proto::message::Status;

/// What a handler knows about the request's session.
pub struct RequestContext<'a> {
    pub client_id: &'a str,
    pub client_authenticated: bool,
    pub expires_at: u64,
    pub requests: u64,
}

type Handler = Box<dyn Fn(&RequestContext<'_>, &[u8]) -> (Status, Vec<u8>) + Send + Sync>;

/// Named requests and their handlers.
pub struct Service {
    handlers: BTreeMap<String, Handler>,
}

impl Default for Service {
    fn default() -> Self {
        let mut s = Service::empty();
        s.add_static("memo", "take cis3319 class this morning");
        s.add("whoami", |ctx, _| {
            let how = if ctx.client_authenticated {
                "authenticated by certificate"
            } else {
                "unauthenticated: stated by the client in step 5"
            };
            let text = format!(
                "client id: {} ({how})\nsession expires: {}\nrequests on this session: {}",
                ctx.client_id,
                pki_common::cert::rfc3339(ctx.expires_at as i64),
                ctx.requests
            );
            (Status::Ok, text.into_bytes())
        });
        s.add("echo", |_, body| (Status::Ok, body.to_vec()));
        s
    }
}

impl Service {
    /// A service that answers nothing.
    pub fn empty() -> Self {
        Service {
            handlers: BTreeMap::new(),
        }
    }

    /// Adds a request that always answers `text`.
    pub fn add_static(&mut self, name: &str, text: &'static str) {
        self.add(name, move |_, _| (Status::Ok, text.as_bytes().to_vec()));
    }

    /// Adds a request answered by `handler`.
    pub fn add(
        &mut self,
        name: &str,
        handler: impl Fn(&RequestContext<'_>, &[u8]) -> (Status, Vec<u8>) + Send + Sync + 'static,
    ) {
        self.handlers.insert(name.to_string(), Box::new(handler));
    }

    /// Answers a request; an unknown name gets `NotFound` listing the known
    /// ones.
    pub fn answer(&self, name: &str, ctx: &RequestContext<'_>, body: &[u8]) -> (Status, Vec<u8>) {
        match self.handlers.get(name) {
            Some(h) => h(ctx, body),
            None => (
                Status::NotFound,
                format!(
                    "no such request {name:?}; known: {}",
                    self.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
                )
                .into_bytes(),
            ),
        }
    }
}
