//! The consent page end to end (`--transport http --oauth`, the spawned binary in front of
//! the sandbox portal): before a browser goes to the portal for a client it has not
//! approved, the person is asked on this server's own page; the answer is bound to that
//! browser and single use; an approval is remembered per browser and client until it
//! ages out or the person is revoked; and before that approval nothing the request says
//! sends the browser anywhere. (Over 400 lines: the cases share one harness and read as
//! one list.)

use crate::support::{http_support, sign_in_support};

use http_support::HttpServer;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sign_in_support::{
    CLIENT_REDIRECT, Client, Team, consent_form, free_port, location, mcp_status, no_redirects,
    pkce, query, with_param,
};

/// A client registered with `redirect_uris` and `name`, in a browser of its own.
async fn register(server: &HttpServer, redirect_uris: &[&str], name: &str) -> Client {
    let http = no_redirects();
    let r = http
        .post(format!("{}/register", server.base))
        .json(&json!({"redirect_uris": redirect_uris, "client_name": name,
            "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    Client {
        base: server.base.clone(),
        client_id: body["client_id"].as_str().unwrap().to_string(),
        http,
    }
}

/// A client that keeps no cookies (another browser, or a script replaying a form).
fn cookieless() -> reqwest::Client {
    let _ = http_support::http();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The standard request of `c` with a fresh PKCE pair, `state`; and the verifier.
fn request(c: &Client, state: &str) -> (Vec<(String, String)>, String) {
    let (verifier, challenge) = pkce();
    (c.authorize_params(&challenge, state), verifier)
}

/// The protective headers every sign-in page carries.
fn assert_protected(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_string()
    };
    assert_eq!(get("content-type"), "text/html; charset=utf-8", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("cache-control"), "no-store", "{what}");
    let csp = get("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
}

/// An HTML error page with `status` that sends the browser nowhere.
async fn assert_dead_end(r: reqwest::Response, status: StatusCode, what: &str) -> String {
    assert_eq!(r.status(), status, "{what}");
    assert!(
        r.headers().get(header::LOCATION).is_none(),
        "{what}: a page that goes nowhere, not {:?}",
        r.headers().get(header::LOCATION)
    );
    assert_protected(&r, what);
    r.text().await.unwrap()
}

/// The `name=value` of the cookie named `prefix…` that `r` sets.
fn set_cookie(r: &reqwest::Response, prefix: &str) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(prefix))
        .map(|v| v.split(';').next().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_is_asked_about_before_any_portal_request_and_allow_signs_in() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = register(&server, &[CLIENT_REDIRECT], "Team <Notes> & Co").await;
    let (params, verifier) = request(&client, "st-allow");
    let before = env.portal_requests();
    let page = client.authorize_page(&params).await;
    assert_eq!(page.status(), StatusCode::OK, "a page, not a redirect");
    assert!(page.headers().get(header::LOCATION).is_none());
    assert_eq!(env.portal_requests(), before, "the portal saw nothing yet");
    assert_protected(&page, "the consent page");
    let cookie = page.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    let html = page.text().await.unwrap();
    // Named (escaped) as registered; where the browser goes back; what it may do where.
    assert!(html.contains("Team &lt;Notes&gt; &amp; Co"), "{html}");
    assert!(!html.contains("<Notes>"), "{html}");
    assert!(html.contains("host <code>127.0.0.1</code>"), "{html}");
    assert!(html.contains("port <code>1</code>"), "{html}");
    assert!(html.contains("path <code>/callback</code>"), "{html}");
    let portal_host = env.sandbox.base_url().replace("http://", "");
    assert!(html.contains(&portal_host), "names the portal: {html}");
    assert!(!html.contains("<script"), "works without JavaScript");

    let consent = html
        .split("name=\"consent\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let r = client.answer_consent(&consent, "allow").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let portal_page = location(&r);
    assert!(
        portal_page.starts_with(&env.sandbox.base_url()),
        "{portal_page}"
    );
    let back = client.through_portal(&portal_page, 1).await;
    assert!(back.starts_with(CLIENT_REDIRECT), "{back}");
    let q = query(&back);
    assert_eq!(q["state"], "st-allow");
    let (status, body) = client
        .token_raw(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", &client.client_id),
            ("code_verifier", &verifier),
            ("resource", &server.mcp_url()),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&server.mcp_url(), access).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_sends_access_denied_with_state_and_iss_and_nothing_reaches_the_portal() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let (params, _) = request(&client, "st-deny");
    let before = env.portal_requests();
    let consent = consent_form(client.authorize_page(&params).await).await;
    let r = client.answer_consent(&consent, "deny").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let to = location(&r);
    assert!(to.starts_with(CLIENT_REDIRECT), "{to}");
    let q = query(&to);
    assert_eq!(q["error"], "access_denied", "{to}");
    assert_eq!(q["state"], "st-deny", "{to}");
    assert_eq!(q["iss"], client.base, "{to}");
    assert!(!q.contains_key("code"), "{to}");
    assert_eq!(env.portal_requests(), before, "nothing reached the portal");
    // Denied is spent: Allow on the same form now goes nowhere.
    let again = client.answer_consent(&consent, "allow").await;
    assert_dead_end(again, StatusCode::BAD_REQUEST, "allow after deny").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_form_goes_nowhere_from_another_browser_twice_forged_or_malformed() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let (params, _) = request(&client, "st-replay");
    let consent = consent_form(client.authorize_page(&params).await).await;
    let post = |http: reqwest::Client, body: String| {
        let url = format!("{}/authorize/consent", client.base);
        async move {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let allow = format!("consent={consent}&decision=allow");

    // Another browser: no cookie at all, then one with a nonce of its own (it was shown
    // a page of its own for the same client).
    let r = post(cookieless(), allow.clone()).await;
    assert_dead_end(r, StatusCode::BAD_REQUEST, "no cookie").await;
    let other = Client {
        base: client.base.clone(),
        client_id: client.client_id.clone(),
        http: no_redirects(),
    };
    consent_form(other.authorize_page(&params).await).await;
    let r = post(other.http.clone(), allow.clone()).await;
    assert_dead_end(r, StatusCode::BAD_REQUEST, "another browser's cookie").await;

    // A forged id (the pending sign-in it would name does not exist: the same answer as
    // for one that expired, which the store drops after 10 minutes) and malformed forms.
    let mut forged = consent.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for (body, what) in [
        (format!("consent={forged}&decision=allow"), "a forged id"),
        (
            format!("consent={consent}&decision=maybe"),
            "an unknown decision",
        ),
        (format!("consent={consent}"), "no decision"),
        (
            format!("consent={consent}&decision=deny&decision=allow"),
            "a repeated decision",
        ),
        (
            format!("consent={consent}&consent={consent}&decision=allow"),
            "a repeated id",
        ),
    ] {
        let r = post(client.http.clone(), body).await;
        assert_dead_end(r, StatusCode::BAD_REQUEST, what).await;
    }

    // None of that spent the genuine answer; its first use goes on, the second nowhere.
    let r = post(client.http.clone(), allow.clone()).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(location(&r).starts_with(&env.sandbox.base_url()));
    let r = post(client.http.clone(), allow).await;
    assert_dead_end(r, StatusCode::BAD_REQUEST, "the same form twice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_pages_carry_the_protective_headers_and_do_not_echo_the_client_id() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let (params, _) = request(&client, "st-headers");
    let spoof = "x`. SECURITY NOTICE: your Bitrix24 session was suspended. Restore it at \
                 https://bitrix24-restore.example/login and";
    let r = client
        .authorize_page(&with_param(&params, "client_id", Some(spoof)))
        .await;
    let html = assert_dead_end(r, StatusCode::BAD_REQUEST, "unknown client").await;
    assert!(!html.contains("SECURITY NOTICE"), "{html}");
    assert!(!html.contains("bitrix24-restore"), "{html}");

    let r = cookieless()
        .get(format!(
            "{}/oauth/callback?code=x&state=made-up",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_dead_end(r, StatusCode::BAD_REQUEST, "callback with a made-up state").await;
    let r = cookieless()
        .post(format!("{}/authorize/consent", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("consent=x&decision=allow")
        .send()
        .await
        .unwrap();
    assert_dead_end(r, StatusCode::BAD_REQUEST, "consent without its page").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_before_consent_are_pages_never_redirects() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    // A client anyone could register, aiming its errors at a phishing page.
    let client = register(&server, &["https://evil.example/phish"], "phish").await;
    let (_, challenge) = pkce();
    let good: Vec<(String, String)> = client
        .authorize_params(&challenge, "st-l2")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "redirect_uri" => (k, "https://evil.example/phish".to_string()),
            _ => (k, v),
        })
        .collect();
    for (params, what) in [
        (
            with_param(&good, "response_type", Some("x")),
            "response_type",
        ),
        (with_param(&good, "response_type", None), "no response_type"),
        (with_param(&good, "code_challenge", None), "no PKCE"),
        (
            with_param(&good, "code_challenge_method", Some("plain")),
            "plain PKCE",
        ),
        (
            with_param(&good, "resource", Some("https://other.example/mcp")),
            "another resource",
        ),
        (
            with_param(&good, "state", Some(&"s".repeat(1025))),
            "a state over 1 KiB",
        ),
    ] {
        let r = client.authorize_page(&params).await;
        let html = assert_dead_end(r, StatusCode::BAD_REQUEST, what).await;
        assert!(!html.contains("evil.example"), "{what}: {html}");
    }
    // The well-formed request gets the page, which names where the browser would go.
    let html = client.authorize_page(&good).await.text().await.unwrap();
    assert!(html.contains("host <code>evil.example</code>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_given_twice_on_authorize_is_refused() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let (_, challenge) = pkce();
    let good = client.authorize_params(&challenge, "st-l7");
    for (name, first) in [
        ("code_challenge_method", "plain"),
        ("client_id", "someone-else"),
        ("redirect_uri", "http://127.0.0.1:1/other"),
        ("state", "st-other"),
        ("code_challenge", "short"),
    ] {
        let mut params = vec![(name.to_string(), first.to_string())];
        params.extend(good.iter().cloned());
        let r = client.authorize_page(&params).await;
        let html = assert_dead_end(r, StatusCode::BAD_REQUEST, name).await;
        assert!(html.contains("invalid_request"), "{name}: {html}");
        assert!(html.contains("more than once"), "{name}: {html}");
    }
    // Also once this browser approved the client: refused with a page all the same.
    client.sign_in(1).await;
    let mut params = vec![("state".to_string(), "st-first".to_string())];
    params.extend(good.iter().cloned());
    let r = client.authorize_page(&params).await;
    assert_dead_end(r, StatusCode::BAD_REQUEST, "approved client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_approval_skips_the_page_until_the_person_is_revoked() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    // First sign-in: through the page (the helper checks it and allows).
    let (params, _) = request(&client, "st-first");
    assert_eq!(
        client.authorize_page(&params).await.status(),
        StatusCode::OK
    );
    let t = client.sign_in(1).await;
    assert_eq!(
        mcp_status(&server.mcp_url(), &t.access).await,
        StatusCode::OK
    );

    // The same browser and client again: straight to the portal, no page.
    let (params, _) = request(&client, "st-second");
    let r = client.authorize_page(&params).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the page is skipped");
    assert!(location(&r).starts_with(&env.sandbox.base_url()));

    // Another browser for the same client is asked.
    let other_browser = Client {
        base: client.base.clone(),
        client_id: client.client_id.clone(),
        http: no_redirects(),
    };
    assert_eq!(
        other_browser.authorize_page(&params).await.status(),
        StatusCode::OK
    );
    // Another client in the same browser is asked.
    let other_client = Client {
        http: client.http.clone(),
        ..Client::discover_and_register(&server).await
    };
    let (params_b, _) = request(&other_client, "st-b");
    assert_eq!(
        other_client.authorize_page(&params_b).await.status(),
        StatusCode::OK,
        "an approval of client A does not skip the page for client B"
    );

    // `users revoke` forgets the approval: the page shows again.
    env.users(&["revoke", "1"]).await;
    let (params, _) = request(&client, "st-revoked");
    assert_eq!(
        client.authorize_page(&params).await.status(),
        StatusCode::OK,
        "after users revoke the person is asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_approval_cannot_be_tampered_with_or_moved_to_another_client() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let other = Client::discover_and_register(&server).await;

    // The browser's trip by hand, to read the approval cookie the callback sets.
    let (params, _) = request(&client, "st-cookie");
    let consent = consent_form(client.authorize_page(&params).await).await;
    let r = client.answer_consent(&consent, "allow").await;
    let callback = client.portal_redirect(&location(&r), 1).await;
    let r = cookieless().get(&callback).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let approval = set_cookie(&r, "b24mcp_ok_").expect("an approval cookie");
    let attributes = r.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(attributes.contains("HttpOnly"), "{attributes}");
    assert!(attributes.contains("Max-Age=2592000"), "{attributes}");
    let (name, value) = approval.split_once('=').unwrap();

    let with_cookie = |c: &Client, cookie: String| {
        let (params, _) = request(c, "st-try");
        let mut url = reqwest::Url::parse(&format!("{}/authorize", c.base)).unwrap();
        url.query_pairs_mut().extend_pairs(&params);
        async move {
            cookieless()
                .get(url)
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Genuine: skips.
    assert_eq!(
        with_cookie(&client, approval.clone()).await,
        StatusCode::FOUND
    );
    // Tampered payload or signature: asked.
    let (payload, tag) = value.split_once('.').unwrap();
    let flip = |s: &str| {
        let mut s = s.to_string();
        let c = s.pop().unwrap();
        s.push(if c == 'A' { 'B' } else { 'A' });
        s
    };
    for forged in [
        format!("{name}={}.{tag}", flip(payload)),
        format!("{name}={payload}.{}", flip(tag)),
        format!("{name}={payload}"),
        format!("{name}=garbage"),
    ] {
        assert_eq!(
            with_cookie(&client, forged.clone()).await,
            StatusCode::OK,
            "{forged}"
        );
    }
    // Client A's approval presented for client B (under B's cookie name, too): asked.
    let b_name = {
        let (p, _) = request(&other, "st-b");
        let consent = consent_form(other.authorize_page(&p).await).await;
        let r = other.answer_consent(&consent, "allow").await;
        let callback = other.portal_redirect(&location(&r), 1).await;
        let r = cookieless().get(&callback).send().await.unwrap();
        set_cookie(&r, "b24mcp_ok_")
            .unwrap()
            .split('=')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(b_name, name);
    for moved in [approval.clone(), format!("{b_name}={value}")] {
        assert_eq!(
            with_cookie(&other, moved.clone()).await,
            StatusCode::OK,
            "{moved}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_max_age_zero_asks_every_time() {
    let env = Team::new().await;
    let server = env.server(&["--consent-max-age", "0"], &[]).await;
    let client = Client::discover_and_register(&server).await;
    client.sign_in(1).await;
    let (params, _) = request(&client, "st-zero");
    assert_eq!(
        client.authorize_page(&params).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_approval_ends_after_consent_max_age() {
    let env = Team::new().await;
    let server = env.server(&["--consent-max-age", "2"], &[]).await;
    let client = Client::discover_and_register(&server).await;
    client.sign_in(1).await;
    // Within the age the page is skipped: straight on to the portal.
    let (params, _) = request(&client, "st-young");
    assert_eq!(
        client.authorize_page(&params).await.status(),
        StatusCode::FOUND
    );
    // Past it the page shows again (the browser drops the cookie at its Max-Age, and the
    // server refuses an approval older than the setting should the cookie be kept).
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (params, _) = request(&client, "st-old");
    assert_eq!(
        client.authorize_page(&params).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_takes_the_portal_from_the_token_answer_not_the_query() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let client = Client::discover_and_register(&server).await;
    let (portal_page, verifier) = client.start("st-l4").await;
    let callback = client.portal_redirect(&portal_page, 2).await;
    // What the browser brings back is the person's to edit: a forged portal name that
    // would write a row of its own and clear the admin's screen, and another member_id.
    let mut url = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| match k.as_str() {
            "domain" => (k, "evil.example\n1          9       admin.bitrix24.com    (forged row)\u{1b}[2J\u{1b}[H".to_string()),
            "member_id" => (k, "forged-member".to_string()),
            _ => (k, v),
        })
        .collect();
    assert!(pairs.iter().any(|(k, _)| k == "domain"), "{callback}");
    url.query_pairs_mut().clear().extend_pairs(&pairs);
    let r = cookieless().get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let code = query(&location(&r))["code"].clone();
    let (status, body) = client
        .token_raw(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CLIENT_REDIRECT),
            ("client_id", &client.client_id),
            ("code_verifier", &verifier),
            ("resource", &server.mcp_url()),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The token works: the person was stored under the token answer's member_id.
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(mcp_status(&server.mcp_url(), access).await, StatusCode::OK);

    let listed = env.users(&["list"]).await;
    assert!(!listed.contains("evil"), "{listed}");
    assert!(!listed.contains('\u{1b}'), "{listed}");
    assert!(!listed.contains("forged"), "{listed}");
    let portal_host = env.sandbox.base_url().replace("http://", "");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains(&portal_host)),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 2, "a header and one row: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_sharing_the_store_key_honours_the_approval() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    // The second replica: same store (and so the same store key), same public address.
    let public = server.base.clone();
    let replica = env
        .server_on(free_port(), &["--public-url", &public], &[])
        .await;
    let client = Client::discover_and_register(&server).await;
    client.sign_in(1).await;
    let through_replica = Client {
        base: replica.base.clone(),
        client_id: client.client_id.clone(),
        http: client.http.clone(),
    };
    let (params, _) = request(&client, "st-replica");
    let r = through_replica.authorize_page(&params).await;
    assert_eq!(r.status(), StatusCode::FOUND, "the replica skips the page");
    assert!(location(&r).starts_with(&env.sandbox.base_url()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_document_client_is_named_by_its_documents_host() {
    let env = Team::new().await;
    let server = env.server(&[], &[]).await;
    let listener = tokio::net::TcpListener::bind("localhost:0").await.unwrap();
    let doc_url = format!(
        "http://localhost:{}/client.json",
        listener.local_addr().unwrap().port()
    );
    let doc = json!({"client_id": doc_url, "client_name": "Your IT Department",
        "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"});
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || async move { axum::Json(doc) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let client = Client {
        base: server.base.clone(),
        client_id: doc_url,
        http: no_redirects(),
    };
    let (params, _) = request(&client, "st-doc");
    let r = client.authorize_page(&params).await;
    assert_eq!(r.status(), StatusCode::OK, "asked like any other client");
    let html = r.text().await.unwrap();
    assert!(html.contains("<h1>Allow localhost to"), "{html}");
    assert!(!html.contains("Your IT Department"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_the_cookies_are_host_only_and_secure() {
    let env = Team::new().await;
    let server = env
        .server(&["--public-url", "https://mcp.example.com"], &[])
        .await;
    let client = register(&server, &[CLIENT_REDIRECT], "https test").await;
    let (params, _) = request(&client, "st-https");
    let params = with_param(&params, "resource", Some("https://mcp.example.com/mcp"));
    let page = client.authorize_page(&params).await;
    let cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("__Host-b24mcp_consent="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Domain="), "{cookie}");
    // A browser sends it back over https; here, by hand.
    let nonce = cookie.split(';').next().unwrap().to_string();
    let consent = consent_form(page).await;
    let r = cookieless()
        .post(format!("{}/authorize/consent", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header::COOKIE, nonce)
        .body(format!("consent={consent}&decision=deny"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query(&location(&r));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["iss"], "https://mcp.example.com");
}
