//! The admin server against hostile input (issue 14, items 3 and 6): names that try to break
//! out of the status page's markup run no script, every admin response carries a
//! Content-Security-Policy and `nosniff`, and idle admin connections are capped and timed out
//! so that they cannot starve the data plane.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fulcrum::internals::{
    ADMIN_HEADER_READ_TIMEOUT as ADMIN_HEADER_TIMEOUT, ADMIN_MAX_CONNECTIONS as ADMIN_CAP,
};
use http::{Method, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::admin::{admin_of, call, get, with_admin};
use crate::support::backend::BackendBuilder;
use crate::support::browser::Browser;
use crate::support::client::{http1, Reply};
use crate::support::proxy::{config, listener, pool, write_file, Proxy};
use crate::support::{eventually, require};

/// A pool name that leaves a quoted JS string inside an attribute (the `&#39;` the browser
/// decodes back), an attribute, and a script element. `fulcrum check` refuses it; a config
/// built in code does not go through `check`, so the page must be safe on its own.
const HOSTILE: &str = "x');window.pwned1=1;//\"'onmouseover=\"window.pwned2=1\"\
                       </script><script>window.pwned3=1</script>\
                       <img src=x onerror=window.pwned4=1>";

/// The globals [`HOSTILE`] (and the injections tried below) would set if any of it ran.
const PWNED: &str = "['pwned1','pwned2','pwned3','pwned4','pwned5','pwned6']\
                     .filter(k => window[k] !== undefined)";

/// The directives of a Content-Security-Policy value: name -> sources.
fn directives(csp: &str) -> Vec<(String, Vec<String>)> {
    csp.split(';')
        .filter_map(|d| {
            let mut words = d.split_whitespace().map(str::to_string);
            Some((words.next()?, words.collect()))
        })
        .collect()
}

/// `reply` (to `what`) carries a CSP whose scripts are its own files only, and `nosniff`.
fn assert_protected(reply: &Reply, what: &str) {
    let nosniff = reply.headers.get("x-content-type-options");
    assert_eq!(
        nosniff.and_then(|v| v.to_str().ok()),
        Some("nosniff"),
        "{what}: X-Content-Type-Options: {:?}",
        reply.headers
    );
    let csp = reply
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy: {:?}", reply.headers));
    let d = directives(csp);
    let sources = |name: &str| d.iter().find(|(n, _)| n == name).map(|(_, s)| s.clone());
    let scripts = sources("script-src")
        .or_else(|| sources("default-src"))
        .unwrap_or_else(|| panic!("{what}: the CSP does not restrict scripts: {csp}"));
    for word in &scripts {
        assert!(
            word == "'self'" || word == "'none'",
            "{what}: script-src allows {word}: {csp}"
        );
    }
    assert!(
        sources("script-src-attr").is_none() && sources("script-src-elem").is_none(),
        "{what}: {csp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_response_carries_a_csp_and_nosniff() {
    let a = BackendBuilder::new("a").start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "token", "s3cret\n");
    let mut c = with_admin(config(listener(), vec![pool("p", &[a.addr])]));
    c.global.admin_token_file = Some(token);
    let proxy = Proxy::start(c);
    let admin = admin_of(&proxy);
    let client = http1();
    let t = Some("s3cret");
    let cases = [
        (Method::GET, "/", None, StatusCode::OK),
        (Method::GET, "/status.js", None, StatusCode::OK),
        (Method::GET, "/status.css", None, StatusCode::OK),
        (
            Method::GET,
            "/api/v1/status",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (Method::GET, "/api/v1/status", t, StatusCode::OK),
        (
            Method::GET,
            "/api/v1/history",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (Method::GET, "/api/v1/history", t, StatusCode::OK),
        (
            Method::POST,
            "/api/v1/history",
            t,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/metrics", t, StatusCode::OK),
        (Method::GET, "/nope", t, StatusCode::NOT_FOUND),
        (
            Method::DELETE,
            "/metrics",
            t,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::POST,
            "/api/v1/pools/p/backends/10.9.9.9:1/drain",
            t,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, token, want) in cases {
        let what = format!("{method} {path}");
        let r = call(&client, method, format!("http://{admin}{path}"), token).await;
        assert_eq!(r.status, want, "{what}: {}", r.body);
        assert_protected(&r, &what);
    }
    // The page's script and style are its own files, typed so `nosniff` lets them run.
    let page = get(&client, format!("http://{admin}/")).await.body;
    for tag in page.split("<script").skip(1) {
        assert!(
            tag.trim_start().starts_with("src="),
            "an inline script: {page}"
        );
    }
    assert!(!page.contains("<style"), "an inline style: {page}");
    for (path, ty) in [
        ("/status.js", "text/javascript"),
        ("/status.css", "text/css"),
    ] {
        let r = get(&client, format!("http://{admin}{path}")).await;
        let got = r.headers.get("content-type").and_then(|v| v.to_str().ok());
        assert!(got.is_some_and(|g| g.starts_with(ty)), "{path}: {got:?}");
        // No inline event handlers, in the page or in the markup the script writes.
        assert!(!r.body.contains("onclick"), "{path}: {}", r.body);
    }
    assert!(!page.contains("onclick"), "{page}");
}

/// The status page of a pool named [`HOSTILE`]: nothing of the name runs, before or after its
/// drain button is clicked, and the button still drains that pool's backend; the browser
/// enforces the policy too (an injected inline handler and inline script are refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_pool_name_runs_no_script_on_the_status_page() {
    let Some(chromium) = require("chromium") else {
        return;
    };
    let a = BackendBuilder::new("a").start().await;
    let proxy = Proxy::start(with_admin(config(
        listener(),
        vec![pool(HOSTILE, &[a.addr])],
    )));
    let admin = admin_of(&proxy);
    let mut page = Browser::open(&chromium, &format!("http://{admin}/")).await;
    let row = format!("tr[data-backend=\"{}\"]", a.addr);
    let state = format!("document.querySelector('{row}')?.dataset.state ?? null");
    eventually(Duration::from_secs(10), "the row to be drawn", async || {
        page.eval(&state).await == "up"
    })
    .await;
    // The name is shown as text, exactly.
    let heading = page
        .eval("document.querySelector('section.pool h2').firstChild.textContent")
        .await;
    assert_eq!(heading, HOSTILE);
    assert_eq!(page.eval(PWNED).await, serde_json::json!([]), "on load");

    page.eval(&format!(
        "document.querySelector('{row} button').click(); true"
    ))
    .await;
    assert_eq!(page.eval(PWNED).await, serde_json::json!([]), "on click");
    eventually(
        Duration::from_secs(10),
        "the hostile pool's backend drained by its button",
        async || page.eval(&state).await == "draining",
    )
    .await;
    let shown = page
        .eval("document.getElementById('action-error').textContent")
        .await;
    assert_eq!(shown, "", "the click's request failed");

    // Were the escaping ever to miss, the policy still refuses inline code.
    let handler = "new Promise(done => {
        const box = document.createElement('div');
        box.innerHTML = '<img src=\"/no-such-image.png\" onerror=\"window.pwned5 = 1\">';
        box.firstChild.addEventListener('error', () => setTimeout(() => done(true), 0));
        document.body.appendChild(box);
    })";
    assert_eq!(page.eval(handler).await, true);
    let script = "const s = document.createElement('script');
        s.textContent = 'window.pwned6 = 1';
        document.head.appendChild(s);
        true";
    assert_eq!(page.eval(script).await, true);
    assert_eq!(page.eval(PWNED).await, serde_json::json!([]), "injected");
    drop(page);
}

/// Reads `stream` until the peer closes it (EOF or reset) or `within` passes: whether it was
/// closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// `GET path` on a new connection to `admin` answers 200; `Err` names what came instead
/// (a status line, a closed connection), never a panic: the probe of a wait.
async fn answers_200(admin: SocketAddr, path: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let exchange = async {
        let mut s = TcpStream::connect(admin).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
    };
    let reply = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| "no reply within 2 s".to_string())?
        .map_err(|e| e.to_string())?;
    let line = reply.lines().next().unwrap_or("").to_string();
    if line.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(line)
    }
}

