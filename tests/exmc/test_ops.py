"""Each op: forward against numpy, VJP against central finite differences, batched against single."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from dist_checks import numerical_gradient
from exmc import ops
from exmc.dist.base import sum_to_shape

RNG = np.random.default_rng(20261127)
#: Central differences (dist_checks.numerical_gradient) on O(1) inputs are accurate to ~1e-9; 1e-6
#: relative leaves headroom.
RTOL = 1e-6

# (op, argument shapes, options, positive arguments, reference numpy function)
CASES = [
    ("add", [(3,), ()], {}, False, np.add),
    ("sub", [(2, 3), (3,)], {}, False, np.subtract),
    ("mul", [(4,), (4,)], {}, False, np.multiply),
    ("div", [(3,), (2, 1)], {}, True, np.divide),
    ("pow", [(3,), (3,)], {}, True, np.power),
    ("neg", [(3,)], {}, False, np.negative),
    ("exp", [(2, 2)], {}, False, np.exp),
    ("log", [(3,)], {}, True, np.log),
    ("log1p", [(3,)], {}, True, np.log1p),
    ("expm1", [(3,)], {}, False, np.expm1),
    ("sqrt", [(3,)], {}, True, np.sqrt),
    ("square", [()], {}, False, np.square),
    ("sigmoid", [(4,)], {}, False, expit),
    ("softplus", [(4,)], {}, False, lambda x: np.log1p(np.exp(x))),
    ("tanh", [(4,)], {}, False, np.tanh),
    ("affine", [(3,), (), (3,)], {}, False, lambda a, b, x: a + b * x),
    ("sum", [(2, 3)], {"axis": None}, False, np.sum),
    ("sum", [(2, 3)], {"axis": 1}, False, lambda x: np.sum(x, axis=1)),
    ("sum", [(2, 3, 2)], {"axis": (0, 2)}, False, lambda x: np.sum(x, axis=(0, 2))),
    ("cumsum", [(5,)], {"axis": 0}, False, lambda x: np.cumsum(x, axis=0)),
    ("cumsum", [(2, 4)], {"axis": -1}, False, lambda x: np.cumsum(x, axis=-1)),
    ("concat", [(2,), (3,)], {"axis": 0}, False, lambda a, b: np.concatenate([a, b])),
    ("concat", [(2, 2), (2, 1)], {"axis": 1}, False, lambda a, b: np.concatenate([a, b], axis=1)),
    ("stack", [(3,), (3,), (3,)], {"axis": 0}, False, lambda *a: np.stack(a)),
    ("stack", [(2,), (2,)], {"axis": 1}, False, lambda *a: np.stack(a, axis=1)),
    ("matmul", [(4, 3), (3,)], {}, False, np.matmul),
    ("matmul", [(3,), (3, 2)], {}, False, np.matmul),
    ("matmul", [(2, 3), (3, 2)], {}, False, np.matmul),
    ("matmul", [(3,), (3,)], {}, False, np.matmul),
]
IDS = [f"{c[0]}{c[1]}{c[2] or ''}" for c in CASES]


def _inputs(shapes, positive):
    return [np.abs(RNG.normal(size=s)) + 0.5 if positive else RNG.normal(size=s) for s in shapes]


def _kernel(name, shapes, options, batched=None):
    op = ops.get(name)
    opts = {**op.options, **options}
    op.shape(shapes, [None] * len(shapes), opts)
    batched = batched or [False] * len(shapes)
    return op, op.kernel(shapes, batched, [True] * len(shapes), opts), opts


@pytest.mark.parametrize("name,shapes,options,positive,reference", CASES, ids=IDS)
def test_forward_matches_numpy(name, shapes, options, positive, reference):
    op, kernel, opts = _kernel(name, shapes, options)
    args = _inputs(shapes, positive)
    out = kernel.forward(*args)
    np.testing.assert_allclose(out, reference(*args), rtol=1e-12)
    assert np.shape(out) == op.shape(shapes, [None] * len(shapes), opts)


@pytest.mark.parametrize("name,shapes,options,positive,reference", CASES, ids=IDS)
def test_vjp_matches_central_differences(name, shapes, options, positive, reference):
    op, kernel, opts = _kernel(name, shapes, options)
    args = _inputs(shapes, positive)
    out = np.asarray(kernel.forward(*args))
    weights = RNG.normal(size=out.shape)
    grads = kernel.vjp(weights, out, *args)
    for position, (arg, grad) in enumerate(zip(args, grads)):
        grad = sum_to_shape(np.asarray(grad), arg.shape)

        def weighted_total(x, position=position):
            moved = list(args)
            moved[position] = x
            return float(np.sum(weights * kernel.forward(*moved)))
        numeric = numerical_gradient(weighted_total, arg)
        np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=RTOL, err_msg=f"{name} argument {position}")


@pytest.mark.parametrize("constant_first", [False, True])
@pytest.mark.parametrize("name,shapes,options,positive,reference", CASES, ids=IDS)
def test_batched_kernel_agrees_with_single(name, shapes, options, positive, reference, constant_first):
    """Arguments with a chain axis (C=3), optionally with the first argument held constant."""
    chains = 3
    op, single, opts = _kernel(name, shapes, options)
    batched_flags = [not (constant_first and i == 0 and len(shapes) > 1) for i in range(len(shapes))]
    _, batched, _ = _kernel(name, shapes, options, batched_flags)
    out_ndim = len(op.shape(shapes, [None] * len(shapes), opts))
    per_chain = [_inputs(shapes, positive) for _ in range(chains)]
    if constant_first and len(shapes) > 1:
        for chain in per_chain[1:]:
            chain[0] = per_chain[0][0]
    stacked = []
    for i, shape in enumerate(shapes):
        if not batched_flags[i]:
            stacked.append(per_chain[0][i])
            continue
        x = np.stack([chain[i] for chain in per_chain])
        if op.elementwise:  # the model's rank alignment: (C,) + core -> (C, 1, ..) + core
            x = x.reshape((chains,) + (1,) * (out_ndim - len(shape)) + shape)
        stacked.append(x)
    out = np.asarray(batched.forward(*stacked))
    weights = RNG.normal(size=out.shape)
    grads = batched.vjp(weights, out, *stacked)
    for c, args in enumerate(per_chain):
        single_out = np.asarray(single.forward(*args))
        np.testing.assert_allclose(out[c], single_out, rtol=1e-12)
        single_grads = single.vjp(weights[c], single_out, *args)
        for i, flag in enumerate(batched_flags):
            if not flag:
                continue
            got = sum_to_shape(np.asarray(grads[i]), stacked[i].shape)[c].reshape(shapes[i])
            np.testing.assert_allclose(got, sum_to_shape(np.asarray(single_grads[i]), shapes[i]), rtol=1e-10, atol=1e-12)


def test_index_gather_and_scatter_gradient():
    op = ops.get("index")
    idx = np.array([0, 2, 2, 1, 0, 2])
    x = RNG.normal(size=3)
    shape = op.shape([(3,), idx.shape], [None, idx], {})
    assert shape == (6,)
    kernel = op.kernel([(3,), idx.shape], [False, False], [True, False], {})
    np.testing.assert_array_equal(kernel.forward(x, idx), x[idx])
    g = RNG.normal(size=6)
    expected = np.array([g[idx == k].sum() for k in range(3)])
    np.testing.assert_allclose(kernel.vjp(g, None, x, idx)[0], expected)
    batched = op.kernel([(3,), idx.shape], [True, False], [True, False], {})
    xs = RNG.normal(size=(4, 3))
    np.testing.assert_array_equal(batched.forward(xs, idx), xs[:, idx])
    gs = RNG.normal(size=(4, 6))
    expected = np.stack([[gs[c][idx == k].sum() for k in range(3)] for c in range(4)])
    np.testing.assert_allclose(batched.vjp(gs, None, xs, idx)[0], expected)


def test_index_of_a_matrix_rows():
    op = ops.get("index")
    idx = np.array([1, 1, 0])
    x = RNG.normal(size=(2, 3))
    kernel = op.kernel([(2, 3), idx.shape], [False, False], [True, False], {})
    np.testing.assert_array_equal(kernel.forward(x, idx), x[idx])
    g = RNG.normal(size=(3, 3))
    np.testing.assert_allclose(kernel.vjp(g, None, x, idx)[0], np.stack([g[2], g[0] + g[1]]))


@pytest.mark.parametrize("name,shapes,options,message", [
    ("matmul", [(3, 2), (3,)], {}, "inner dimensions"),
    ("matmul", [(2, 2, 2), (2,)], {}, "vectors and matrices"),
    ("concat", [(2, 2), (3, 3)], {"axis": 0}, "incompatible"),
    ("stack", [(2,), (3,)], {"axis": 0}, "all equal"),
    ("sum", [(2,)], {"axis": 1}, "out of range"),
    ("cumsum", [()], {"axis": 0}, "at least one dimension"),
    ("add", [(2,), (3,)], {}, "do not broadcast"),
])
def test_shape_rules_reject_misfits(name, shapes, options, message):
    op = ops.get(name)
    with pytest.raises(ValueError, match=message):
        op.shape(shapes, [None] * len(shapes), {**op.options, **options})


def test_every_op_of_the_issue_exists():
    wanted = {"add", "sub", "mul", "div", "neg", "matmul", "exp", "log", "log1p", "expm1", "sqrt", "square",
              "pow", "sigmoid", "softplus", "tanh", "sum", "cumsum", "index", "concat", "stack", "affine"}
    assert wanted <= set(ops.OPS)
