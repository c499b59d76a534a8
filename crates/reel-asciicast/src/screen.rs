//! A terminal's screen as a recording replays: what a viewer would see at
//! any moment, computed on the server with asciinema's own emulator
//! (`avt`), so that a player can start anywhere with the right screen
//! instead of replaying everything before it.
//!
//! A [`Snapshot`] is the screen as text a fresh terminal of its size turns
//! back into the same screen (contents, colours, cursor, modes); the web
//! player feeds it before the events that follow.
//!
//! Bytes from a recorder are bounded here: a resize is clamped to
//! [`MAX_COLS`] x [`MAX_ROWS`] (a recorder cannot make the server allocate
//! a screen of 65535 x 65535 cells), output that is not UTF-8 is replaced
//! the way exports replace it, and no scrollback is kept.

use std::borrow::Cow;

use reel_proto::v1::{Event, EventKind, Terminal};
use unicode_width::UnicodeWidthChar;

/// The largest screen a recording may ask for.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

const SNAPSHOT_VERSION: u8 = 1;

/// A screen as text that redraws it, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub cols: u16,
    pub rows: u16,
    /// Fed to a fresh terminal of `cols` x `rows`, redraws the screen.
    pub init: String,
}

impl Snapshot {
    /// The blank screen of a recording's terminal (80 x 24 when unknown).
    pub fn blank(terminal: Option<&Terminal>) -> Snapshot {
        let narrow = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let (cols, rows) = terminal.map_or((0, 0), |t| (narrow(t.cols), narrow(t.rows)));
        let (cols, rows) = clamp(cols, rows);
        Snapshot {
            cols,
            rows,
            init: String::new(),
        }
    }

    /// The snapshot as bytes to keep (`1`, cols and rows as u16 LE, then
    /// the text).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.init.len());
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&self.cols.to_le_bytes());
        out.extend_from_slice(&self.rows.to_le_bytes());
        out.extend_from_slice(self.init.as_bytes());
        out
    }

    /// What [`Snapshot::to_bytes`] gave; `None` for anything else (another
    /// version, text that is not UTF-8). The size is clamped as a resize's
    /// is. Runs of a wide character that a keyframe taken before
    /// [`expand_wide_repeats`] holds are written out, so that it shows
    /// right wherever it is played.
    pub fn from_bytes(bytes: &[u8]) -> Option<Snapshot> {
        let (&version, rest) = bytes.split_first()?;
        if version != SNAPSHOT_VERSION || rest.len() < 4 {
            return None;
        }
        let cols = u16::from_le_bytes([rest[0], rest[1]]);
        let rows = u16::from_le_bytes([rest[2], rest[3]]);
        let (cols, rows) = clamp(cols, rows);
        let init = std::str::from_utf8(&rest[4..]).ok()?;
        let init = expand_wide_repeats(init).into_owned();
        Some(Snapshot { cols, rows, init })
    }

    /// An estimate of the memory it holds, for caches.
    pub fn weight(&self) -> usize {
        self.init.len() + std::mem::size_of::<Self>()
    }
}

/// A terminal fed with a recording's events.
pub struct Screen {
    vt: avt::Vt,
    cols: u16,
    rows: u16,
}

impl Screen {
    /// The screen a snapshot shows.
    pub fn restore(snapshot: &Snapshot) -> Screen {
        let (cols, rows) = clamp(snapshot.cols, snapshot.rows);
        let mut vt = avt::Vt::builder()
            .size(cols as usize, rows as usize)
            .scrollback_limit(0)
            .build();
        vt.feed_str(&snapshot.init);
        Screen { vt, cols, rows }
    }

    /// Plays one event: output is drawn, a resize resizes; input, markers
    /// and the rest do not change the screen.
    pub fn apply(&mut self, event: &Event) {
        match EventKind::try_from(event.kind) {
            Ok(EventKind::Output) => {
                self.vt.feed_str(&String::from_utf8_lossy(&event.data));
            }
            Ok(EventKind::Resize) => {
                if let Some((cols, rows)) = parse_size(&event.data) {
                    let (cols, rows) = clamp(cols, rows);
                    self.vt.resize(cols as usize, rows as usize);
                    (self.cols, self.rows) = (cols, rows);
                }
            }
            _ => {}
        }
    }

