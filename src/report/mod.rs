//! `aiwatch report`: the SOC 2 evidence report over a period of the archive.
//!
//! Every figure is computed with SQL over the archive's listing tables and the
//! policy tables ([`figures`]), so `aiwatch query --archive` gives the same
//! numbers; [`html`] draws them as one self-contained page (inline SVG, no
//! scripts, fonts or requests) that prints to PDF, and the JSON form is
//! [`Report`] as it is.

pub mod figures;
pub mod html;
pub mod svg;

pub use figures::{build, Report, ReportInput};

/// SOC 2 criteria the built-in pack maps to, and what each asks, in the
/// words of the 2017 Trust Services Criteria (shortened).
pub const CRITERIA: &[(&str, &str)] = &[
    ("CC6.1", "Logical access security over protected information assets"),
    ("CC6.3", "Access is authorized, modified or removed by role and least privilege"),
    ("CC6.7", "Transmission and movement of information is restricted to authorized parties"),
    ("CC7.2", "System components are monitored for anomalies that indicate malicious acts or errors"),
    ("CC8.1", "Changes to infrastructure and software are authorized, tested, approved and documented"),
    ("CC9.2", "Risks from vendors and business partners are assessed and managed"),
    ("C1.1", "Confidential information is identified and protected"),
    ("C1.2", "Confidential information is disposed of to meet objectives"),
    ("P4.2", "Personal information is retained only as long as needed"),
    ("P4.3", "Personal information is securely disposed of"),
    ("P6.1", "Personal information is disclosed to third parties only for identified purposes"),
];
