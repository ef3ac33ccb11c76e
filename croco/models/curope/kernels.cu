// CUDA kernel of the 2D rotary position embedding (RoPE2D) used by CroCo / DUSt3R / MASt3R.
//
// Layout: tokens are seen as (L, B, H, N, D) -- L is an optional leading "stack" dim (e.g. queries and keys rotated
// in one call; L = 1 for a (B, H, N, D) input) -- with arbitrary element strides on the first four dims and a unit
// stride on the last one. The result goes to a separate, contiguous (L, B, H, N, D) tensor: the kernel is OUT OF
// PLACE and never writes its input.
//
// Work split: one thread per (token (b, n), rotation pair p) with p in [0, D/2). Pair p belongs to the y half
// (p < D/4, positions[b, n, 0]) or to the x half (positions[b, n, 1]); inside that half of size d = D/2 it rotates the
// features (i, i + d/2) by the angle of frequency i. The angle only depends on (b, n, p), so each thread computes one
// sin/cos pair and then loops over the L * H (stack, head) rows of its token.
//
// Numerics, chosen to match the pure-PyTorch RoPE2D (croco.models.pos_embed) operation for operation:
//   * inv_freq is computed on the host side with the same torch ops as the reference and passed in (float32);
//   * angle = fl32(fl32(F0 * float(pos)) * inv_freq[i]), with explicitly rounded multiplies;
//   * sin/cos are evaluated in double precision on that float32 angle, then (except for float64 tokens) rounded to
//     float32: the correctly rounded value but for rare ties. Double precision also keeps them away from
//     --use_fast_math, which would turn sinf/cosf into __sinf/__cosf, inaccurate for angles of tens of radians;
//   * the rotation y_lo = x_lo*c - x_hi*s, y_hi = x_hi*c + x_lo*s runs in float32 (float64 for float64 tokens) with
//     every product rounded on its own (as the reference's separate elementwise kernels do; the _rn intrinsics are
//     never contracted into FMAs), then is rounded once to the tokens' dtype.
// The gradient of a rotation is the rotation by the opposite angle: the backward is the same kernel with sin negated.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <limits>