    /// Draws text that is not part of the recording (a notice of a gap).
    pub fn write(&mut self, text: &str) {
        self.vt.feed_str(text);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            cols: self.cols,
            rows: self.rows,
            init: expand_wide_repeats(&self.vt.dump()).into_owned(),
        }
    }

    /// The lines on the screen now (the alternate screen when a full-screen
    /// program uses it), as plain text.
    pub fn text(&self) -> Vec<String> {
        self.vt.view().map(|line| line.text()).collect()
    }

    /// The lines on the screen now, each as runs of text in one style, for
    /// drawing the screen elsewhere (a page's HTML).
    pub fn styled(&self) -> Vec<Vec<Run>> {
        self.vt
            .view()
            .map(|line| {
                line.chunks(|a, b| a.pen() != b.pen())
                    .map(|cells| Run {
                        text: cells.iter().map(|c| c.char()).collect(),
                        style: Style::of(cells[0].pen()),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Text in one style on a line of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub text: String,
    pub style: Style,
}

/// How a run of text is drawn; `None` colours are the terminal's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub foreground: Option<Colour>,
    pub background: Option<Colour>,
    pub bold: bool,
    pub faint: bool,
    pub italic: bool,
    pub underline: bool,
    pub strikethrough: bool,
    pub inverse: bool,
}

/// A colour as a terminal names it: one of its 256 (the first 16 are the
/// theme's), or red, green and blue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Indexed(u8),
    Rgb(u8, u8, u8),
}

impl Style {
    fn of(pen: &avt::Pen) -> Style {
        let colour = |c: Option<avt::Color>| {
            c.map(|c| match c {
                avt::Color::Indexed(i) => Colour::Indexed(i),
                avt::Color::RGB(c) => Colour::Rgb(c.r, c.g, c.b),
            })
        };
        Style {
            foreground: colour(pen.foreground()),
            background: colour(pen.background()),
            bold: pen.is_bold(),
            faint: pen.is_faint(),
            italic: pen.is_italic(),
            underline: pen.is_underline(),
            strikethrough: pen.is_strikethrough(),
            inverse: pen.is_inverse(),
        }
    }
}

impl Colour {
    /// Red, green and blue of colours 16 to 255 (xterm's cube and greys);
    /// `None` for the first 16, which a theme chooses.
    pub fn rgb(self) -> Option<(u8, u8, u8)> {
        match self {
            Colour::Rgb(r, g, b) => Some((r, g, b)),
            Colour::Indexed(i) if i < 16 => None,
            Colour::Indexed(i) if i < 232 => {
                let level = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
                let i = i - 16;
                Some((level(i / 36), level(i / 6 % 6), level(i % 6)))
            }
            Colour::Indexed(i) => {
                let grey = 8 + 10 * (i - 232);
                Some((grey, grey, grey))
            }
        }
    }
}

/// `COLSxROWS`, the data of a resize event.
pub fn parse_size(data: &[u8]) -> Option<(u16, u16)> {
    let text = std::str::from_utf8(data).ok()?;
    let (cols, rows) = text.trim().split_once('x')?;
    Some((cols.parse().ok()?, rows.parse().ok()?))
}

/// How long a snapshot's text may grow by [`expand_wide_repeats`] (a
/// full screen of 4-byte characters); past it, repeats stay as they are.
const MAX_EXPANDED_BYTES: usize = MAX_COLS as usize * MAX_ROWS as usize * 4;

/// avt's dump writes a run of more than five of one character as the
/// character and REP (`CSI n b`: repeat the last character n times), and
/// avt plays REP by repeating the cell before the cursor. After a wide
/// character that cell is the character's second half, so the run came
/// back as one character and blanks, in the server's screens and in the
/// web player alike (found by the `keyframe` fuzz target). Such runs are
/// written out here, up to [`MAX_EXPANDED_BYTES`] (a snapshot's text comes
/// from the catalog, which is bytes on disk); every other REP is left as
/// it is.
fn expand_wide_repeats(text: &str) -> Cow<'_, str> {
    if !text.contains("\x1b[") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\x1b' {
            let wide = last.filter(|l| l.width() == Some(2));
            if let (Some(wide), Some((n, len))) = (wide, repeat_count(&rest[1..]))
                && out.len() + n * wide.len_utf8() <= MAX_EXPANDED_BYTES.max(text.len())
            {
                out.extend(std::iter::repeat_n(wide, n));
                rest = &rest[1 + len..];
                continue;
            }
        }
        out.push(c);
        last = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// `[n b` (REP's parameters and final byte) at the start of `text`: `n`
/// (at least 1, at most a line's cells) and the bytes it takes.
fn repeat_count(text: &str) -> Option<(usize, usize)> {
    let digits = text.strip_prefix('[')?;
    let len = digits.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 || len > 4 || digits.as_bytes().get(len) != Some(&b'b') {
        return None;
    }
    let n: usize = digits[..len].parse().ok()?;
    (1..=usize::from(MAX_COLS))
        .contains(&n)
        .then_some((n, 1 + len + 1))
}

fn clamp(cols: u16, rows: u16) -> (u16, u16) {
    let or = |v: u16, default: u16, max: u16| if v == 0 { default } else { v.min(max) };
    (or(cols, 80, MAX_COLS), or(rows, 24, MAX_ROWS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_a_wide_character_survives_a_keyframe() {
        for text in [
            "昀昀昀昀昀昀",
            "ab\x1b[31m昀昀昀昀昀昀昀昀\x1b[0m cd",
            "────────── 昀昀昀昀昀昀",
        ] {
            let mut screen = Screen::restore(&Snapshot::blank(None));
            screen.apply(&output(text));
            let keyframe = Snapshot::from_bytes(&screen.snapshot().to_bytes()).unwrap();
            assert_eq!(Screen::restore(&keyframe).text(), screen.text(), "{text:?}");
        }
        // A keyframe taken before, with REP after the wide character, reads
        // back as the screen it was taken of.
        let before = Snapshot {
            cols: 80,
            rows: 24,
            init: "昀\x1b[5b \x1b[67b".into(),
        };
        let read = Snapshot::from_bytes(&before.to_bytes()).unwrap();
        assert_eq!(read.init, "昀昀昀昀昀昀 \x1b[67b");
        assert!(Screen::restore(&read).text()[0].starts_with("昀昀昀昀昀昀 "));
    }

    #[test]
    fn wide_repeats_are_written_out_only_so_far() {
        // Each 10 bytes would become 3,000: bounded, the rest left as REP.
        let hostile = "昀\x1b[1000b".repeat(2_000);
        let out = expand_wide_repeats(&hostile);
        assert!(
            out.len() <= MAX_EXPANDED_BYTES + hostile.len(),
            "{}",
            out.len()
        );
        assert!(out.len() > MAX_EXPANDED_BYTES - 3_000, "{}", out.len());
        assert!(out.ends_with("\x1b[1000b"));
        // Not a REP, or not after a wide character: as it was.
        for text in [
            "a\x1b[5b",
            "昀\x1b[5m",
            "昀\x1b[0b",
            "昀\x1b[99999b",
            "昀\x1b[",
        ] {
            assert_eq!(expand_wide_repeats(text), text);
        }
    }

    fn output(text: &str) -> Event {
        Event {
            time_us: 0,
            kind: EventKind::Output as i32,
            data: text.as_bytes().to_vec(),
        }
    }

    fn resize(text: &str) -> Event {
        Event {
            time_us: 0,
            kind: EventKind::Resize as i32,
            data: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_screen_is_drawn_as_runs_of_one_style_each() {
        let mut screen = Screen::restore(&Snapshot::blank(None));
        screen.apply(&output(
            "\x1b[1;31mred\x1b[0m plain \x1b[38;5;196mx\x1b[48;2;1;2;3my\x1b[0m",
        ));
        let line = &screen.styled()[0];
        let red = Style {
            foreground: Some(Colour::Indexed(1)),
            bold: true,
            ..Style::default()
        };
        assert_eq!(
            line[0],
            Run {
                text: "red".into(),
                style: red
            }
        );
        assert_eq!(line[1].text, " plain ");
        assert_eq!(line[1].style, Style::default());
        assert_eq!(line[2].text, "x");
        assert_eq!(line[2].style.foreground, Some(Colour::Indexed(196)));
        assert_eq!(line[3].text, "y");
        assert_eq!(line[3].style.background, Some(Colour::Rgb(1, 2, 3)));
        let text: String = line.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(text.trim_end(), screen.text()[0].trim_end());
        assert_eq!(screen.styled().len(), 24, "every row");
    }

    #[test]
    fn the_256_colours_are_xterms() {
        assert_eq!(Colour::Indexed(15).rgb(), None, "the theme's");
        assert_eq!(Colour::Indexed(16).rgb(), Some((0, 0, 0)));
        assert_eq!(Colour::Indexed(196).rgb(), Some((255, 0, 0)));
        assert_eq!(Colour::Indexed(231).rgb(), Some((255, 255, 255)));
        assert_eq!(Colour::Indexed(232).rgb(), Some((8, 8, 8)));
        assert_eq!(Colour::Indexed(255).rgb(), Some((238, 238, 238)));
    }

    #[test]
    fn a_snapshot_restores_the_same_screen() {
        let mut screen = Screen::restore(&Snapshot::blank(None));
        screen.apply(&output(
            "hello\r\n\x1b[31mred\x1b[0m and \x1b[1mbold\x1b[0m\r\n$ ",
        ));
        screen.apply(&output("\x1b[?1049h\x1b[Hfull-screen app\x1b[5;3Hthere"));
        let snap = screen.snapshot();
        let restored = Screen::restore(&snap);
        assert_eq!(restored.text(), screen.text());
        assert_eq!(restored.snapshot(), snap);
        assert!(restored.text()[0].starts_with("full-screen app"));
    }

    #[test]
    fn a_snapshot_kept_as_bytes_comes_back_the_same_and_nonsense_does_not() {
        let mut screen = Screen::restore(&Snapshot::blank(None));
        screen.apply(&output("\x1b[32mgreen\x1b[0m é\r\n$ "));
        screen.apply(&resize("100x30"));
        let snap = screen.snapshot();
        assert_eq!(Snapshot::from_bytes(&snap.to_bytes()), Some(snap.clone()));
        let mut other = snap.to_bytes();
        other[0] = 2;
        assert_eq!(Snapshot::from_bytes(&other), None);
        assert_eq!(Snapshot::from_bytes(&[1, 80, 0]), None);
        assert_eq!(Snapshot::from_bytes(&[1, 80, 0, 24, 0, 0xff]), None);
        // A kept size is bounded like a resize.
        let huge = Snapshot::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!((huge.cols, huge.rows), (MAX_COLS, MAX_ROWS));
    }

    #[test]
    fn resizes_are_followed_and_bounded() {
        let mut screen = Screen::restore(&Snapshot::blank(Some(&Terminal {
            cols: 40,
            rows: 10,
            ..Default::default()
        })));
        assert_eq!((screen.cols, screen.rows), (40, 10));
        screen.apply(&resize("100x30"));
        assert_eq!(screen.snapshot().cols, 100);
        assert_eq!(screen.text().len(), 30);
        // A recorder cannot make the server allocate a huge screen.
        screen.apply(&resize("65535x65535"));
        assert_eq!((screen.cols, screen.rows), (MAX_COLS, MAX_ROWS));
        // Nonsense is ignored.
        screen.apply(&resize("wide"));
        assert_eq!((screen.cols, screen.rows), (MAX_COLS, MAX_ROWS));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_refused() {
        let mut screen = Screen::restore(&Snapshot::blank(None));
        screen.apply(&Event {
            time_us: 0,
            kind: EventKind::Output as i32,
            data: vec![b'a', 0xff, b'b'],
        });
        assert!(screen.text()[0].starts_with("a\u{fffd}b"));
    }
}
