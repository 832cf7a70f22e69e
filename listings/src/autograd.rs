//! A scalar automatic differentiation engine, small enough to read in one
//! sitting: the idea behind every training framework, for intuition.
//!
//! Each [`Value`] is a number that remembers how it was made: from which
//! other values, by which operation. Calling [`Value::backward`] on a final
//! result (a loss) walks that record backwards and fills in, for every value
//! that went into it, the derivative of the result with respect to that
//! value: its *gradient*. Each step applies the chain rule once: if `c = a *
//! b`, then a small change in `a` changes `c` by `b` times as much, so `a`
//! receives `b * (gradient of c)`.
//!
//! The book's model does not use this engine: a GPT has hundreds of
//! thousands of numbers, and one object per number is far too slow. Chapter
//! 5 writes the same chain rule by hand, one layer at a time, over whole
//! arrays. This file is the picture to keep in mind while reading those.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

// ANCHOR: value
/// A number in a computation graph, with its gradient.
#[derive(Clone)]
pub struct Value(Rc<Node>);

struct Node {
    data: f64,
    grad: Cell<f64>,
    op: Op,
}

/// How a value was made, and from what.
enum Op {
    Input,
    Add(Value, Value),
    Mul(Value, Value),
    Pow(Value, f64),
    Exp(Value),
    Ln(Value),
    Tanh(Value),
}
// ANCHOR_END: value

impl Value {
    /// A value that is an input to the computation (a weight, a data point).
    pub fn new(data: f64) -> Value {
        Value(Rc::new(Node {
            data,
            grad: Cell::new(0.0),
            op: Op::Input,
        }))
    }

    fn from_op(data: f64, op: Op) -> Value {
        Value(Rc::new(Node {
            data,
            grad: Cell::new(0.0),
            op,
        }))
    }

    /// The number itself.
    pub fn data(&self) -> f64 {
        self.0.data
    }

    /// d(result)/d(self), filled in by [`Value::backward`] on the result.
    pub fn grad(&self) -> f64 {
        self.0.grad.get()
    }

    /// `self` raised to a constant power.
    pub fn pow(&self, k: f64) -> Value {
        Value::from_op(self.data().powf(k), Op::Pow(self.clone(), k))
    }

    /// e raised to `self`.
    pub fn exp(&self) -> Value {
        Value::from_op(self.data().exp(), Op::Exp(self.clone()))
    }

    /// The natural logarithm of `self`.
    pub fn ln(&self) -> Value {
        Value::from_op(self.data().ln(), Op::Ln(self.clone()))
    }

    /// The hyperbolic tangent of `self`.
    pub fn tanh(&self) -> Value {
        Value::from_op(self.data().tanh(), Op::Tanh(self.clone()))
    }

    // ANCHOR: backward
    /// Fills in the gradient of `self` with respect to every value it was
    /// computed from.
    ///
    /// Values are visited in reverse topological order, so that a value's
    /// gradient is complete (every use of it has reported back) before it is
    /// passed on to the values it was made from.
    pub fn backward(&self) {
        let order = self.topological_order();
        for v in &order {
            v.0.grad.set(0.0);
        }
        self.0.grad.set(1.0); // d(self)/d(self)
        for v in order.iter().rev() {
            let g = v.grad();
            match &v.0.op {
                Op::Input => {}
                Op::Add(a, b) => {
                    a.add_grad(g);
                    b.add_grad(g);
                }
                Op::Mul(a, b) => {
                    a.add_grad(b.data() * g);
                    b.add_grad(a.data() * g);
                }
                Op::Pow(a, k) => a.add_grad(k * a.data().powf(k - 1.0) * g),
                Op::Exp(a) => a.add_grad(v.data() * g),
                Op::Ln(a) => a.add_grad(g / a.data()),
                Op::Tanh(a) => a.add_grad((1.0 - v.data() * v.data()) * g),
            }
        }
    }
    // ANCHOR_END: backward

    fn add_grad(&self, g: f64) {
        self.0.grad.set(self.0.grad.get() + g);
    }

