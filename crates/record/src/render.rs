//! Replay: a recording rendered as the client saw it. SQL results as psql would have shown
//! them (aligned format); a terminal session as its output stream (the bytes, escape
//! sequences included, for a terminal to show); request/response exchanges as `> METHOD
//! target` / `< status` lines with headers and body excerpts.
//!
//! Rows are buffered per statement because aligned output needs the column widths; that is
//! bounded by the recording's per-statement caps, never the whole recording.

use crate::format::{decode_bytes, Frame};
use std::io::{self, BufRead, Write};
use std::time::Duration;

/// How a replay is paced and what it shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Print everything at once.
    Instant,
    /// Wait between statements as long as the session did, divided by this factor.
    Speed(f64),
    /// Wait for Enter before each statement or request; in a terminal session, after each
    /// line the user entered (before its output).
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayOptions {
    pub pace: Pace,
    /// Only what psql printed (results, tags, errors, notices): no statement headers, no
    /// timing lines. For comparing with a psql transcript.
    pub bare: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            pace: Pace::Instant,
            bare: false,
        }
    }
}

struct Result {
    names: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<Option<String>>>,
}

/// Renders frames one by one to `out`.
pub struct Renderer<W: Write> {
    out: W,
    opts: ReplayOptions,
    result: Option<Result>,
    last_ts: Option<i64>,
    /// The `start` frame's time: terminal frames count from it.
    start_us: i64,
}

impl<W: Write> Renderer<W> {
    pub fn new(out: W, opts: ReplayOptions) -> Self {
        Renderer {
            out,
            opts,
            result: None,
            last_ts: None,
            start_us: 0,
        }
    }

    /// Renders every frame of `frames`; `input` is read from in step mode.
    pub fn replay(
        &mut self,
        frames: impl Iterator<Item = Frame>,
        input: &mut dyn BufRead,
    ) -> io::Result<()> {
        for frame in frames {
            if let Some(ts_us) = self.pace_point(&frame) {
                self.pace(ts_us, input)?;
            }
            self.frame(&frame)?;
        }
        self.out.flush()
    }

    /// When a frame is a point to pace at: statements and requests; terminal output at
    /// its time when replaying in real time; a line the user entered when stepping.
    fn pace_point(&self, frame: &Frame) -> Option<i64> {
        let term = |at_us: u64| {
            self.start_us
                .saturating_add(i64::try_from(at_us).unwrap_or(i64::MAX))
        };
        match (frame, self.opts.pace) {
            (Frame::Statement { ts_us, .. } | Frame::Request { ts_us, .. }, _) => Some(*ts_us),
            (Frame::TermOut { at_us, .. }, Pace::Speed(_)) => Some(term(*at_us)),
            (Frame::TermIn { at_us, d, b64 }, Pace::Step) => {
                let entered = decode_bytes(d, *b64)
                    .is_some_and(|b| b.iter().any(|&c| c == b'\r' || c == b'\n'));
                entered.then(|| term(*at_us))
            }
            _ => None,
        }
    }

    fn pace(&mut self, ts_us: i64, input: &mut dyn BufRead) -> io::Result<()> {
        match self.opts.pace {
            Pace::Instant => {}
            Pace::Speed(speed) => {
                if let Some(last) = self.last_ts {
                    let gap = (ts_us - last).max(0) as f64 / 1e6 / speed.max(0.001);
                    self.out.flush()?;
                    std::thread::sleep(Duration::from_secs_f64(gap.min(10.0)));
                }
            }
            Pace::Step => {
                if self.last_ts.is_some() {
                    self.out.flush()?;
                    let mut line = String::new();
                    input.read_line(&mut line)?;
                }
            }
        }
        self.last_ts = Some(ts_us);
        Ok(())
    }

