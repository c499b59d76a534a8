//! The HTML pages: sign-in, the list of recordings, one recording. Rendered
//! here with maud, which escapes every value: users, targets, labels and
//! titles are chosen by recorders (and so by the people recorded), and
//! must never become markup in an auditor's browser.

use maud::{DOCTYPE, Markup, html};
use reel_api::display::{bytes, duration, time};
use reel_api::{RecordingDetail, RecordingSummary};
use reel_asciicast::screen::{Colour, Screen, Snapshot, Style};
use reel_proto::v1::AuditEntry;

/// What every page but sign-in shows at the top: who is signed in, and
/// the sign-out form (with the session's CSRF token).
pub struct Chrome<'a> {
    pub name: &'a str,
    pub roles: &'a str,
    pub csrf: Option<&'a str>,
}

fn page(title: &str, chrome: Option<&Chrome>, body: Markup) -> Markup {
    page_with_head(title, chrome, html! {}, body)
}

/// A page with more in its head (what it will fetch first, preloaded).
fn page_with_head(title: &str, chrome: Option<&Chrome>, head: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Reel" }
                link rel="stylesheet" href=(super::SIGNIN_CSS);
                (head)
            }
            body {
                header {
                    a.brand href="/recordings" { "Reel" }
                    @if let Some(c) = chrome {
                        span.who { (c.name) " (" (c.roles) ")" }
                        @if let Some(csrf) = c.csrf {
                            form.signout method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page: one password field for a token.
pub fn signin(next: &str, csrf: &str, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            form.signin method="post" action="/signin" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="current-password"
                    required autofocus;
                button type="submit" { "Sign in" }
            }
            p.hint {
                "A token with the viewer, auditor, custodian or admin role "
                "(" code { "reel token create" } ")."
            }
        },
    )
}

/// A page that says why something cannot be shown.
pub fn problem(chrome: Option<&Chrome>, title: &str, message: &str) -> Markup {
    page(
        title,
        chrome,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/recordings" { "All recordings" } }
        },
    )
}

/// The filters of the list, as the query string gave them.
#[derive(Default)]
pub struct Filters {
    pub pairs: Vec<(String, String)>,
}

