//! Jobs: containers of an app that run to completion (brief, part 2, "Jobs").
//!
//! So far the pure part: [`output`], the last bytes a job keeps of what it wrote. The claim, the
//! runner on `caas_deployer::Task`, the table and the API are the rest of issue #14.

pub mod output;
