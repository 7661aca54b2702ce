// WhaleKernels: the only code that touches SIMD. Reference/ holds the scalar specification of each
// kernel (dequantization first); optimized kernels are tested against it.
import WhaleCore