impl Filters {
    fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The query string with `key` set to `value` (and no cursor: a new
    /// order or filter starts at the first page).
    pub fn with(&self, key: &str, value: &str) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != key && k != "cursor" && k != "after")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push((key, value));
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

const SORTS: [(&str, &str); 5] = [
    ("started", "Started"),
    ("user", "User"),
    ("duration", "Duration"),
    ("size", "Size"),
    ("created", "Created"),
];

/// The list of recordings, with the filters, sorting and paging of
/// `reel ls`.
pub fn list(
    chrome: &Chrome,
    filters: &Filters,
    recordings: &[RecordingSummary],
    next: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let order = filters.get("order");
    page(
        "Recordings",
        Some(chrome),
        html! {
            h1 { "Recordings" }
            form.filters method="get" action="/recordings" {
                @for (key, label, hint) in [
                    ("user", "User", "alice or a*"),
                    ("target", "Target", "db-*"),
                    ("protocol", "Protocol", "ssh"),
                    ("label", "Label", "key or key=value"),
                    ("since", "Since", "7d or 2026-01-31T00:00:00Z"),
                    ("until", "Until", ""),
                ] {
                    label {
                        (label)
                        input type="text" name=(key) value=(filters.get(key)) placeholder=(hint);
                    }
                }
                label {
                    "State"
                    select name="state" {
                        @for s in ["", "open", "closed", "interrupted", "damaged", "recombined"] {
                            option value=(s) selected[filters.get("state") == s] {
                                (if s.is_empty() { "any" } else { s })
                            }
                        }
                    }
                }
                label {
                    "Sort"
                    select name="sort" {
                        @for (s, name) in SORTS {
                            option value=(s) selected[filters.get("sort") == s] { (name) }
                        }
                    }
                }
                label {
                    "Order"
                    select name="order" {
                        option value="desc" selected[order != "asc"] { "newest first" }
                        option value="asc" selected[order == "asc"] { "oldest first" }
                    }
                }
                button type="submit" { "Filter" }
                a href="/recordings" { "Clear" }
            }
            @if let Some(e) = error {
                p.error role="alert" { (e) }
            }
            table.recordings {
                thead {
                    tr {
                        th { a href=(format!("?{}", filters.with("sort", "started"))) { "Started" } }
                        th { a href=(format!("?{}", filters.with("sort", "user"))) { "User" } }
                        th { "Target" }
                        th { "Protocol" }
                        th { a href=(format!("?{}", filters.with("sort", "duration"))) { "Duration" } }
                        th { a href=(format!("?{}", filters.with("sort", "size"))) { "Size" } }
                        th { "State" }
                        th { "Where" }
                        th { "Id" }
                    }
                }
                tbody {
                    @for r in recordings {
                        tr {
                            td { a href=(format!("/recordings/{}", r.id)) { (time(r.started_at_us)) } }
                            td.user { (r.user) }
                            td { (r.target) }
                            td { (r.protocol) }
                            td { (duration(r.duration_us)) }
                            td { (bytes(r.data_bytes)) }
                            td { (state(r)) }
                            td { (r.placement) }
                            td.id { a href=(format!("/recordings/{}", r.id)) { (r.id) } }
                        }
                    }
                    @if recordings.is_empty() {
                        tr { td colspan="9" { "No recording matches." } }
                    }
                }
            }
            @if let Some(cursor) = next {
                p.paging { a.next href=(format!("?{}", filters.with("cursor", cursor))) { "Next page" } }
            }
        },
    )
}

/// A screen drawn in the page itself, shown from the page's first paint
/// until the player, once it has loaded and drawn the same moment, takes
/// its place (`reel.js`): a deep link shows its moment without waiting for
/// the player's script. Its colours are the player's theme's.
fn screen(snapshot: &Snapshot) -> Markup {
    let lines = Screen::restore(snapshot).styled();
    html! {
        pre.reel-screen.asciinema-player-theme-asciinema
            elementtiming="reel-screen"
            style=(format!("--cols: {}", snapshot.cols))
        {
            @for line in &lines {
                @let last = line.len().saturating_sub(1);
                @for (i, run) in line.iter().enumerate() {
                    @if run.style == Style::default() {
                        // Blank to the line's end adds nothing to a <pre>.
                        (if i == last { run.text.trim_end() } else { &run.text })
                    } @else {
                        span style=(css(&run.style)) { (run.text) }
                    }
                }
                "\n"
            }
        }
    }
}

/// A run's style as CSS (numbers and the theme's variables only).
fn css(style: &Style) -> String {
    let colour = |c: Option<Colour>, default: &str| match (c, c.and_then(Colour::rgb)) {
        (_, Some((r, g, b))) => format!("rgb({r},{g},{b})"),
        (Some(Colour::Indexed(i)), None) => format!("var(--term-color-{i})"),
        _ => format!("var(--term-color-{default})"),
    };
    // Inverse swaps the colours, the terminal's own ones included.
    let (mut fg, mut bg) = (
        (style.foreground, "foreground"),
        (style.background, "background"),
    );
    if style.inverse {
        std::mem::swap(&mut fg, &mut bg);
    }
    let mut css = String::new();
    if fg.0.is_some() || style.inverse {
        css += &format!("color:{};", colour(fg.0, fg.1));
    }
    if bg.0.is_some() || style.inverse {
        css += &format!("background-color:{};", colour(bg.0, bg.1));
    }
    if style.bold {
        css += "font-weight:bold;";
    }
    if style.faint {
        css += "opacity:.5;";
    }
    if style.italic {
        css += "font-style:italic;";
    }
    match (style.underline, style.strikethrough) {
        (true, true) => css += "text-decoration:underline line-through;",
        (true, false) => css += "text-decoration:underline;",
        (false, true) => css += "text-decoration:line-through;",
        (false, false) => {}
    }
    css
}

fn state(r: &RecordingSummary) -> String {
    let mut s = if r.state == "closed" && r.close_reason == "interrupted" {
        "interrupted".to_string()
    } else {
        r.state.clone()
    };
    if r.attached {
        s.push_str(", live");
    }
    if !r.damage.is_empty() {
        s.push_str(", damaged");
    }
    s
}

/// What the player on a recording's page plays.
pub enum Playback {
    /// The recording from its index, paused at `at` seconds if given, with
    /// what the player will fetch first (preloaded) and the screen at `at`,
    /// which the player shows (as its poster) before it has fetched
    /// anything.
    Recording {
        at: Option<f64>,
        preload: Vec<String>,
        screen: Option<Snapshot>,
    },
    /// An open recording as it happens.
    Live,
}

/// Tables of a recording's page longer than this are closed until opened.
const OPEN_ROWS: usize = 8;

/// One recording: its metadata, where its bytes are, its gaps, the player,
/// and for those who may read the audit log, who viewed it.
pub fn recording(
    chrome: &Chrome,
    d: &RecordingDetail,
    playback: &Playback,
    viewers: Option<&[AuditEntry]>,
) -> Markup {
    let s = &d.summary;
    let id = &s.id;
    let poster = match playback {
        Playback::Recording { screen, .. } => screen.as_ref(),
        Playback::Live => None,
    };
    // What the player fetches first is on its way while its script loads.
    // With the moment drawn in the page, the player's script and what it
    // fetches wait until that has been painted (reel.js loads them): on a
    // busy machine they took the cores the first paint needed.
    let player_later = poster.is_some();
    let player_script = format!("{}/asciinema-player.min.js", super::ASSETS);
    let head = html! {
        @if let Playback::Recording { preload, .. } = playback {
            @if !player_later {
                @for url in preload {
                    link rel="preload" as="fetch" crossorigin href=(url);
                }
            }
        }
        link rel="stylesheet" href=(format!("{}/asciinema-player.css", super::ASSETS));
        @if !player_later {
            script defer src=(player_script) {}
        }
        script defer src=(format!("{}/reel.js", super::ASSETS)) {}
    };
    page_with_head(
        &format!("{} on {}", s.user, s.target),
        Some(chrome),
        head,
        html! {
            h1 { (s.user) " on " (s.target) }
            @if !d.title.is_empty() {
                p.title { (d.title) }
            }
            div #player
                data-index=(format!("/recordings/{id}/player.json"))
                data-live=[matches!(playback, Playback::Live).then(|| format!("/recordings/{id}/live"))]
                data-at=[match playback { Playback::Recording { at, .. } => at.map(|t| t.to_string()), _ => None }]
                data-screen=[poster.map(|s| serde_json::to_string(&s.init).unwrap_or_default())]
                data-cols=[poster.map(|s| s.cols)]
                data-rows=[poster.map(|s| s.rows)]
                data-player=[player_later.then_some(&player_script)]
                {
                    @if let Some(s) = poster {
                        (screen(s))
                    }
                }
            p.playback {
                @match playback {
                    Playback::Live => {
                        "Following live. "
                        a href=(format!("/recordings/{id}?t=0")) { "Play from the start" }
                    }
                    Playback::Recording { .. } => {
                        a href=(format!("/api/v1/recordings/{id}/export")) { "Download (asciicast)" }
                    }
                }
            }
            @let lost: Vec<_> = d.segments.iter().filter(|g| super::player::lost(g.locations.len(), g.event_count)).collect();
            @if !s.damage.is_empty() || !lost.is_empty() {
                section.gaps {
                    h2 { "Gaps" }
                    ul {
                        @for problem in &s.damage { li { (problem) } }
                        @for g in &lost {
                            li {
                                (super::player::lost_label(g.first_event_index, g.event_count))
                                " (" (duration(g.start_time_us)) " to " (duration(g.end_time_us))
                                "): no copy holds them"
                            }
                        }
                    }
                }
            }
            section.meta {
                h2 { "Recording" }
                dl {
                    dt { "Id" } dd.id { (id) }
                    dt { "User" } dd { (s.user) }
                    dt { "Target" } dd { (s.target) }
                    dt { "Protocol" } dd { (s.protocol) }
                    dt { "Started" } dd { (time(s.started_at_us)) }
                    dt { "Duration" } dd { (duration(s.duration_us)) }
                    dt { "State" } dd { (state(s)) }
                    dt { "Events" } dd { (s.event_count) }
                    dt { "Size" } dd { (bytes(s.data_bytes)) }
                    dt { "Where" } dd { (s.placement) }
                    @if let Some(t) = &d.terminal { dt { "Terminal" } dd { (t) } }
                    @for (k, v) in &s.labels { dt { "Label " (k) } dd { (v) } }
                    dt { "Recorded by" } dd { (d.owner) }
                    @if let Some(h) = &d.legal_hold {
                        dt { "Legal hold" } dd { (h.by) ", " (time(h.at_us)) ": " (h.reason) }
                    }
                    @if let Some(o) = &d.object {
                        dt { "Recombined" } dd { (bytes(o.size)) " on the primary" }
                    }
                }
            }
            section.segments {
                h2 { "Segments" }
                // A long recording's list is closed until asked for: laid
                // out, its rows would hold up the player on a deep link.
                details open[d.segments.len() <= OPEN_ROWS] {
                summary { (d.segments.len()) " sealed" @if d.unsealed_events > 0 { ", and events not sealed yet" } }
                table {
                    thead { tr { th { "#" } th { "Events" } th { "Time" } th { "Size" } th { "Copies" } } }
                    tbody {
                        @for g in &d.segments {
                            tr {
                                td { (g.sequence) }
                                td { (g.first_event_index) ".." (g.first_event_index + g.event_count) }
                                td { (duration(g.start_time_us)) " to " (duration(g.end_time_us)) }
                                td { (bytes(g.size)) }
                                td { (if g.locations.is_empty() { "none".to_string() } else { g.locations.join(", ") }) }
                            }
                        }
                        @if d.unsealed_events > 0 {
                            tr { td { "-" } td { (d.unsealed_events) " not sealed yet" } td {} td { (bytes(d.unsealed_bytes)) } td { "local" } }
                        }
                    }
                }
                }
            }
            @if let Some(viewers) = viewers {
                section.viewers {
                    h2 { "Viewed by" }
                    @if viewers.is_empty() {
                        p { "No one yet." }
                    } @else {
                        details open[viewers.len() <= OPEN_ROWS] {
                        summary { (viewers.len()) " views, the latest first" }
                        table {
                            thead { tr { th { "When" } th { "Who" } th { "What" } th { "From" } } }
                            tbody {
                                @for v in viewers {
                                    tr { td { (time(v.at_us)) } td { (v.by) } td { (v.action) " " (v.detail) } td { (v.client) } }
                                }
                            }
                        }
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_proto::v1::{Event, EventKind};

    #[test]
    fn a_screen_in_the_page_is_its_text_escaped_in_its_colours() {
        let mut screen = Screen::restore(&Snapshot::blank(None));
        screen.apply(&Event {
            time_us: 0,
            kind: EventKind::Output as i32,
            data: b"$ echo '<script>x</script>' \x1b[31;1mred\x1b[0m \x1b[7minv\x1b[0m\r\nnext"
                .to_vec(),
        });
        let html = super::screen(&screen.snapshot()).into_string();
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains(
                r#"<span style="color:var(--term-color-1);font-weight:bold;">red</span>"#
            ),
            "{html}"
        );
        assert!(
            html.contains("color:var(--term-color-background);background-color:var(--term-color-foreground);\">inv<"),
            "{html}"
        );
        assert!(html.contains("\nnext\n"), "{html}");
        assert_eq!(html.matches('\n').count(), 24, "a line a row: {html}");
    }
}
