"""The symbolic API, as on the MXNet slides: declare Variables, build an expression,
compile it once, call it with named inputs; then look at the graph it became."""

import numpy as np

import graphc as gc

A = gc.Variable('A')
B = gc.Variable('B')
C = B * A
D = C + 1
f = gc.compile(D)
print("D(A=1, B=2) =", f(A=np.ones(10), B=np.ones(10) * 2))

# A slightly larger expression, and the graph it compiles to for one input signature.
x = gc.Variable('x')
w = gc.Variable('w')
y = gc.softmax(gc.relu(x @ w), axis=-1)
g = gc.compile(y)
rng = np.random.default_rng(0)
xv = rng.standard_normal((2, 3)).astype(np.float32)
wv = rng.standard_normal((3, 4)).astype(np.float32)
print(g.graph(x=xv, w=wv))
print("rows sum to", g(x=xv, w=wv).numpy().sum(axis=1))
