//! ALiS v1 (asciinema live stream), the protocol `asciinema stream` and
//! `asciinema session --stream-remote` speak to a server: WebSocket binary
//! messages under the subprotocol `v1.alis`.
//!
//! A connection starts with the magic message `ALiS\x01`, then an init
//! message (`0x01`): the id of the last event the producer has sent before
//! (0 on a fresh session, more after a reconnection), the stream time in
//! microseconds, the terminal size, an optional theme, and the terminal's
//! state as text (empty on a fresh session; after a reconnection, what
//! redraws the screen as it is). Every later message is one event: a code
//! (`o` output, `i` input, `r` resize, `m` marker, `x` exit, `0x04` end of
//! transmission), its id (one more than the previous), the time since the
//! previous message in microseconds, and its data. Numbers are unsigned
//! LEB128 varints; text is length-prefixed UTF-8.
//!
//! Bytes from the network are bounded and checked here: a number longer
//! than ten bytes or past `u64`, a length past the message, a size or
//! theme out of range, text that is not UTF-8, or bytes left over are
//! errors, never a panic or an allocation the message does not pay for.

use thiserror::Error;

/// The first message of every connection.
pub const MAGIC: &[u8] = b"ALiS\x01";
/// The WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "v1.alis";

/// One decoded message (after the magic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The (re)start of a stream.
    Init {
        /// The id of the last event sent before this connection (0: none).
        last_id: u64,
        /// Stream time, microseconds since the session started.
        time_us: u64,
        cols: u16,
        rows: u16,
        theme: Option<Theme>,
        /// What redraws the terminal as it is now (empty on a fresh start).
        init: String,
    },
    /// An event of the session.
    Event {
        id: u64,
        /// Microseconds since the previous message.
        interval_us: u64,
        body: Body,
    },
    /// The session ended: nothing follows.
    EndOfTransmission { id: u64, interval_us: u64 },
}

/// What an event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Output(String),
    Input(String),
    Resize { cols: u16, rows: u16 },
    Marker(String),
    Exit(u64),
}

/// Terminal colours: foreground, background and an 8 or 16 colour palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub fg: [u8; 3],
    pub bg: [u8; 3],
    pub palette: Vec<[u8; 3]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AlisError {
    #[error("empty message")]
    Empty,
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("message ends inside its {0}")]
    Truncated(&'static str),
    #[error("{0} is not a valid LEB128 number (longer than 10 bytes or past 2^64)")]
    BadNumber(&'static str),
    #[error("{what} {value} is out of range")]
    OutOfRange { what: &'static str, value: u64 },
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} bytes left after the message")]
    TrailingBytes(usize),
    #[error("theme with {0} colours (8 or 16, or 0 for none)")]
    BadTheme(u8),
}

/// Reads a message's fields in order.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, AlisError> {
        let (&b, rest) = self.bytes.split_first().ok_or(AlisError::Truncated(what))?;
        self.bytes = rest;
        Ok(b)
    }

    fn number(&mut self, what: &'static str) -> Result<u64, AlisError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.byte(what)?;
            let low = u64::from(b & 0x7f);
            // The tenth byte holds bit 63 only.
            if i == 9 && low > 1 {
                return Err(AlisError::BadNumber(what));
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(AlisError::BadNumber(what))
    }

    fn size(&mut self, what: &'static str) -> Result<u16, AlisError> {
        let value = self.number(what)?;
        u16::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or(AlisError::OutOfRange { what, value })
    }

    fn bytes(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], AlisError> {
        if len > self.bytes.len() as u64 {
            return Err(AlisError::Truncated(what));
        }
        let (taken, rest) = self.bytes.split_at(len as usize);
        self.bytes = rest;
        Ok(taken)
    }

    fn text(&mut self, what: &'static str) -> Result<String, AlisError> {
        let len = self.number(what)?;
        let bytes = self.bytes(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| AlisError::NotUtf8(what))
    }

    fn rgb(&mut self) -> Result<[u8; 3], AlisError> {
        let b = self.bytes(3, "theme")?;
        Ok([b[0], b[1], b[2]])
    }

    fn end(self) -> Result<(), AlisError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(AlisError::TrailingBytes(n)),
        }
    }
}

/// Decodes one message that follows the magic.
pub fn decode(message: &[u8]) -> Result<Message, AlisError> {
    let mut r = Reader { bytes: message };
    let kind = r.byte("type").map_err(|_| AlisError::Empty)?;
    let decoded = match kind {
        0x01 => {
            let last_id = r.number("last event id")?;
            let time_us = r.number("time")?;
            let cols = r.size("columns")?;
            let rows = r.size("rows")?;
            let theme = match r.byte("theme")? {
                0 => None,
                n @ (8 | 16) => Some(Theme {
                    fg: r.rgb()?,
                    bg: r.rgb()?,
                    palette: (0..n).map(|_| r.rgb()).collect::<Result<_, _>>()?,
                }),
                n => return Err(AlisError::BadTheme(n)),
            };
            let init = r.text("init text")?;
            Message::Init {
                last_id,
                time_us,
                cols,
                rows,
                theme,
                init,
            }
        }
        0x04 => Message::EndOfTransmission {
            id: r.number("event id")?,
            interval_us: r.number("time")?,
        },
        b'o' | b'i' | b'r' | b'm' | b'x' => {
            let id = r.number("event id")?;
            let interval_us = r.number("time")?;
            let body = match kind {
                b'o' => Body::Output(r.text("output")?),
                b'i' => Body::Input(r.text("input")?),
                b'm' => Body::Marker(r.text("marker label")?),
                b'r' => Body::Resize {
                    cols: r.size("columns")?,
                    rows: r.size("rows")?,
                },
                _ => Body::Exit(r.number("exit status")?),
            };
            Message::Event {
                id,
                interval_us,
                body,
            }
        }
        other => return Err(AlisError::UnknownType(other)),
    };
    r.end()?;
    Ok(decoded)
}

