//! Server-Sent Events, as Depot sends them: frames of `event:` and `data:` lines ended by a
//! blank line; lines starting with `:` are comments (keep-alives).

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`message` when absent, as the specification says).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Splits a byte stream into events. Feed chunks as they arrive; complete events come out.
#[derive(Debug, Default)]
pub struct Parser {
    buf: String,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.push_str(&String::from_utf8_lossy(chunk));
        if self.buf.contains('\r') {
            self.buf = self.buf.replace("\r\n", "\n").replace('\r', "\n");
        }
        let mut events = Vec::new();
        while let Some(end) = self.buf.find("\n\n") {
            let frame: String = self.buf.drain(..end + 2).collect();
            let mut event = None;
            let mut data: Option<String> = None;
            for line in frame.lines() {
                if line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = Some(value.to_owned()),
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    _ => {}
                }
            }
            // A frame of comments only (a keep-alive) is no event.
            if let Some(data) = data {
                events.push(Event {
                    event: event.unwrap_or_else(|| "message".into()),
                    data,
                });
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole_and_comments_are_skipped() {
        let stream = b": keep-alive\n\nevent: operation\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n";
        for cut in 0..stream.len() {
            let mut p = Parser::new();
            let mut events = p.feed(&stream[..cut]);
            events.extend(p.feed(&stream[cut..]));
            assert_eq!(
                events,
                vec![
                    Event {
                        event: "operation".into(),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        event: "message".into(),
                        data: "x\ny".into()
                    }
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        let mut p = Parser::new();
        let events = p.feed(b"event: operation\r\ndata: 1\r\n\r\n");
        assert_eq!(events[0].data, "1");
    }
}
