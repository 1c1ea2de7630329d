//! The bearer token: `401` without it or with a wrong one, `200` with it; `/healthz` and the
//! static page open; refusals counted; the token in force follows the cell a reload swaps.

use farmgate_admin::Limits;

use crate::Endpoint;

const TOKEN: &str = "3f1c9a7e0b5d42e8a6c1f09b7d3e5a21";

#[tokio::test]
async fn status_and_metrics_need_the_token_and_healthz_does_not() {
    let admin = Endpoint::with_token(Some(TOKEN)).await;
    let bearer = format!("Bearer {TOKEN}");
    for path in ["/status", "/metrics", "/nowhere"] {
        let none = admin.get(path, None).await;
        assert_eq!(none.status, 401, "{path}: {none:?}");
        assert_eq!(
            none.header("www-authenticate"),
            Some(r#"bearer realm="farmgate""#),
            "{path}: {none:?}"
        );
        assert!(none.body.contains("Authorization: Bearer"), "{none:?}");
        let wrong = admin.get(path, Some("Bearer not-the-token")).await;
        assert_eq!(wrong.status, 401, "{path}: {wrong:?}");
        assert_eq!(
            wrong.header("www-authenticate"),
            Some(r#"bearer realm="farmgate", error="invalid_token""#),
            "{wrong:?}"
        );
        let basic = admin.get(path, Some(&format!("Basic {TOKEN}"))).await;
        assert_eq!(basic.status, 401, "only the Bearer scheme: {basic:?}");
    }
    let status = admin.get("/status", Some(&bearer)).await;
    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.body, "\"up\"\n");
    let metrics = admin.get("/metrics", Some(&bearer)).await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(metrics.body.ends_with("# EOF\n"), "{metrics:?}");
    assert_eq!(admin.get("/nowhere", Some(&bearer)).await.status, 404);

    let health = admin.get("/healthz", None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    // The page is static and holds no data: it asks for the token itself.
    let page = admin.get("/", None).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("sessionStorage"), "the token form");
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let admin = Endpoint::with_token(Some(TOKEN)).await;
    for _ in 0..3 {
        admin.get("/status", None).await;
    }
    admin.get("/metrics", Some("Bearer wrong")).await;
    let metrics = admin
        .get("/metrics", Some(&format!("Bearer {TOKEN}")))
        .await;
    assert!(
        metrics
            .body
            .contains("farmgate_admin_unauthorized_total{reason=\"missing\"} 3\n"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("farmgate_admin_unauthorized_total{reason=\"wrong\"} 1\n"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn a_new_token_replaces_the_old_one_at_once() {
    let admin = Endpoint::with_token(Some("old-token")).await;
    assert_eq!(
        admin.get("/status", Some("Bearer old-token")).await.status,
        200
    );
    admin.set_token("new-token");
    assert_eq!(
        admin.get("/status", Some("Bearer old-token")).await.status,
        401
    );
    assert_eq!(
        admin.get("/status", Some("Bearer new-token")).await.status,
        200
    );
}

#[tokio::test]
async fn without_a_token_file_loopback_is_open() {
    let admin = Endpoint::with_token(None).await;
    assert_eq!(admin.get("/status", None).await.status, 200);
    assert_eq!(
        admin.get("/metrics", Some("Bearer anything")).await.status,
        200
    );
}

#[tokio::test]
async fn beyond_loopback_without_a_token_only_healthz_and_the_page_answer() {
    // What a reload that drops token_file leaves behind: the endpoint still listens where it
    // started (here on every address) until a restart.
    let admin = Endpoint::start("0.0.0.0:0", None, Limits::default(), "up".into()).await;
    let refused = admin.get("/status", None).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.body.contains("token_file"), "{refused:?}");
    assert_eq!(admin.get("/metrics", Some("Bearer x")).await.status, 401);
    assert_eq!(admin.get("/healthz", None).await.status, 200);
    assert_eq!(admin.get("/", None).await.status, 200);
    admin.set_token(TOKEN);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(admin.get("/status", Some(&bearer)).await.status, 200);
}