    pub fn frame(&mut self, frame: &Frame) -> io::Result<()> {
        match frame {
            Frame::Start {
                session_id,
                identity,
                connection,
                ts_us,
                ..
            } => {
                self.start_us = *ts_us;
                if !self.opts.bare {
                    writeln!(
                        self.out,
                        "-- session {session_id} by {} on {} at {}",
                        identity.as_deref().unwrap_or("?"),
                        connection.as_deref().unwrap_or("?"),
                        crate::fmt_time_us(*ts_us)
                    )?;
                }
            }
            Frame::Statement {
                seq,
                ts_us,
                text,
                decision,
                rule,
            } => {
                self.result = None;
                if !self.opts.bare {
                    writeln!(
                        self.out,
                        "\n-- #{seq} {} {decision}{}",
                        crate::fmt_time_us(*ts_us),
                        rule.as_deref()
                            .map(|r| format!(" (rule {r})"))
                            .unwrap_or_default()
                    )?;
                    writeln!(self.out, "=> {}", text.trim_end())?;
                }
            }
            Frame::Columns { names, align, .. } => {
                let mut right: Vec<bool> = align.chars().map(|c| c == 'r').collect();
                right.resize(names.len(), false);
                self.result = Some(Result {
                    names: names.clone(),
                    right,
                    rows: Vec::new(),
                });
            }
            Frame::Row { v, .. } => {
                if let Some(r) = &mut self.result {
                    r.rows.push(v.clone());
                }
            }
            Frame::Complete {
                tag,
                rows,
                recorded,
                truncated,
                duration_us,
                ..
            } => {
                match self.result.take() {
                    Some(r) => {
                        write_table(&mut self.out, &r)?;
                        if *truncated {
                            writeln!(
                                self.out,
                                "-- recording truncated: {recorded} of {rows} rows kept"
                            )?;
                        }
                        let n = if *truncated {
                            *rows
                        } else {
                            r.rows.len() as u64
                        };
                        writeln!(self.out, "({n} {})\n", if n == 1 { "row" } else { "rows" })?;
                    }
                    None => writeln!(self.out, "{tag}")?,
                }
                if !self.opts.bare {
                    writeln!(self.out, "Time: {:.3} ms", *duration_us as f64 / 1000.0)?;
                }
            }
            Frame::Error {
                message,
                sqlstate,
                duration_us,
                ..
            } => {
                self.result = None;
                writeln!(self.out, "ERROR:  {message}")?;
                if !self.opts.bare {
                    if !sqlstate.is_empty() {
                        writeln!(self.out, "-- SQLSTATE {sqlstate}")?;
                    }
                    if let Some(d) = duration_us {
                        writeln!(self.out, "Time: {:.3} ms", *d as f64 / 1000.0)?;
                    }
                }
            }
            Frame::Notice { message, .. } => writeln!(self.out, "NOTICE:  {message}")?,
            Frame::Dropped { frames, .. } => {
                writeln!(
                    self.out,
                    "-- {frames} recording frames were dropped here (the recorder could not keep up)"
                )?;
            }
            Frame::End { reason, ts_us } => {
                if !self.opts.bare {
                    writeln!(
                        self.out,
                        "\n-- session ended at {}: {reason}",
                        crate::fmt_time_us(*ts_us)
                    )?;
                }
            }
            Frame::TermOut { d, b64, .. } => match decode_bytes(d, *b64) {
                Some(bytes) => self.out.write_all(&bytes)?,
                None => writeln!(self.out, "\n-- damaged terminal frame left out")?,
            },
            // The terminal echoes what it shows of the input; the rest (a password at a
            // prompt) is not for the screen.
            Frame::TermIn { .. } | Frame::TermSize { .. } => {}
            Frame::Request {
                seq,
                ts_us,
                method,
                target,
                headers,
                body,
                body_b64,
                body_len,
                decision,
                rule,
            } => {
                if !self.opts.bare {
                    writeln!(
                        self.out,
                        "\n-- #{seq} {} {decision}{}",
                        crate::fmt_time_us(*ts_us),
                        rule.as_deref()
                            .map(|r| format!(" (rule {r})"))
                            .unwrap_or_default()
                    )?;
                }
                writeln!(self.out, "> {method} {target}")?;
                if !self.opts.bare {
                    for (name, value) in headers {
                        writeln!(self.out, "> {name}: {value}")?;
                    }
                    write_body(&mut self.out, body, *body_b64, *body_len)?;
                }
            }
            Frame::Response {
                status,
                headers,
                body,
                body_b64,
                body_len,
                duration_us,
                ..
            } => {
                writeln!(self.out, "< {status}")?;
                if !self.opts.bare {
                    for (name, value) in headers {
                        writeln!(self.out, "< {name}: {value}")?;
                    }
                    write_body(&mut self.out, body, *body_b64, *body_len)?;
                    writeln!(self.out, "Time: {:.3} ms", *duration_us as f64 / 1000.0)?;
                }
            }
            Frame::Unknown => {}
        }
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A body excerpt after its headers: the text, or a note for binary; and a note when the
/// recording kept only the beginning.
fn write_body<W: Write>(out: &mut W, body: &str, b64: bool, total: u64) -> io::Result<()> {
    if total == 0 {
        return Ok(());
    }
    let kept = match decode_bytes(body, b64) {
        Some(b) => b.len() as u64,
        None => 0,
    };
    if b64 {
        writeln!(out, "-- binary body, {kept} bytes recorded")?;
    } else if !body.is_empty() {
        out.write_all(body.as_bytes())?;
        if !body.ends_with('\n') {
            writeln!(out)?;
        }
    }
    if kept < total {
        writeln!(out, "-- body: {total} bytes, the first {kept} recorded")?;
    }
    Ok(())
}

/// Display width of a value: characters (wide glyphs count one; good enough for a transcript).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// psql's aligned format with the default border 1.
fn write_table<W: Write>(out: &mut W, r: &Result) -> io::Result<()> {
    let cols = r.names.len();
    let mut widths: Vec<usize> = r.names.iter().map(|n| width(n)).collect();
    for row in &r.rows {
        for (i, w) in widths.iter_mut().enumerate() {
            let cell = row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            for line in cell.split('\n') {
                *w = (*w).max(width(line));
            }
        }
    }
    // Header: names centred, every column followed by a space (psql keeps trailing spaces
    // on the header line).
    let mut line = String::new();
    for (i, name) in r.names.iter().enumerate() {
        let w = widths.get(i).copied().unwrap_or(0);
        let pad = w.saturating_sub(width(name));
        line.push(' ');
        line.push_str(&" ".repeat(pad / 2));
        line.push_str(name);
        line.push_str(&" ".repeat(pad - pad / 2));
        line.push(' ');
        if i + 1 < cols {
            line.push('|');
        }
    }
    writeln!(out, "{line}")?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    writeln!(out, "{}", rule.join("+"))?;
    for row in &r.rows {
        let cells: Vec<Vec<&str>> = (0..cols)
            .map(|i| {
                row.get(i)
                    .and_then(|v| v.as_deref())
                    .unwrap_or("")
                    .split('\n')
                    .collect()
            })
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        for l in 0..height {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let text = cell.get(l).copied().unwrap_or("");
                let more = l + 1 < cell.len();
                let last = i + 1 == cols;
                line.push(' ');
                let pad = w.saturating_sub(width(text));
                if r.right.get(i).copied().unwrap_or(false) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(text);
                } else {
                    line.push_str(text);
                    if !last || more {
                        line.push_str(&" ".repeat(pad));
                    }
                }
                if more {
                    line.push('+');
                } else if !last {
                    line.push(' ');
                }
                if !last {
                    line.push('|');
                }
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}
