//! Headless Chromium driven over the DevTools protocol: open a page, run JavaScript in it
//! (clicks included), read the DOM back, set the viewport and take screenshots. For the status
//! page's buttons, which a `--dump-dom` render cannot press.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Flags of every headless run: no sandbox (root), no network of its own, a fresh profile.
pub const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A running headless Chromium with one page open; killed on drop.
pub struct Browser {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` on `url` and attaches to its page.
    pub async fn open(chromium: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args(HEADLESS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Chromium names its DevTools port on stderr: the readiness signal.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://").nth(1) {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_string());
                }
            }
        });
        let host = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(20)))
            .await
            .unwrap()
            .expect("chromium did not print its DevTools address");
        let page = page_socket(&host).await;
        let (page, _) = tokio_tungstenite::connect_async(page).await.unwrap();
        Browser {
            child,
            page,
            next_id: 0,
            _profile: profile,
        }
    }

    /// Evaluates `js` in the page (awaiting a promise it returns) and returns its value.
    pub async fn eval(&mut self, js: &str) -> Value {
        let params = json!({ "expression": js, "returnByValue": true, "awaitPromise": true });
        let result = self.call("Runtime.evaluate", params).await;
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{js}: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Sets the page's viewport to `width` x `height` CSS pixels (scale 1, not mobile).
    pub async fn viewport(&mut self, width: u32, height: u32) {
        let params = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false,
        });
        self.call("Emulation.setDeviceMetricsOverride", params)
            .await;
    }

    /// A PNG of the whole page as laid out now (beyond the viewport), written to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine as _;
        let params = json!({ "format": "png", "captureBeyondViewport": true });
        let shot = self.call("Page.captureScreenshot", params).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// One DevTools command on the page; its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let call = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(call.to_string()))
            .await
            .unwrap();
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.page.next())
                .await
                .expect("no DevTools reply within 10 s")
                .expect("DevTools socket closed")
                .unwrap();
            let Message::Text(text) = msg else { continue };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                if let Some(e) = reply.get("error") {
                    panic!("{method}: {e}");
                }
                return reply["result"].clone();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools socket of the first page target of the browser at `host` ("127.0.0.1:PORT").
async fn page_socket(host: &str) -> String {
    let what = format!("a page target on {host}");
    let host = host.to_string();
    crate::support::eventually(Duration::from_secs(10), &what, || {
        let host = host.clone();
        async move {
            let addr = host.parse().ok()?;
            let reply = crate::support::client::get_once(addr, "/json/list").await;
            let targets: Value = serde_json::from_str(&reply.body).ok()?;
            targets
                .as_array()?
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .map(String::from)
        }
    })
    .await
}
