//! What a run ends with: its exit status and its records.

use super::*;

/// The exit status of a run (see the binary's help).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything promised was written.
    Success,
    /// 1: a resource was incomplete or refused, a push was unpromised, or
    /// nothing at all was received (e.g. a wrong session ID).
    Incomplete,
    /// 2: bad usage.
    Usage,
    /// 3: the input is unreadable or malformed (offline), or the network
    /// failed (live).
    BadInput,
    /// 4: output directory I/O error.
    OutputError,
}

impl ExitStatus {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Incomplete => 1,
            ExitStatus::Usage => 2,
            ExitStatus::BadInput => 3,
            ExitStatus::OutputError => 4,
        }
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit status.
    pub status: ExitStatus,
    /// One record per resource, in the order they were settled.
    pub resources: Vec<ResourceRecord>,
    /// Every error reported.
    pub errors: Vec<ErrorRecord>,
    /// Unpromised push streams, `(push_id, stream_id)`.
    pub unpromised: Vec<(u64, u64)>,
    /// The final counters (`None` if the input or the output directory was unusable).
    pub summary: Option<SummaryRecord>,
}

impl Outcome {
    /// An outcome for a run that could not start.
    pub(crate) fn fatal(reporter: &mut Reporter<'_>, kind: ErrorKind, message: String, status: ExitStatus) -> Self {
        let error = ErrorRecord { kind, push_id: None, path: None, message };
        reporter.emit(&Record::Error(error.clone()));
        Outcome { status, resources: Vec::new(), errors: vec![error], unpromised: Vec::new(), summary: None }
    }
}
