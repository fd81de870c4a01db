//! What the session reports: resource and error records, counted exactly,
//! printed within the flood limit, kept up to a limit, and built only when
//! one of those needs them.

use super::*;

impl<S: ResourceSink> Session<'_, '_, S> {
    pub(super) fn error(&mut self, kind: ErrorKind, push_id: u64, raw_path: Option<&[u8]>, message: String) {
        let error = ErrorRecord { kind, push_id: Some(push_id), path: raw_path.map(lossy), message };
        self.push_error(error);
    }

    /// Reports a network or other run-level error.
    pub(crate) fn run_error(&mut self, kind: ErrorKind, message: String) {
        self.push_error(ErrorRecord { kind, push_id: None, path: None, message });
    }

    pub(super) fn push_error(&mut self, error: ErrorRecord) {
        self.tally.errors += 1;
        match error.kind {
            ErrorKind::Io => self.tally.io_errors += 1,
            ErrorKind::Network | ErrorKind::Input => self.tally.input_errors += 1,
            _ => {}
        }
        self.reporter.emit_limited(|| Record::Error(error.clone()));
        if self.errors.len() < MAX_RETAINED_RECORDS {
            self.errors.push(error);
        }
    }

    /// Reports a resource record, counts it, and keeps it (up to a limit).
    pub(super) fn push_record(&mut self, record: ResourceRecord) {
        self.push_record_with(record.status, record.push_id, || record);
    }

    /// [`push_record`](Self::push_record) for a record `make` builds, only if
    /// it is needed: printed, kept, or its name remembered. (Under a flood of
    /// unfinished pushes none is, once the limits are reached.)
    pub(super) fn push_record_with(
        &mut self,
        status: ResourceStatus,
        push_id: u64,
        make: impl FnOnce() -> ResourceRecord,
    ) {
        self.tally.settled += 1;
        let record = match status {
            ResourceStatus::Complete => {
                let record = make();
                tracing::debug!(push_id, path = record.path.as_deref(), bytes = record.bytes, "resource written");
                self.tally.complete += 1;
                self.tally.bytes_written += record.bytes;
                if record.copies > 1 {
                    self.tally.merged += 1;
                }
                if record.repair_bytes > 0 {
                    self.tally.repaired += 1;
                    self.tally.repaired_bytes += record.repair_bytes;
                }
                self.reporter.emit(&Record::Resource(record.clone()));
                record
            }
            status => {
                let mut make = Some(make);
                let mut built = None;
                match status {
                    ResourceStatus::Refused => self.tally.refused += 1,
                    ResourceStatus::Failed => self.tally.failed += 1,
                    _ => {
                        // This push is reported: its stream, if it turns up
                        // headless, is not another loss.
                        if self.accounted.len() < MAX_NAMES * 4 {
                            self.accounted.insert(push_id);
                        }
                        // One count and one line per resource, however many
                        // copies failed (a copy that never got its response
                        // headers is judged after its resource).
                        if self.tally.incomplete_names.len() >= MAX_NAMES {
                            self.tally.incomplete += 1;
                        } else {
                            let Some(make) = make.take() else { return };
                            let record = built.insert(make());
                            if self.tally.incomplete_names.insert(record.name.clone()) {
                                self.tally.incomplete += 1;
                            } else if !record.name.is_empty() {
                                self.repeats += 1;
                                return;
                            }
                        }
                    }
                }
                let printed = self.reporter.admit_limited();
                let kept = self.resources.len() < MAX_RETAINED_RECORDS;
                if !printed && !kept {
                    return;
                }
                let record = match (built, make) {
                    (Some(record), _) => record,
                    (None, Some(make)) => make(),
                    (None, None) => return,
                };
                tracing::debug!(
                    push_id,
                    status = status.word(),
                    path = record.path.as_deref(),
                    reason = record.reason.as_deref(),
                    "resource not written"
                );
                if printed {
                    self.reporter.emit(&Record::Resource(record.clone()));
                }
                record
            }
        };
        if self.resources.len() < MAX_RETAINED_RECORDS {
            self.resources.push(record);
        }
    }

    pub(super) fn record_for(r: &Resource) -> ResourceRecord {
        let ((missing, missing_ranges), missing_from, body_len) = match (&r.last, r.length) {
            (Some(last), _) if r.copies == 1 => (report::missing_list(&last.missing), last.missing_from, last.body_len),
            (_, Some(len)) => (report::missing_list(&r.have.gaps(0..len)), None, len),
            (last, None) => {
                let from = r.have.contiguous_prefix();
                ((Vec::new(), 0), Some(from), last.as_ref().map_or(from, |l| l.body_len))
            }
        };
        ResourceRecord {
            push_id: r.first_push,
            status: ResourceStatus::Incomplete,
            complete: false,
            path: r.raw_path.as_deref().map(lossy),
            file: None,
            bytes: r.have.covered(),
            body_len,
            sha256: None,
            missing,
            missing_ranges,
            copies: r.copies as u64,
            fec_bytes: r.fec_bytes,
            repair_bytes: r.repair_bytes,
            completed_by: None,
            missing_from,
            reason: None,
            name: r.rel.as_os_str().as_encoded_bytes().to_vec(),
        }
    }

    /// Reports a resource's final record.
    pub(super) fn settle(
        &mut self,
        r: &Resource,
        status: ResourceStatus,
        reason: Option<String>,
        written: Option<(String, [u8; 32], u64)>,
    ) {
        let make = || {
            let mut record = Self::record_for(r);
            record.status = status;
            record.reason = reason;
            if let Some((file, sha, bytes)) = written {
                record.complete = true;
                record.file = Some(file);
                record.sha256 = Some(hex::encode(sha));
                record.bytes = bytes;
                record.body_len = bytes;
                record.missing.clear();
                record.missing_ranges = 0;
                record.missing_from = None;
                record.completed_by = Some(if r.repair_bytes > 0 {
                    "repair"
                } else if r.fec_bytes > 0 {
                    "fec"
                } else {
                    "multicast"
                });
            }
            if status == ResourceStatus::Refused {
                record.name = r.raw_path.clone().unwrap_or_default();
            }
            record
        };
        self.push_record_with(status, r.first_push, make);
    }

    /// The record of a push that delivered into no resource: named by its
    /// relative path (else its `:path`), nothing written.
    pub(super) fn unmatched_record(state: &PushState, summary: &PushSummary, status: ResourceStatus) -> ResourceRecord {
        let (missing, missing_ranges) = report::missing_list(&summary.missing);
        ResourceRecord {
            push_id: summary.push_id,
            status,
            complete: false,
            path: state.raw_path.as_deref().map(lossy),
            file: None,
            bytes: 0,
            body_len: summary.body_len,
            sha256: None,
            missing,
            missing_ranges,
            copies: 1,
            fec_bytes: 0,
            repair_bytes: 0,
            completed_by: None,
            missing_from: summary.missing_from,
            reason: None,
            name: match &state.rel {
                Some(rel) => rel.as_os_str().as_encoded_bytes().to_vec(),
                None => state.raw_path.clone().unwrap_or_default(),
            },
        }
    }
}
