//! A route's header rules (`request_headers`, `response_headers`) as a listener applies them:
//! built once with the listener, so a request on a route without rules pays one bounds-checked
//! lookup, and one with rules a removal or insertion per header.

use farmgate_config::{HeaderRules, Route};
use http::HeaderMap;

/// The header rules of every route of a listener, in route order.
#[derive(Debug, Default)]
pub(crate) struct RouteRules {
    routes: Box<[Rules]>,
}

/// One route's rules.
#[derive(Debug, Default)]
struct Rules {
    request: HeaderRules,
    response: HeaderRules,
}

impl RouteRules {
    pub(crate) fn build(routes: &[Route]) -> RouteRules {
        let none = routes
            .iter()
            .all(|r| r.request_headers.is_empty() && r.response_headers.is_empty());
        if none {
            // Most listeners: every lookup then ends at once, with no rules to walk per
            // request and response.
            return RouteRules::default();
        }
        RouteRules {
            routes: routes
                .iter()
                .map(|r| Rules {
                    request: r.request_headers.clone(),
                    response: r.response_headers.clone(),
                })
                .collect(),
        }
    }

    /// Applies route `route`'s `request_headers` to a request on its way to the upstream,
    /// after the headers the hop manages are set (which no rule may touch).
    pub(crate) fn request(&self, route: usize, headers: &mut HeaderMap) {
        if let Some(rules) = self.routes.get(route) {
            apply(&rules.request, headers);
        }
    }

    /// Applies route `route`'s `response_headers` to a response on its way to the client
    /// (`None`: a request answered before it was routed, which no rule covers).
    pub(crate) fn response(&self, route: Option<usize>, headers: &mut HeaderMap) {
        if let Some(rules) = route.and_then(|i| self.routes.get(i)) {
            apply(&rules.response, headers);
        }
    }
}

/// Removes, then sets: a header both removed and set cannot happen (the configuration refuses
/// it), and `set` replaces every value of its name.
fn apply(rules: &HeaderRules, headers: &mut HeaderMap) {
    for name in &rules.remove {
        headers.remove(name);
    }
    for (name, value) in &rules.set {
        headers.insert(name.clone(), value.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use http::HeaderValue;

    use super::*;

    fn rules() -> RouteRules {
        let text = r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[[listener.route]]
path_prefix = "/plain"
upstream = "farm"
[[listener.route]]
upstream = "farm"
response_headers = { set = { "Strict-Transport-Security" = "max-age=63072000" }, remove = ["Server"] }
request_headers = { set = { "X-Farm" = "edge-1" } }
[upstream.farm]
servers = ["127.0.0.1:9"]
"#;
        let config = farmgate_config::Config::parse(text, "rules.toml".as_ref()).unwrap();
        RouteRules::build(&config.listeners[0].routes)
    }

    #[test]
    fn a_route_sets_and_removes_what_it_says_and_replaces_every_value() {
        let rules = rules();
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("origin/1.0"));
        headers.append(
            "strict-transport-security",
            HeaderValue::from_static("max-age=1"),
        );
        headers.append(
            "strict-transport-security",
            HeaderValue::from_static("max-age=2"),
        );
        rules.response(Some(1), &mut headers);
        assert!(headers.get("server").is_none());
        let hsts: Vec<_> = headers
            .get_all("strict-transport-security")
            .iter()
            .collect();
        assert_eq!(hsts, ["max-age=63072000"]);

        let mut request = HeaderMap::new();
        request.insert("x-farm", HeaderValue::from_static("client-sent"));
        rules.request(1, &mut request);
        assert_eq!(request["x-farm"], "edge-1");
    }

    #[test]
    fn routes_without_rules_and_unrouted_answers_are_left_alone() {
        let rules = rules();
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("origin/1.0"));
        rules.response(Some(0), &mut headers);
        rules.response(None, &mut headers);
        rules.request(0, &mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn a_listener_without_rules_keeps_none() {
        let text = r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[[listener.route]]
upstream = "farm"
[upstream.farm]
servers = ["127.0.0.1:9"]
"#;
        let config = farmgate_config::Config::parse(text, "rules.toml".as_ref()).unwrap();
        let rules = RouteRules::build(&config.listeners[0].routes);
        assert!(rules.routes.is_empty());
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("origin/1.0"));
        rules.response(Some(0), &mut headers);
        rules.request(0, &mut headers);
        assert_eq!(headers.len(), 1);
    }
}
