//! Routing within a listener: the first route whose host and path prefix match a request.

use farmgate_config::Route;

/// The first route in `routes` that takes a request for `host` (lower-case, without port) and
/// `path`, with its index.
pub(crate) fn find<'r>(routes: &'r [Route], host: &str, path: &str) -> Option<(usize, &'r Route)> {
    routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(host, path))
}

/// The label of a route in metrics and `/status`: its host (or `*`) and path prefix, e.g.
/// `www.example.com/api`.
pub(crate) fn label(route: &Route) -> String {
    match &route.host {
        Some(host) => format!("{host}{}", route.path_prefix),
        None => format!("*{}", route.path_prefix),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    fn routes() -> Vec<Route> {
        let text = r#"
[[listener]]
name = "public"
listen = "127.0.0.1:0"
[[listener.route]]
host = "api.example.com"
path_prefix = "/v1"
upstream = "api"
[[listener.route]]
host = "*.example.com"
upstream = "farm"
[[listener.route]]
path_prefix = "/static/"
upstream = "static"
[[listener.route]]
upstream = "farm"
[upstream.api]
servers = ["127.0.0.1:9"]
[upstream.farm]
servers = ["127.0.0.1:9"]
[upstream.static]
servers = ["127.0.0.1:9"]
"#;
        let config = farmgate_config::Config::parse(text, "routes.toml".as_ref()).unwrap();
        config.listeners[0].routes.clone()
    }

    fn taken(host: &str, path: &str) -> Option<usize> {
        find(&routes(), host, path).map(|(i, _)| i)
    }

    #[test]
    fn the_first_matching_route_wins() {
        assert_eq!(taken("api.example.com", "/v1/users"), Some(0));
        assert_eq!(taken("api.example.com", "/v2"), Some(1), "wildcard host");
        assert_eq!(taken("www.example.com", "/static/a.css"), Some(1));
        assert_eq!(taken("other.test", "/static/a.css"), Some(2));
        assert_eq!(taken("other.test", "/"), Some(3), "the catch-all");
    }

    #[test]
    fn a_path_prefix_matches_whole_segments() {
        assert_eq!(taken("api.example.com", "/v1"), Some(0));
        assert_eq!(taken("api.example.com", "/v1?q=1"), Some(0));
        assert_eq!(taken("api.example.com", "/v10"), Some(1));
    }

    #[test]
    fn without_a_catch_all_nothing_matches() {
        let routes = routes();
        assert!(find(&routes[..3], "other.test", "/").is_none());
    }

    #[test]
    fn labels_name_host_and_prefix() {
        let labels: Vec<String> = routes().iter().map(label).collect();
        assert_eq!(
            labels,
            ["api.example.com/v1", "*.example.com/", "*/static/", "*/"]
        );
    }
}
