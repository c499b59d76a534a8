//! What `reel play` lets through to the reviewer's terminal.
//!
//! A recording holds bytes a recorded user (or the program they ran)
//! chose. Written as they are to the reviewer's terminal they can act
//! outside the screen: set the clipboard (OSC 52), ask for reports that the
//! terminal answers by typing into the reviewer's shell (device status,
//! device attributes, window and title reports, DECRQSS in a DCS), turn on
//! mouse reporting, resize or move the window. So output is parsed as a
//! terminal parses it (the `vte` crate) and only what draws on the screen is
//! written again: text, the usual C0 controls, SGR, cursor movement,
//! erasing and scrolling, charsets, and the modes a full-screen program
//! needs (alternate screen, cursor visibility, autowrap, cursor keys).
//! Everything else is dropped.

use vte::{Params, Parser, Perform};

/// Filters one recording's output, in order: the parser keeps its state
/// between calls, so a sequence split across events is still recognised.
#[derive(Default)]
pub(crate) struct TerminalGuard {
    parser: Parser,
}

impl TerminalGuard {
    /// The part of `data` that is safe to write to a terminal.
    pub(crate) fn filter(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Out(Vec::with_capacity(data.len()));
        self.parser.advance(&mut out, data);
        out.0
    }
}

struct Out(Vec<u8>);

/// DEC private modes a recording may set: cursor keys, autowrap, cursor
/// blink and visibility, the alternate screens. Not mouse or focus
/// reporting, bracketed paste or anything that makes the terminal send.
const PRIVATE_MODES: &[u16] = &[1, 7, 12, 25, 47, 1047, 1048, 1049];
/// ANSI modes: insert (IRM).
const ANSI_MODES: &[u16] = &[4];

