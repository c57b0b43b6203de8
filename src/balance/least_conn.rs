//! Least connections.
use crate::backend::Backend;

#[derive(Debug)]
pub struct LeastConn {}

impl LeastConn {
    pub fn new(_backends: &[Backend]) -> Self {
        LeastConn {}
    }

    pub fn pick(&self, backends: &[Backend], eligible: impl Fn(usize) -> bool) -> Option<usize> {
        (0..backends.len()).find(|&i| eligible(i))
    }
}
