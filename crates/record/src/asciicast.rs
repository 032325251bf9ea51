//! A terminal recording as asciicast v2 (<https://docs.asciinema.org/manual/asciicast/v2/>),
//! for `asciinema play` and the asciinema web player.
//!
//! Streaming: one frame in, at most one line out; nothing but a few bytes of a cut UTF-8
//! character is held between frames.

use crate::format::{decode_bytes, incomplete_utf8_tail, Frame};
use std::io::{self, Write};

/// Size written in the header when the recording never says (an exec without a terminal).
const DEFAULT_SIZE: (u32, u32) = (80, 24);

/// What [`to_asciicast`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsciicastSummary {
    /// Event lines after the header (`o`, `i` and `r`).
    pub events: u64,
    /// Terminal frames whose base64 did not decode (damaged), left out.
    pub undecodable: u64,
}

/// Writes the terminal frames of `frames` (a [`crate::RecordingReader`]) as asciicast v2: a
/// header line `{"version": 2, "width", "height", "timestamp"}` with the first terminal
/// size and the session start, then `[t, "o", data]` for output, `[t, "i", data]` for input
/// and `[t, "r", "COLSxROWS"]` for resizes, `t` in seconds from the session start, never
/// decreasing. Bytes that are not UTF-8 become U+FFFD, as asciinema itself records them.
/// Other frames (SQL, requests) are left out. A recording without terminal frames gives a
/// header alone.
pub fn to_asciicast<W: Write>(
    frames: impl IntoIterator<Item = Frame>,
    mut out: W,
) -> io::Result<AsciicastSummary> {
    let mut c = Converter {
        start_s: None,
        header: false,
        last_us: 0,
        carry: [Vec::new(), Vec::new()],
        summary: AsciicastSummary::default(),
    };
    for frame in frames {
        match frame {
            Frame::Start { ts_us, .. } if c.start_s.is_none() => {
                c.start_s = Some(ts_us.div_euclid(1_000_000));
            }
            Frame::TermSize { at_us, cols, rows } => {
                if c.header {
                    c.event(&mut out, at_us, "r", &format!("{cols}x{rows}"))?;
                } else {
                    c.write_header(&mut out, (cols, rows))?;
                }
            }
            Frame::TermOut { at_us, d, b64 } => c.data(&mut out, false, at_us, &d, b64)?,
            Frame::TermIn { at_us, d, b64 } => c.data(&mut out, true, at_us, &d, b64)?,
            _ => {}
        }
    }
    if !c.header {
        c.write_header(&mut out, DEFAULT_SIZE)?;
    }
    // A character still cut at the very end: what there is of it, as U+FFFD.
    for input in [false, true] {
        let rest = c.carry.get_mut(usize::from(input)).map(std::mem::take);
        if let Some(rest) = rest.filter(|r| !r.is_empty()) {
            let code = if input { "i" } else { "o" };
            let text = String::from_utf8_lossy(&rest).into_owned();
            c.event(&mut out, c.last_us, code, &text)?;
        }
    }
    out.flush()?;
    Ok(c.summary)
}

struct Converter {
    start_s: Option<i64>,
    header: bool,
    last_us: u64,
    /// Per direction (output, input): the start of a UTF-8 character whose rest is in the
    /// next frame of that direction.
    carry: [Vec<u8>; 2],
    summary: AsciicastSummary,
}

impl Converter {
    fn write_header<W: Write>(&mut self, out: &mut W, (cols, rows): (u32, u32)) -> io::Result<()> {
        self.header = true;
        match self.start_s {
            Some(ts) => writeln!(
                out,
                "{{\"version\": 2, \"width\": {cols}, \"height\": {rows}, \"timestamp\": {ts}}}"
            ),
            None => writeln!(
                out,
                "{{\"version\": 2, \"width\": {cols}, \"height\": {rows}}}"
            ),
        }
    }

    fn data<W: Write>(
        &mut self,
        out: &mut W,
        input: bool,
        at_us: u64,
        d: &str,
        b64: bool,
    ) -> io::Result<()> {
        if !self.header {
            self.write_header(out, DEFAULT_SIZE)?;
        }
        let Some(bytes) = decode_bytes(d, b64) else {
            self.summary.undecodable += 1;
            return Ok(());
        };
        let Some(carry) = self.carry.get_mut(usize::from(input)) else {
            return Ok(());
        };
        let text = if carry.is_empty() && !b64 {
            // The common case: the frame is whole UTF-8 text already.
            d.to_owned()
        } else {
            let mut all = std::mem::take(carry);
            all.extend_from_slice(&bytes);
            let tail = incomplete_utf8_tail(&all);
            *carry = all.split_off(all.len() - tail);
            String::from_utf8_lossy(&all).into_owned()
        };
        if text.is_empty() {
            return Ok(());
        }
        self.event(out, at_us, if input { "i" } else { "o" }, &text)
    }

    fn event<W: Write>(
        &mut self,
        out: &mut W,
        at_us: u64,
        code: &str,
        data: &str,
    ) -> io::Result<()> {
        // Times never go backwards in a player's stream, even in a hand-edited recording.
        let t = at_us.max(self.last_us);
        self.last_us = t;
        self.summary.events += 1;
        write!(out, "[{}.{:06}, \"{code}\", ", t / 1_000_000, t % 1_000_000)?;
        serde_json::to_writer(&mut *out, data)?;
        out.write_all(b"]\n")
    }
}