namespace curope {
namespace {

constexpr int kThreadsPerBlock = 256;

// Arithmetic of the rotation: float32 for float32 / float16 / bfloat16 tokens, float64 for float64 tokens.
template <typename scalar_t>
struct RotationMath {
  using acc_t = float;
  static __device__ __forceinline__ acc_t from_double(double v) { return static_cast<float>(v); }
  static __device__ __forceinline__ acc_t mul(acc_t a, acc_t b) { return __fmul_rn(a, b); }
  static __device__ __forceinline__ acc_t add(acc_t a, acc_t b) { return __fadd_rn(a, b); }
  static __device__ __forceinline__ acc_t sub(acc_t a, acc_t b) { return __fsub_rn(a, b); }
};

template <>
struct RotationMath<double> {
  using acc_t = double;
  static __device__ __forceinline__ acc_t from_double(double v) { return v; }
  static __device__ __forceinline__ acc_t mul(acc_t a, acc_t b) { return __dmul_rn(a, b); }
  static __device__ __forceinline__ acc_t add(acc_t a, acc_t b) { return __dadd_rn(a, b); }
  static __device__ __forceinline__ acc_t sub(acc_t a, acc_t b) { return __dsub_rn(a, b); }
};

struct TokenGeometry {
  int64_t stack;   // L
  int64_t batch;   // B
  int64_t heads;   // H
  int64_t seq;     // N
  int64_t dim;     // D
  int64_t stride_stack;  // element strides of the source tokens
  int64_t stride_batch;
  int64_t stride_head;
  int64_t stride_seq;
};

template <typename scalar_t>
__global__ void rope2d_rotate_kernel(const scalar_t* __restrict__ src,
                                     scalar_t* __restrict__ dst,          // contiguous (L, B, H, N, D)
                                     const int64_t* __restrict__ positions,  // contiguous (B, N, 2), (y, x)
                                     const float* __restrict__ inv_freq,     // (D / 4,)
                                     const TokenGeometry g,
                                     const float F0,
                                     const bool inverse) {
  using Math = RotationMath<scalar_t>;
  using acc_t = typename Math::acc_t;

  const int64_t pairs_per_token = g.dim / 2;  // D/4 pairs in the y half, D/4 in the x half
  const int64_t pairs_per_axis = g.dim / 4;
  const int64_t work = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (work >= g.batch * g.seq * pairs_per_token) {
    return;
  }
  const int64_t token = work / pairs_per_token;  // = b * N + n
  const int64_t pair = work - token * pairs_per_token;
  const int64_t axis = pair >= pairs_per_axis ? 1 : 0;  // 0: y (first half of the features), 1: x (second half)
  const int64_t freq = pair - axis * pairs_per_axis;
  const int64_t b = token / g.seq;
  const int64_t n = token - b * g.seq;

  const float coord = static_cast<float>(positions[2 * token + axis]);
  const float angle = __fmul_rn(__fmul_rn(F0, coord), inv_freq[freq]);
  double sin_d, cos_d;
  sincos(static_cast<double>(angle), &sin_d, &cos_d);
  const acc_t c = Math::from_double(cos_d);
  const acc_t s = inverse ? -Math::from_double(sin_d) : Math::from_double(sin_d);

  const int64_t lo = axis * pairs_per_token + freq;  // feature of the first element of the pair
  const int64_t hi = lo + pairs_per_axis;            // its partner, d/2 further inside the same half
  const int64_t out_row_stride = g.seq * g.dim;      // between consecutive (l, b, h) rows of dst

  for (int64_t l = 0; l < g.stack; ++l) {
    for (int64_t h = 0; h < g.heads; ++h) {
      const scalar_t* in_row = src + l * g.stride_stack + b * g.stride_batch + h * g.stride_head + n * g.stride_seq;
      scalar_t* out_row = dst + ((l * g.batch + b) * g.heads + h) * out_row_stride + n * g.dim;
      const acc_t x_lo = static_cast<acc_t>(in_row[lo]);
      const acc_t x_hi = static_cast<acc_t>(in_row[hi]);
      out_row[lo] = static_cast<scalar_t>(Math::sub(Math::mul(x_lo, c), Math::mul(x_hi, s)));
      out_row[hi] = static_cast<scalar_t>(Math::add(Math::mul(x_hi, c), Math::mul(x_lo, s)));
    }
  }
}

}  // namespace

// Host launcher, called by curope.cpp once the inputs are validated: tokens (L, B, H, N, D) CUDA
// float32 / float64 / float16 / bfloat16 with stride(4) == 1 and D % 4 == 0; positions (B, N, 2) int64 contiguous on
// the same device; inv_freq float32 contiguous with D / 4 elements on the same device; out contiguous
// (L, B, H, N, D) of the tokens' dtype.
void rope2d_cuda_launch(const at::Tensor& tokens,
                        const at::Tensor& positions,
                        const at::Tensor& inv_freq,
                        at::Tensor& out,
                        double F0,
                        bool inverse) {
  TORCH_CHECK(tokens.dim() == 5, "rope2d_cuda_launch expects 5-d (L, B, H, N, D) tokens, got ", tokens.sizes());
  const c10::cuda::CUDAGuard device_guard(tokens.device());
  TokenGeometry g;
  g.stack = tokens.size(0);
  g.batch = tokens.size(1);
  g.heads = tokens.size(2);
  g.seq = tokens.size(3);
  g.dim = tokens.size(4);
  g.stride_stack = tokens.stride(0);
  g.stride_batch = tokens.stride(1);
  g.stride_head = tokens.stride(2);
  g.stride_seq = tokens.stride(3);

  const int64_t threads_total = g.batch * g.seq * (g.dim / 2);
  if (threads_total == 0 || g.stack == 0 || g.heads == 0) {
    return;
  }
  const int64_t blocks = (threads_total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  TORCH_CHECK(blocks <= static_cast<int64_t>(std::numeric_limits<int32_t>::max()),
              "rope_2d: too many tokens for one launch (B * N * D / 2 = ", threads_total, ")");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, tokens.scalar_type(), "rope_2d_cuda", [&] {
        rope2d_rotate_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreadsPerBlock, 0, stream>>>(
            tokens.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), positions.data_ptr<int64_t>(),
            inv_freq.data_ptr<float>(), g, static_cast<float>(F0), inverse);
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace curope