/// Encodes a message as a producer does (for tests and tools).
pub fn encode(message: &Message) -> Vec<u8> {
    fn number(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(low);
                return;
            }
            out.push(low | 0x80);
        }
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        number(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    match message {
        Message::Init {
            last_id,
            time_us,
            cols,
            rows,
            theme,
            init,
        } => {
            out.push(0x01);
            number(&mut out, *last_id);
            number(&mut out, *time_us);
            number(&mut out, u64::from(*cols));
            number(&mut out, u64::from(*rows));
            match theme {
                None => out.push(0),
                Some(t) => {
                    out.push(t.palette.len() as u8);
                    out.extend_from_slice(&t.fg);
                    out.extend_from_slice(&t.bg);
                    for c in &t.palette {
                        out.extend_from_slice(c);
                    }
                }
            }
            text(&mut out, init);
        }
        Message::EndOfTransmission { id, interval_us } => {
            out.push(0x04);
            number(&mut out, *id);
            number(&mut out, *interval_us);
        }
        Message::Event {
            id,
            interval_us,
            body,
        } => {
            out.push(match body {
                Body::Output(_) => b'o',
                Body::Input(_) => b'i',
                Body::Resize { .. } => b'r',
                Body::Marker(_) => b'm',
                Body::Exit(_) => b'x',
            });
            number(&mut out, *id);
            number(&mut out, *interval_us);
            match body {
                Body::Output(s) | Body::Input(s) | Body::Marker(s) => text(&mut out, s),
                Body::Resize { cols, rows } => {
                    number(&mut out, u64::from(*cols));
                    number(&mut out, u64::from(*rows));
                }
                Body::Exit(status) => number(&mut out, *status),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The bytes asciinema 3.2's own serializer test writes for an init
    /// with a theme (its `test_serialize_init_with_theme_and_seed`).
    #[test]
    fn decodes_what_asciinema_writes() {
        let mut bytes = vec![0x01, 0x2A, 0xE8, 0x07, 0xB4, 0x01, 0x18, 16];
        bytes.extend_from_slice(&[255, 255, 255, 0, 0, 0]);
        for i in 0..16u8 {
            bytes.extend_from_slice(&[i, i, i]);
        }
        bytes.push(0x0D);
        bytes.extend_from_slice(b"terminal seed");
        let Message::Init {
            last_id,
            time_us,
            cols,
            rows,
            theme,
            init,
        } = decode(&bytes).unwrap()
        else {
            panic!("an init");
        };
        assert_eq!((last_id, time_us, cols, rows), (42, 1000, 180, 24));
        assert_eq!(theme.unwrap().palette.len(), 16);
        assert_eq!(init, "terminal seed");
        // Its EOT test: id 30, 300 µs.
        assert_eq!(
            decode(&[0x04, 0x1E, 0xAC, 0x02]).unwrap(),
            Message::EndOfTransmission {
                id: 30,
                interval_us: 300
            }
        );
    }

    #[test]
    fn malformed_messages_are_clear_errors() {
        assert_eq!(decode(&[]), Err(AlisError::Empty));
        assert_eq!(decode(b"z"), Err(AlisError::UnknownType(b'z')));
        assert_eq!(
            decode(&[b'o', 1, 0, 5, b'a']),
            Err(AlisError::Truncated("output"))
        );
        assert_eq!(
            decode(&[
                b'o', 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02
            ]),
            Err(AlisError::BadNumber("output"))
        );
        assert_eq!(
            decode(&[b'r', 1, 0, 0, 24]),
            Err(AlisError::OutOfRange {
                what: "columns",
                value: 0
            })
        );
        assert_eq!(
            decode(&[b'o', 1, 0, 1, 0xff]),
            Err(AlisError::NotUtf8("output"))
        );
        assert_eq!(
            decode(&[b'x', 1, 0, 0, 9]),
            Err(AlisError::TrailingBytes(1))
        );
        assert_eq!(
            decode(&[0x01, 0, 0, 80, 24, 5]),
            Err(AlisError::BadTheme(5))
        );
    }

    fn message() -> impl Strategy<Value = Message> {
        let body = prop_oneof![
            ".*".prop_map(Body::Output),
            ".*".prop_map(Body::Input),
            ".*".prop_map(Body::Marker),
            any::<u64>().prop_map(Body::Exit),
            (1u16.., 1u16..).prop_map(|(cols, rows)| Body::Resize { cols, rows }),
        ];
        prop_oneof![
            (any::<u64>(), any::<u64>(), body).prop_map(|(id, interval_us, body)| {
                Message::Event {
                    id,
                    interval_us,
                    body,
                }
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(id, interval_us)| { Message::EndOfTransmission { id, interval_us } }),
            (
                any::<u64>(),
                any::<u64>(),
                1u16..,
                1u16..,
                any::<bool>(),
                ".*"
            )
                .prop_map(|(last_id, time_us, cols, rows, themed, init)| {
                    Message::Init {
                        last_id,
                        time_us,
                        cols,
                        rows,
                        theme: themed.then(|| Theme {
                            fg: [1, 2, 3],
                            bg: [4, 5, 6],
                            palette: vec![[7, 8, 9]; 16],
                        }),
                        init,
                    }
                }),
        ]
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_to_itself(m in message()) {
            prop_assert_eq!(decode(&encode(&m)), Ok(m));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
