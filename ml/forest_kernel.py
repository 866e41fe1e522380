"""The compiled forest's trees as machine code (LLVM, through llvmlite), for batch scoring.

A tree walked from tables (node -> feature, threshold, children) costs a chain of dependent
loads and a hard-to-predict branch at every level. Here every tree becomes code instead, as tree
compilers do (lleaves for LightGBM, treelite's C back end): a node is a compare of the row's
feature against the threshold written in as a constant, and a branch to the child's code; the
row's features stay in registers and cache across the trees. One function walks rows
[start, stop) through every tree - 3-4x faster than the table walk it replaced (numba) on a
million rows.

Compiled without optimisation (LLVM's fast instruction selection and register allocation,
no IR passes): ~0.1 s for the champion's 27 trees, ~0.2 s for 100. The optimising back end
made the walk ~40 % faster but took 0.7 s for 27 trees and 16 s for 100 (its register
allocation grows faster than the function) - more than it saves below ten million rows.

The arithmetic is ml.compiled's, step for step, so the raw scores are bit for bit
scikit-learn's (tests/ml/test_compiled.py compares them):
- a split goes right when `value > threshold` (`fcmp ogt`), or, at a node whose missing values go
  right, also when the value is NaN (`fcmp ugt`: unordered or greater);
- the leaf values are added to the baseline tree after tree in scikit-learn's order, in plain
  IEEE additions (no fast-math flags, so nothing is reordered); thresholds and leaf values are
  written as their exact 64-bit patterns.

Only batch scoring comes here (ml.compiled sends inputs of at least KERNEL_ROWS rows, and the
blocks that ml.batch's threads score one at a time): the code is compiled the first time a
forest is walked in a process and kept while the forest lives; the API's one-row scoring never
imports llvmlite. The call releases the GIL (ctypes), so slices of rows are walked by plain
threads, one per usable core.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ml.cores import usable_cores

if TYPE_CHECKING:
    from ml.compiled import Forest

SLICE_ROWS = 65_536  # rows per piece of work: small enough for the threads to share evenly

# walk(x, out, width, start, stop): rows [start, stop) of the row-major float64 matrix x (width
# columns) into out[start:stop]
_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                              ctypes.c_int64, ctypes.c_int64)


@dataclass(frozen=True)
class Machine:
    """A forest's compiled walk; `engine` owns the code `walk` points into."""

    engine: object
    walk: Callable[[int, int, int, int, int], None]
    width: int  # the fewest columns a row must have (the largest feature index + 1)


_machines: weakref.WeakKeyDictionary[Forest, Machine] = weakref.WeakKeyDictionary()
_compiling = threading.Lock()


def machine(forest: Forest) -> Machine:
    """The forest's walk, compiled on first use and kept as long as the forest is."""
    with _compiling:
        found = _machines.get(forest)
        if found is None:
            found = _machines[forest] = _compile(forest)
        return found


def raw_scores(forest: Forest, x: np.ndarray) -> np.ndarray:
    """forest.raw(x), in machine code: slices of SLICE_ROWS rows taken in turn by one thread per
    usable core (a core that falls behind - another process on it - takes fewer)."""
    compiled, x = _checked(forest, x)
    n = len(x)
    out = np.empty(n)
    starts = range(0, n, SLICE_ROWS)
    with ThreadPoolExecutor(max_workers=max(1, min(usable_cores(), len(starts)))) as pool:
        list(pool.map(lambda start: _walk(compiled, x, out, start, min(start + SLICE_ROWS, n)),
                      starts))
    return out


def raw_scores_here(forest: Forest, x: np.ndarray) -> np.ndarray:
    """forest.raw(x), in machine code on the calling thread: for a block of rows that one of
    the caller's own threads scores (ml.batch), whatever its size."""
    compiled, x = _checked(forest, x)
    out = np.empty(len(x))
    _walk(compiled, x, out, 0, len(x))
    return out


def _checked(forest: Forest, x: np.ndarray) -> tuple[Machine, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float64)
    compiled = machine(forest)
    if x.ndim != 2 or x.shape[1] < compiled.width:
        raise ValueError(f"the forest reads {compiled.width} features, got rows of shape "
                         f"{x.shape}")
    return compiled, x


def _walk(compiled: Machine, x: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    compiled.walk(x.ctypes.data, out.ctypes.data, x.shape[1], start, stop)


def _compile(forest: Forest) -> Machine:
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(forest_ir(forest))
    module.verify()
    target = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=0)
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    walk = _SIGNATURE(engine.get_function_address("walk"))
    width = int(forest.feature[forest.internal].max()) + 1 if forest.internal.any() else 0
    return Machine(engine, walk, width)


def _double(value: float) -> str:
    """A float64 constant in LLVM IR by its exact bit pattern."""
    (bits,) = struct.unpack("<Q", struct.pack("<d", float(value)))
    return f"0x{bits:016X}"


def forest_ir(forest: Forest) -> str:
    """LLVM IR of `walk`: per row, the baseline plus each tree's leaf, tree after tree. A node's
    block is named after its address in the forest's table (ml.compiled.Forest)."""
    roots = [int(root) for root in forest.roots]
    lines = ["define void @walk(ptr noalias nocapture readonly %x, ptr noalias nocapture %out, "
             "i64 %width, i64 %start, i64 %stop) nounwind {",
             "entry:",
             "  %none = icmp sge i64 %start, %stop",
             "  br i1 %none, label %done, label %row",
             "row:",
             "  %i = phi i64 [ %start, %entry ], [ %next, %latch ]",
             "  %offset = mul i64 %i, %width",
             "  %r = getelementptr inbounds double, ptr %x, i64 %offset",
             f"  br label %{f't0_n{roots[0]}' if roots else 'latch'}"]
    total = _double(forest.baseline)
    for t, root in enumerate(roots):
        after = f"t{t + 1}_n{roots[t + 1]}" if t + 1 < len(roots) else "latch"
        leaves, stack = [], [root]
        while stack:
            node = stack.pop()
            name = f"t{t}_n{node}"
            lines.append(f"{name}:")
            if not forest.internal[node]:
                leaves.append(f"[ {_double(forest.value[node])}, %{name} ]")
                lines.append(f"  br label %t{t}_end")
                continue
            left, right = int(forest.children[node]), int(forest.children[node + 1])
            compare = "ugt" if forest.missing_right[node] else "ogt"
            lines += [f"  %{name}_p = getelementptr inbounds double, ptr %r, "
                      f"i64 {int(forest.feature[node])}",
                      f"  %{name}_v = load double, ptr %{name}_p",
                      f"  %{name}_c = fcmp {compare} double %{name}_v, "
                      f"{_double(forest.threshold[node])}",
                      f"  br i1 %{name}_c, label %t{t}_n{right}, label %t{t}_n{left}"]
            stack += [right, left]
        lines += [f"t{t}_end:",
                  f"  %t{t}_leaf = phi double {', '.join(leaves)}",
                  f"  %t{t}_sum = fadd double {total}, %t{t}_leaf",
                  f"  br label %{after}"]
        total = f"%t{t}_sum"
    lines += ["latch:",
              "  %o = getelementptr inbounds double, ptr %out, i64 %i",
              f"  store double {total}, ptr %o",
              "  %next = add i64 %i, 1",
              "  %more = icmp slt i64 %next, %stop",
              "  br i1 %more, label %row, label %done",
              "done:",
              "  ret void",
              "}"]
    return "\n".join(lines) + "\n"
