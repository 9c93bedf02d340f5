"""`prefetch(array, i)` for numba kernels: LLVM's prefetch intrinsic on the address of
array[i], which the CPU starts fetching into its caches (for writing) while the kernel goes
on. It never faults and changes no value; where the CPU has no such instruction LLVM emits
nothing.

Why: a histogram larger than the second-level cache makes every increment a miss. Asking for
each bin's line as its index is computed, a few thousand events before the increment, lets
the misses overlap the arithmetic instead of queuing behind each other in the increment loop.
Measured (benchmarks/icp_binning.py): ISIS frames into 10,000 x 1,000 byte counters (10 MB,
in the third-level cache), 1.6-1.7x the events/s with the general loop, sorted or not, either
order; into 100,000 x 1,000 (100 MB, main memory) no change. The live view's uint32
histograms (16 and 500 MB, bin_linear) gained nothing, nor does the integral loop
(binning._bin_integral) since its indices are computed in vector registers a chunk at a
time (it lost a tenth of its events/s), so only EdgeIndex.bin's general loop fetches
ahead."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_I32 = ir.IntType(32)
_FOR_WRITE = ir.Constant(_I32, 1)
_KEEP_IN_ALL_CACHES = ir.Constant(_I32, 3)
_DATA = ir.Constant(_I32, 1)  # not instructions


@intrinsic
def prefetch(typingctx, array, i):  # numba passes the typing context first
    if not isinstance(array, types.Array) or not isinstance(i, types.Integer):
        return None
    sig = types.void(array, i)

    def codegen(context, builder, signature, args):
        ary_type = signature.args[0]
        ary = context.make_array(ary_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, ary_type, ary, [args[1]],
                                       wraparound=False)
        # LLVM names the intrinsic by its pointer type: "p0" with opaque pointers (LLVM 15
        # on), "p0i8" with typed ones, which take an i8*
        if getattr(ptr.type, "is_opaque", False):
            name = "llvm.prefetch.p0"
        else:
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            name = "llvm.prefetch.p0i8"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, _I32, _I32, _I32]), name)
        builder.call(fn, [ptr, _FOR_WRITE, _KEEP_IN_ALL_CACHES, _DATA])
        return context.get_dummy_value()

    return sig, codegen
