//! dimse
