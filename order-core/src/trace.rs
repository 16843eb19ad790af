//! The trace an order belongs to: a W3C Trace Context `traceparent`, carried with the order and
//! its payment jobs so the work done for it later, in another process, joins the trace of the
//! request that placed it.
//!
//! The core only carries the value; adapters decide where it comes from (the current span of
//! an OpenTelemetry-instrumented request) and what it becomes (the parent of a worker's span,
//! a header on a call to the gateway). Without tracing set up, orders carry none.

use crate::hex::encode as hex;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name under which a [`TraceParent`] travels: the W3C header, and the field of a
/// payment job that carries it.
pub const TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent` (version `00`): a trace id, the id of the span that is the parent,
/// and the trace flags. Parsing accepts only a valid value (neither id all zeros, lowercase
/// hex, version not `ff`); a later version's value is read by its version-`00` fields, as the
/// recommendation asks, and written back as version `00`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent: {0}")]
pub struct InvalidTraceParent(&'static str);

/// How long a version-`00` `traceparent` is: `00-` + 32 + `-` + 16 + `-` + 2.
const LEN: usize = 55;

impl TraceParent {
    /// A value from its parts; `None` if either id is all zeros (invalid by the standard).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The trace's id.
    pub const fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent span's id.
    pub const fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags (bit 0: sampled).
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller recorded its part of the trace.
    pub const fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lowercase hex digits (as logs and trace back ends show it).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The parent span's id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex(&self.parent_id)
    }
}

/// Reads `out.len()` bytes from lowercase hex digits.
fn unhex(digits: &str, out: &mut [u8]) -> Result<(), InvalidTraceParent> {
    let bytes = digits.as_bytes();
    if bytes.len() != out.len() * 2 {
        return Err(InvalidTraceParent("a field has the wrong length"));
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(InvalidTraceParent("not lowercase hex")),
    };
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(bytes[2 * i])? << 4 | digit(bytes[2 * i + 1])?;
    }
    Ok(())
}

impl FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mut version = [0u8; 1];
        unhex(s.get(..2).unwrap_or(""), &mut version)?;
        match version[0] {
            0xff => return Err(InvalidTraceParent("version ff")),
            0 if s.len() != LEN => return Err(InvalidTraceParent("wrong length")),
            // A later version: its first fields are read as version 00's, and what follows
            // must be separated from them.
            _ if s.len() < LEN || (s.len() > LEN && s.as_bytes()[LEN] != b'-') => {
                return Err(InvalidTraceParent("wrong length"));
            }
            _ => {}
        }
        let s = &s[..LEN];
        let fields: Vec<&str> = s.split('-').collect();
        let [_, trace, parent, flags] = fields[..] else {
            return Err(InvalidTraceParent("expected four fields"));
        };
        let (mut trace_id, mut parent_id, mut flag) = ([0; 16], [0; 8], [0; 1]);
        unhex(trace, &mut trace_id)?;
        unhex(parent, &mut parent_id)?;
        unhex(flags, &mut flag)?;
        Self::new(trace_id, parent_id, flag[0]).ok_or(InvalidTraceParent("an id is all zeros"))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

impl fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceParent({self})")
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_reads_and_writes_back_unchanged() {
        let parent: TraceParent = EXAMPLE.parse().unwrap();
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.parent_id_hex(), "00f067aa0ba902b7");
        assert_eq!(
            parent.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parent.sampled());
        let unsampled: TraceParent = EXAMPLE.replace("-01", "-00").parse().unwrap();
        assert!(!unsampled.sampled());
        assert_eq!(
            serde_json::to_string(&parent).unwrap(),
            format!("\"{EXAMPLE}\"")
        );
        assert_eq!(
            serde_json::from_str::<TraceParent>(&format!("\"{EXAMPLE}\"")).unwrap(),
            parent
        );
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?} was accepted");
        }
        assert!(serde_json::from_str::<TraceParent>("\"nope\"").is_err());
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields_and_written_as_version_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(later.parse::<TraceParent>().unwrap().to_string(), EXAMPLE);
    }
}
