//! Power of two choices.
use crate::backend::Backend;

#[derive(Debug)]
pub struct RandomTwo {}

impl RandomTwo {
    pub fn new(_backends: &[Backend]) -> Self {
        RandomTwo {}
    }

    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        (0..backends.len()).find(|&i| eligible(i))
    }
}
