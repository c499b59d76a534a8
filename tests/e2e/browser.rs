//! A headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`), for the web UI's tests and its benchmark
//! (`benches/player.rs` includes this file).
//!
//! `REEL_CHROMIUM_EXTRA` adds arguments to Chromium's, e.g. to trace what
//! the page does: `--trace-startup=devtools.timeline,v8.execute,loading
//! --trace-startup-file=/tmp/trace.json --trace-startup-format=json
//! --trace-startup-duration=0` (written when the browser quits).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reel_testkit::{target_dir, tool};
use serde_json::json;

/// chromedriver and a headless Chromium session, with a place for
/// screenshots.
pub struct Browser {
    driver: Child,
    /// chromedriver's address, for what WebDriver has no command for.
    #[allow(dead_code)] // by benches/player.rs
    driver_url: String,
    pub client: Client,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(test: &str) -> Browser {
        let chromedriver = tool("chromedriver", "REEL_CHROMEDRIVER", "scripts/setup test");
        let chromium = tool("chromium", "REEL_CHROMIUM", "scripts/setup test");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            "--enable-precise-memory-info".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if let Ok(extra) = std::env::var("REEL_CHROMIUM_EXTRA") {
            args.extend(extra.split_whitespace().map(String::from));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": args,
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        let mut client = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => {
                    client = Some(c);
                    break;
                }
                Err(e) => last = Some(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let client = client.unwrap_or_else(|| panic!("no WebDriver session: {last:?}"));
        let shots = target_dir().join("test-artifacts/web").join(test);
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            driver_url: url,
            client,
            shots,
            _profile: profile,
        }
    }

    /// Runs `script` in every page from now on, before the page's own
    /// scripts (Chrome DevTools' `Page.addScriptToEvaluateOnNewDocument`,
    /// through chromedriver): what a test must see from a page's first
    /// moment. Returns the script's identifier for [`Browser::forget`].
    #[allow(dead_code)] // by benches/player.rs
    pub async fn on_new_pages(&self, script: &str) -> String {
        let answer = self
            .cdp(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": script }),
            )
            .await;
        answer["identifier"].as_str().unwrap().to_string()
    }

    /// Stops running a script given to [`Browser::on_new_pages`].
    #[allow(dead_code)] // by benches/player.rs
    pub async fn forget(&self, identifier: &str) {
        self.cdp(
            "Page.removeScriptToEvaluateOnNewDocument",
            json!({ "identifier": identifier }),
        )
        .await;
    }

    #[allow(dead_code)] // by benches/player.rs
    async fn cdp(&self, cmd: &str, params: serde_json::Value) -> serde_json::Value {
        let session = self.client.session_id().await.unwrap().unwrap();
        let url = format!("{}/session/{session}/goog/cdp/execute", self.driver_url);
        let answer: serde_json::Value = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "cmd": cmd, "params": params }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"].clone()
    }

    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    pub async fn sign_in(&self, base: &str, token: &str) {
        self.client.goto(&format!("{base}/signin")).await.unwrap();
        let field = self
            .client
            .find(Locator::Css("input[name=token]"))
            .await
            .unwrap();
        field.send_keys(token).await.unwrap();
        let button = self
            .client
            .find(Locator::Css("form.signin button"))
            .await
            .unwrap();
        self.click_to_new_page(button, "signing in").await;
    }

    /// Clicks `button` of a form whose answer is a new document, and waits
    /// for that document, so that what the caller looks at next is the
    /// page the click led to (not the old one, still there for a moment).
    pub async fn click_to_new_page(&self, button: fantoccini::elements::Element, what: &str) {
        self.client
            .execute("window.reelLeaving = true;", vec![])
            .await
            .unwrap();
        button.click().await.unwrap();
        for _ in 0..100 {
            let loaded = self
                .client
                .execute(
                    "return window.reelLeaving === undefined
                        && document.readyState === 'complete';",
                    vec![],
                )
                .await
                .map(|v| v.as_bool() == Some(true))
                .unwrap_or(false);
            if loaded {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} led to no new page");
    }

    /// The terminal's text as the player shows it.
    pub async fn terminal(&self) -> String {
        let text = self
            .client
            .execute(
                "const t = document.querySelector('.ap-term'); return t ? t.innerText : '';",
                vec![],
            )
            .await
            .unwrap();
        text.as_str().unwrap_or_default().to_string()
    }

    pub async fn wait_terminal(&self, what: &str, contains: &str) -> String {
        let mut text = String::new();
        for _ in 0..150 {
            text = self.terminal().await;
            if text.contains(contains) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{what}: the terminal never showed {contains:?}; it shows:\n{text}");
    }

    pub async fn body_text(&self) -> String {
        let body = self.client.find(Locator::Css("body")).await.unwrap();
        body.text().await.unwrap()
    }
}

impl Drop for Browser {
    /// Killing chromedriver leaves its Chromium running (a test that
    /// panicked never closed its session): the browser's processes are
    /// found by their profile directory, which is this test's alone.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let mark = format!("--user-data-dir={}", self._profile.path().display());
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == mark.as_bytes()))
            })
            .map(|p| p.file_name().to_string_lossy().into_owned())
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        }
    }
}