impl Perform for Out {
    fn print(&mut self, c: char) {
        // C1 controls (U+0080..U+009F) are escape introducers to some
        // terminals; they never draw anything.
        if !('\u{80}'..='\u{9f}').contains(&c) {
            let mut buf = [0u8; 4];
            self.0.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }

    fn execute(&mut self, byte: u8) {
        // BEL, backspace, tab, line feed, vertical tab, form feed, carriage
        // return, shift out and in. Not ENQ (its answer is typed back).
        if matches!(byte, 0x07..=0x0f) {
            self.0.push(byte);
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        if ignore || !csi_allowed(params, intermediates, action) {
            return;
        }
        self.0.extend_from_slice(b"\x1b[");
        let (private, trailing): (Vec<u8>, Vec<u8>) =
            intermediates.iter().partition(|b| matches!(b, b'<'..=b'?'));
        self.0.extend_from_slice(&private);
        for (i, param) in params.iter().enumerate() {
            if i > 0 {
                self.0.push(b';');
            }
            for (j, sub) in param.iter().enumerate() {
                if j > 0 {
                    self.0.push(b':');
                }
                self.0.extend_from_slice(sub.to_string().as_bytes());
            }
        }
        self.0.extend_from_slice(&trailing);
        self.0.push(action as u8);
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], ignore: bool, byte: u8) {
        if ignore {
            return;
        }
        let allowed = match intermediates {
            // Save and restore the cursor, index, next line, reverse index,
            // keypad modes, full reset.
            [] => matches!(byte, b'7' | b'8' | b'D' | b'E' | b'M' | b'=' | b'>' | b'c'),
            // Character sets.
            [b'(' | b')' | b'*' | b'+'] => byte.is_ascii_alphanumeric(),
            // Line sizes and the screen alignment test.
            [b'#'] => matches!(byte, b'3'..=b'8'),
            _ => false,
        };
        if allowed {
            self.0.push(0x1b);
            self.0.extend_from_slice(intermediates);
            self.0.push(byte);
        }
    }

    // OSC (titles, colours, clipboard, hyperlinks), DCS (DECRQSS, sixel,
    // tmux passthrough), SOS, PM and APC strings are all dropped: the
    // default `osc_dispatch`, `hook`, `put` and `unhook` do nothing.
}

fn csi_allowed(params: &Params, intermediates: &[u8], action: char) -> bool {
    let first = |p: &Params| p.iter().next().and_then(|s| s.first().copied());
    match (intermediates, action) {
        // SGR, cursor movement and position, erase, insert and delete,
        // scroll region, repeat, tabs, save and restore the cursor.
        (
            [],
            'm' | 'A' | 'B' | 'C' | 'D' | 'E' | 'F' | 'G' | 'H' | 'f' | 'd' | 'e' | 'a' | '`' | 'J'
            | 'K' | 'L' | 'M' | 'P' | '@' | 'X' | 'S' | 'r' | 'b' | 'g' | 'I' | 'Z' | 's' | 'u',
        ) => true,
        // Scroll down; with more parameters xterm reads it as mouse
        // highlight tracking.
        ([], 'T') => params.len() <= 1,
        ([], 'h' | 'l') => params
            .iter()
            .all(|p| p.len() == 1 && ANSI_MODES.contains(&p[0])),
        ([b'?'], 'h' | 'l') => params
            .iter()
            .all(|p| p.len() == 1 && PRIVATE_MODES.contains(&p[0])),
        // Cursor style (DECSCUSR).
        ([b' '], 'q') => first(params).is_none_or(|s| s <= 6),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(data: &[u8]) -> Vec<u8> {
        TerminalGuard::default().filter(data)
    }

    #[test]
    fn what_draws_the_screen_passes_unchanged() {
        for kept in [
            &b"plain text \xc3\xa9\xe2\x82\xac\r\n\t\x08\x07"[..],
            // (An empty parameter is written back as 0, which means the same
            // in every sequence let through.)
            b"\x1b[0m\x1b[1;31mred\x1b[38;5;208mx\x1b[38:2:0:10:20:30my\x1b[0m",
            b"\x1b[0H\x1b[2J\x1b[10;20H\x1b[0K\x1b[3A\x1b[2C\x1b[5;20r\x1b[2L\x1b[3P",
            b"\x1b[?1049h\x1b[?25l\x1b[?1h\x1b=\x1b[?25h\x1b[?1049l\x1b>",
            b"\x1b(0lqk\x1b(B\x1b7\x1b8\x1bM\x1b[2 q\x1b[4h\x1b[4l",
        ] {
            assert_eq!(filter(kept), kept, "{}", String::from_utf8_lossy(kept));
        }
    }

    #[test]
    fn what_acts_outside_the_screen_is_dropped() {
        for (evil, left) in [
            // Clipboard write, title set and report, colour query.
            (&b"a\x1b]52;c;cm0gLXJmIH4=\x07b"[..], &b"ab"[..]),
            (b"\x1b]0;fake title\x1b\\x", b"x"),
            (b"\x1b[21t\x1b[8;100;100t\x1b]10;?\x07", b""),
            // Device status, attributes, DECRQSS, DECRQM, answerback.
            (b"\x1b[6n\x1b[c\x1b[>c\x1b[?6n\x05", b""),
            (b"\x1bP$qm\x1b\\ok", b"ok"),
            (b"\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b[?1004h", b""),
            (b"\x1b[?1049;1000h", b""),
            (b"\x1b[1;2;3;4;5T", b""),
            // Eight-bit CSI and OSC as UTF-8 code points.
            ("\u{9b}6n\u{9d}52;c;x\u{9c}".as_bytes(), b"6n52;c;x"),
            (b"\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\", b""),
        ] {
            assert_eq!(
                String::from_utf8_lossy(&filter(evil)),
                String::from_utf8_lossy(left),
                "{}",
                String::from_utf8_lossy(evil)
            );
        }
    }

    #[test]
    fn a_sequence_split_across_events_is_still_recognised() {
        let mut guard = TerminalGuard::default();
        let mut out = guard.filter(b"a\x1b]5");
        out.extend(guard.filter(b"2;c;eA==\x07b\x1b[3"));
        out.extend(guard.filter(b"1mc"));
        assert_eq!(out, b"ab\x1b[31mc");
    }
}