    /// Every value `self` depends on, each after all of its own inputs.
    fn topological_order(&self) -> Vec<Value> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        // An explicit stack instead of recursion, so deep graphs cannot
        // overflow the call stack. `true` means "inputs already pushed".
        let mut stack = vec![(self.clone(), false)];
        while let Some((v, expanded)) = stack.pop() {
            let id = Rc::as_ptr(&v.0);
            if expanded {
                order.push(v);
                continue;
            }
            if !seen.insert(id) {
                continue;
            }
            stack.push((v.clone(), true));
            for input in v.inputs() {
                stack.push((input.clone(), false));
            }
        }
        order
    }

    fn inputs(&self) -> Vec<&Value> {
        match &self.0.op {
            Op::Input => vec![],
            Op::Add(a, b) | Op::Mul(a, b) => vec![a, b],
            Op::Pow(a, _) | Op::Exp(a) | Op::Ln(a) | Op::Tanh(a) => vec![a],
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value(data={:.4}, grad={:.4})", self.data(), self.grad())
    }
}

impl std::ops::Add for &Value {
    type Output = Value;
    fn add(self, rhs: &Value) -> Value {
        Value::from_op(self.data() + rhs.data(), Op::Add(self.clone(), rhs.clone()))
    }
}

impl std::ops::Mul for &Value {
    type Output = Value;
    fn mul(self, rhs: &Value) -> Value {
        Value::from_op(self.data() * rhs.data(), Op::Mul(self.clone(), rhs.clone()))
    }
}

impl std::ops::Neg for &Value {
    type Output = Value;
    fn neg(self) -> Value {
        self * &Value::new(-1.0)
    }
}

impl std::ops::Sub for &Value {
    type Output = Value;
    fn sub(self, rhs: &Value) -> Value {
        self + &(-rhs)
    }
}

impl std::ops::Div for &Value {
    type Output = Value;
    fn div(self, rhs: &Value) -> Value {
        self * &rhs.pow(-1.0)
    }
}

// ANCHOR: numerical_grad
/// The derivative of `f` at `x` by central finite differences:
/// (f(x + h) - f(x - h)) / 2h, which is accurate to about h².
pub fn numerical_grad(f: impl Fn(f64) -> f64, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}
// ANCHOR_END: numerical_grad

#[cfg(test)]
mod tests {
    use super::*;

    /// f(a, b) = tanh(a * b + exp(a)) / (b * b), built from every operation.
    fn f(a: &Value, b: &Value) -> Value {
        let inner = &(a * b) + &a.exp();
        &inner.tanh() / &(b * b)
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (a0, b0) = (0.3, -1.7);
        let a = Value::new(a0);
        let b = Value::new(b0);
        let out = f(&a, &b);
        out.backward();
        let fa = |x: f64| f(&Value::new(x), &Value::new(b0)).data();
        let fb = |x: f64| f(&Value::new(a0), &Value::new(x)).data();
        let (na, nb) = (numerical_grad(fa, a0, 1e-5), numerical_grad(fb, b0, 1e-5));
        assert!((a.grad() - na).abs() < 1e-8, "{} vs {na}", a.grad());
        assert!((b.grad() - nb).abs() < 1e-8, "{} vs {nb}", b.grad());
    }

    #[test]
    fn a_value_used_twice_gets_both_contributions() {
        // y = x * x + x: dy/dx = 2x + 1.
        let x = Value::new(3.0);
        let y = &(&x * &x) + &x;
        y.backward();
        assert_eq!(y.data(), 12.0);
        assert_eq!(x.grad(), 7.0);
    }

    #[test]
    fn softmax_cross_entropy_gradient_is_p_minus_one_hot() {
        let logits: Vec<Value> = [2.0, 1.0, 0.1].into_iter().map(Value::new).collect();
        let exps: Vec<Value> = logits.iter().map(Value::exp).collect();
        let sum = exps.iter().skip(1).fold(exps[0].clone(), |s, e| &s + e);
        let target = 0;
        let loss = -&(&exps[target] / &sum).ln();
        loss.backward();
        for (i, l) in logits.iter().enumerate() {
            let p = exps[i].data() / sum.data();
            let want = p - if i == target { 1.0 } else { 0.0 };
            assert!((l.grad() - want).abs() < 1e-12);
        }
    }

    #[test]
    fn backward_twice_gives_the_same_gradients() {
        let a = Value::new(0.5);
        let y = &a.tanh() * &a;
        y.backward();
        let g = a.grad();
        y.backward();
        assert_eq!(a.grad(), g);
    }

    #[test]
    fn long_chains_are_walked_without_recursion() {
        let x = Value::new(1.0);
        let mut y = x.clone();
        for _ in 0..10_000 {
            y = &y + &x;
        }
        y.backward();
        assert_eq!(x.grad(), 10_001.0);
    }
}