/// Connections to `admin` that send nothing fill its cap: the next one is closed at accept,
/// the data plane serves all along, the idle ones are closed after the header timeout, and
/// then the admin API answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_capped_and_timed_out_while_traffic_flows() {
    let a = BackendBuilder::new("a").start().await;
    let proxy = Proxy::start(with_admin(config(listener(), vec![pool("p", &[a.addr])])));
    let admin: SocketAddr = admin_of(&proxy);
    let client = http1();
    let opened = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..ADMIN_CAP {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    // One more: accepted and closed at once (well before the others' header timeout).
    let mut over = TcpStream::connect(admin).await.unwrap();
    assert!(
        closed_within(&mut over, ADMIN_HEADER_TIMEOUT / 2).await,
        "connection {} to the admin server was kept open",
        ADMIN_CAP + 1
    );
    // The data plane does not notice.
    for _ in 0..5 {
        let r = crate::support::client::get(&client, proxy.addr, "/").await;
        assert_eq!(r.status, StatusCode::OK);
    }
    // The idle ones are closed by the header timeout (the first one accepted, first), not
    // before: its timer started after `opened` (less a little for timer granularity).
    for (i, stream) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(stream, ADMIN_HEADER_TIMEOUT * 3).await,
            "idle admin connection {i} still open after {:?}",
            opened.elapsed()
        );
        if i == 0 {
            assert!(
                opened.elapsed() >= ADMIN_HEADER_TIMEOUT - Duration::from_millis(100),
                "an idle admin connection closed after {:?}",
                opened.elapsed()
            );
        }
    }
    // Their places are free again.
    eventually(
        Duration::from_secs(5),
        "the admin API to answer again",
        || answers_200(admin, "/api/v1/status"),
    )
    .await;
    drop(idle);
}
