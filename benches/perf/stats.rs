//! Order statistics over samples in microseconds.

/// Sorted samples, in microseconds.
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Samples(v)
    }

    /// The q-quantile (nearest rank), 0.0..=1.0.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    pub fn p99(&self) -> f64 {
        self.quantile(0.99)
    }

    pub fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `min / median / p99 / max` in the given unit.
    pub fn line(&self, scale: f64, unit: &str) -> String {
        format!(
            "min {:.3} {unit}  median {:.3} {unit}  p99 {:.3} {unit}  max {:.3} {unit}  (n={})",
            self.min() / scale,
            self.median() / scale,
            self.p99() / scale,
            self.max() / scale,
            self.len()
        )
    }
}
