//! TEMPORARY stand-in (F32 only) until the quant branch lands. Not committed.
#![allow(missing_docs)]
use crate::parallel::{par_mat_mul, sum_zip};
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    F32,
    Int8,
    Q8_0,
    Q4_0,
}
#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error("x")]
    X,
}
#[derive(Clone, Debug)]
pub struct WeightMatrix {
    w: Array2<f32>,
}
impl WeightMatrix {
    pub fn from_rows(m: ArrayView2<f32>, _f: Format) -> Result<Self, QuantError> {
        Ok(Self {
            w: m.as_standard_layout().into_owned(),
        })
    }
    pub fn from_linear(w: ArrayView2<f32>, f: Format) -> Result<Self, QuantError> {
        Self::from_rows(w.t(), f)
    }
    pub fn rows(&self) -> usize {
        self.w.nrows()
    }
    pub fn cols(&self) -> usize {
        self.w.ncols()
    }
    pub fn format(&self) -> Format {
        Format::F32
    }
    pub fn bytes(&self) -> usize {
        self.w.len() * 4
    }
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        for (o, r) in out.iter_mut().zip(self.w.rows()) {
            *o = sum_zip(r.as_slice().unwrap(), x, |a, b| a * b);
        }
    }
    pub fn matmul(&self, x: ArrayView2<f32>, mut out: ArrayViewMut2<f32>) {
        par_mat_mul(1.0, &x, &self.w.t(), 0.0, &mut out);
    }
    pub fn row(&self, r: usize, out: &mut [f32]) {
        out.copy_from_slice(self.w.row(r).as_slice().unwrap());
    }
    pub fn dequantize(&self) -> Array2<f32> {
        self.w.clone()
    }
}
