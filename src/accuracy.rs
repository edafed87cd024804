//! The accuracy contract: how far a GPU result may be from the f64 [oracle](crate::oracle).
//!
//! Placeholder until calibrated.
