//! The kernel's ready line, `batos ready endpoint=... events=... metrics=...`:
//! the one line `batos run` prints on stdout once it serves, naming the
//! addresses it actually bound. The kernel prints it with this type; the
//! steward and the benchmarks read it with it.

use std::fmt;

/// What the ready line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    /// The commands endpoint actually bound.
    pub endpoint: String,
    /// The events endpoint actually bound.
    pub events: String,
    /// The metrics address, or `off`.
    pub metrics: String,
}

impl ReadyLine {
    /// Parses a ready line; `None` for any other line (or one naming no
    /// commands endpoint).
    pub fn parse(line: &str) -> Option<ReadyLine> {
        let mut words = line.split_whitespace();
        if words.next() != Some("batos") || words.next() != Some("ready") {
            return None;
        }
        let mut ready = ReadyLine {
            endpoint: String::new(),
            events: String::new(),
            metrics: String::new(),
        };
        for word in words {
            match word.split_once('=') {
                Some(("endpoint", v)) => ready.endpoint = v.to_string(),
                Some(("events", v)) => ready.events = v.to_string(),
                Some(("metrics", v)) => ready.metrics = v.to_string(),
                _ => {}
            }
        }
        (!ready.endpoint.is_empty()).then_some(ready)
    }
}

impl fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batos ready endpoint={} events={} metrics={}",
            self.endpoint, self.events, self.metrics
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_line_round_trips() {
        let ready = ReadyLine {
            endpoint: "tcp://127.0.0.1:5555".into(),
            events: "tcp://127.0.0.1:5556".into(),
            metrics: "off".into(),
        };
        assert_eq!(ReadyLine::parse(&ready.to_string()), Some(ready));
    }

    #[test]
    fn other_lines_are_not_ready_lines() {
        assert_eq!(ReadyLine::parse("batos ready"), None);
        assert_eq!(ReadyLine::parse("batos steward ready endpoint=x"), None);
        assert_eq!(ReadyLine::parse("something else"), None);
    }
}
