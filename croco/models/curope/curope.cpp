// Python binding of the CUDA RoPE2D extension (croco.models.curope._C).
//
//   rope_2d(tokens, positions, base, F0, inv_freq=None) -> Tensor
//   rope_2d_backward(grad_out, positions, base, F0, inv_freq=None) -> Tensor
//
// tokens / grad_out: CUDA tensor (B, H, N, D), or (L, B, H, N, D) for L stacked sets (e.g. queries and keys), of
// float32, float16, bfloat16 (rotation computed in float32) or float64; D % 4 == 0. Any strides are accepted on the
// leading dims; the last dim must have unit stride (the Python wrapper makes it so). positions: (B, N, 2) int64 (y, x)
// on the same device ((1, N, 2) broadcasts over B). Both functions are OUT OF PLACE: they return a new contiguous
// tensor of the tokens' shape and never modify their inputs. inv_freq (optional): float32 tensor of D/4 elements on
// the same device; when omitted it is computed here with the same torch ops as the pure-PyTorch RoPE2D
// (1 / base ** (arange(0, D/2, 2) / (D/2))). The angle of feature pair i is F0 * pos * inv_freq[i] in float32.
//
// This file only uses CPU-side ATen headers (no CUDA header), so it can be syntax-checked without a CUDA toolkit.

#include <torch/extension.h>

#include <cstdint>

namespace curope {

// Defined in kernels.cu.
void rope2d_cuda_launch(const at::Tensor& tokens,
                        const at::Tensor& positions,
                        const at::Tensor& inv_freq,
                        at::Tensor& out,
                        double F0,
                        bool inverse);

namespace {

// Validates tokens (B, H, N, D) or (L, B, H, N, D) and positions (B, N, 2) (or (1, N, 2), broadcast over B).
void check_inputs(const at::Tensor& tokens, const at::Tensor& positions, const char* what) {
  TORCH_CHECK(tokens.is_cuda(), "rope_2d: ", what, " must be a CUDA tensor, got device ", tokens.device());
  TORCH_CHECK(tokens.dim() == 4 || tokens.dim() == 5, "rope_2d: ", what,
              " must have shape (B, H, N, D) or (L, B, H, N, D), got ", tokens.sizes());
  const auto dtype = tokens.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kDouble,
              "rope_2d: ", what, " must be float32, float16, bfloat16 or float64, got ", dtype);
  const int64_t D = tokens.size(-1);
  TORCH_CHECK(D % 4 == 0, "rope_2d: the feature dim D of ", what, " must be divisible by 4, got D = ", D);
  TORCH_CHECK(tokens.numel() == 0 || tokens.stride(-1) == 1, "rope_2d: the last dim of ", what,
              " must be contiguous (stride 1), got strides ", tokens.strides());

  const int64_t B = tokens.size(-4);
  const int64_t N = tokens.size(-2);
  TORCH_CHECK(positions.device() == tokens.device(), "rope_2d: positions must be on the same device as ", what,
              " (", tokens.device(), "), got ", positions.device());
  TORCH_CHECK(positions.scalar_type() == at::kLong, "rope_2d: positions must be int64, got ",
              positions.scalar_type());
  TORCH_CHECK(positions.dim() == 3 && (positions.size(0) == B || positions.size(0) == 1) &&
                  positions.size(1) == N && positions.size(2) == 2,
              "rope_2d: positions must have shape (B, N, 2) = (", B, ", ", N, ", 2) to match ", what,
              " of shape ", tokens.sizes(), ", got ", positions.sizes());
}

// Same torch ops, in the same order, as the pure-PyTorch reference, so that the float32 values are bitwise equal
// to the reference's when run on the same device: 1.0 / (base ** (arange(0, d, 2).float() / d)) with d = D / 2.
at::Tensor reference_inv_freq(int64_t D, double base, const at::Device& device) {
  const int64_t half = D / 2;
  const at::Tensor steps = at::arange(0, half, 2, at::TensorOptions().dtype(at::kLong).device(device)).to(at::kFloat);
  const at::Tensor exponents = steps / half;
  return at::reciprocal(at::pow(at::Scalar(base), exponents));  // python's `1.0 / t` is `t.reciprocal() * 1.0`
}

at::Tensor resolve_inv_freq(const c10::optional<at::Tensor>& inv_freq, const at::Tensor& tokens, double base) {
  const int64_t D = tokens.size(-1);
  if (!inv_freq.has_value() || !inv_freq->defined()) {
    return reference_inv_freq(D, base, tokens.device());
  }
  const at::Tensor& f = *inv_freq;
  TORCH_CHECK(f.device() == tokens.device(), "rope_2d: inv_freq must be on the tokens' device (", tokens.device(),
              "), got ", f.device());
  TORCH_CHECK(f.scalar_type() == at::kFloat, "rope_2d: inv_freq must be float32, got ", f.scalar_type());
  TORCH_CHECK(f.dim() == 1 && f.size(0) == D / 4, "rope_2d: inv_freq must have shape (D/4,) = (", D / 4,
              ",), got ", f.sizes());
  return f.contiguous();
}

at::Tensor rope2d_apply(const at::Tensor& tokens,
                        const at::Tensor& positions,
                        double base,
                        double F0,
                        const c10::optional<at::Tensor>& inv_freq,
                        bool inverse,
                        const char* what) {
  check_inputs(tokens, positions, what);
  TORCH_CHECK(base > 0.0, "rope_2d: base must be positive, got ", base);
  const at::Tensor freqs = resolve_inv_freq(inv_freq, tokens, base);
  const at::Tensor pos = positions.expand({tokens.size(-4), tokens.size(-2), 2}).contiguous();
  at::Tensor out = at::empty(tokens.sizes(), tokens.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor out5 = tokens.dim() == 5 ? out : out.unsqueeze(0);
  rope2d_cuda_launch(tokens.dim() == 5 ? tokens : tokens.unsqueeze(0), pos, freqs, out5, F0, inverse);
  return out;
}

}  // namespace

at::Tensor rope_2d(const at::Tensor& tokens,
                   const at::Tensor& positions,
                   double base,
                   double F0,
                   const c10::optional<at::Tensor>& inv_freq) {
  return rope2d_apply(tokens, positions, base, F0, inv_freq, /*inverse=*/false, "tokens");
}

at::Tensor rope_2d_backward(const at::Tensor& grad_out,
                            const at::Tensor& positions,
                            double base,
                            double F0,
                            const c10::optional<at::Tensor>& inv_freq) {
  return rope2d_apply(grad_out, positions, base, F0, inv_freq, /*inverse=*/true, "grad_out");
}

}  // namespace curope

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "CUDA 2D rotary position embedding (RoPE2D) for CroCo / DUSt3R / MASt3R; out of place.";
  m.def("rope_2d", &curope::rope_2d,
        "Rotate tokens ([L,] B, H, N, D) by the 2D RoPE angles of positions (B, N, 2) = (y, x); returns a new tensor.",
        py::arg("tokens"), py::arg("positions"), py::arg("base"), py::arg("F0"), py::arg("inv_freq") = py::none());
  m.def("rope_2d_backward", &curope::rope_2d_backward,
        "Gradient of rope_2d w.r.t. tokens: rotation of grad_out ([L,] B, H, N, D) by the opposite angles.",
        py::arg("grad_out"), py::arg("positions"), py::arg("base"), py::arg("F0"),
        py::arg("inv_freq") = py::none());
}
