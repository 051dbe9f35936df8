// NVFP4 kernel family: amax, BF16 -> NVFP4 quantize, NVFP4 -> float dequantize, lossless
// MXFP4 -> NVFP4 cast. Declares the params structs, the CPU references (*_ref, always built) and
// the launchers (launch_*, CUDA builds). Does not own the scalar math (numerics/nvfp4.hpp).
#pragma once
#include <cstdint>

#include "core/dtype.hpp"
#include "numerics/mxfp4_to_nvfp4.hpp"
#include "numerics/nvfp4.hpp"

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

// Layout (FORMATS.md section 2, ModelOpt export):
//   packed  U8      [n_rows, n_cols/2]   byte = code[2i] | code[2i+1] << 4 (low nibble first)
//   scale   E4M3    [n_rows, n_cols/16]  one per 16 consecutive elements of a row (kLinear)
//   scale_2 F32     []                   weight_scale_2
// Because n_cols % 16 == 0, block b of the flat tensor (elements 16b..16b+15) is in one row and
// its scale is scale[b] in the linear layout.
//
// Non-finite input policy: outputs are always written, following ModelOpt's propagation
// (a NaN block gets scale 0x7F and codes 7; an Inf block clamps its scale to 448), and every
// NaN/Inf input element is counted in n_nonfinite. A quantizer must refuse a tensor whose count
// is non-zero (QF_CHECK naming the tensor); ModelOpt itself would silently write NaN scales.

// Where the E4M3 scale of element (row, col) lives (flashinfer QuantizationSFLayout style).
enum class Nvfp4ScaleLayout : uint8_t {
  // scale[row * (n_cols / 16) + col / 16]: row-major [n_rows, n_cols / 16], unswizzled. This is
  // ModelOpt's exported weight_scale (nvfp4_tensor.py reduce_block_amax over the last dim).
  kLinear = 0,
};

// ---- amax ---------------------------------------------------------------------------------------
// amax = the float whose bits are max over elements of (bits of |x|). For finite input that is
// max |x| (exact; +Inf if any Inf); with a NaN present it is a NaN (ModelOpt's torch.max also
// returns NaN), but then n_nonfinite > 0 and the tensor is refused anyway. Empty -> 0.
struct Nvfp4AmaxParams {
  const void* x = nullptr;     // [n_elems] of dtype; launcher: device, 16-byte aligned
  DType dtype = DType::kBF16;  // kBF16 or kF32
  int64_t n_elems = 0;
  float* amax = nullptr;            // [1] out
  uint64_t* n_nonfinite = nullptr;  // [1] out: NaN/Inf elements
  // false: overwrite amax and n_nonfinite; true: max into amax, add into n_nonfinite (one
  // weight_scale_2 for a w1/w3 pair, or a tensor in several pieces).
  bool accumulate = false;
};

// ---- quantize -----------------------------------------------------------------------------------
struct Nvfp4QuantizeParams {
  const uint16_t* x = nullptr;  // [n_rows, n_cols] BF16 bits; launcher: 16-byte aligned
  int64_t n_rows = 0;
  int64_t n_cols = 0;              // multiple of 16
  const float* scale_2 = nullptr;  // [1] weight_scale_2: finite and > 0 (caller checks)
  Nvfp4ScaleLayout layout = Nvfp4ScaleLayout::kLinear;
  uint8_t* packed = nullptr;        // [n_rows, n_cols/2] out; launcher: 8-byte aligned
  uint8_t* scale = nullptr;         // [n_rows, n_cols/16] out, E4M3 bytes
  uint64_t* n_nonfinite = nullptr;  // [1] out (overwritten): NaN/Inf elements of x
};

// ---- dequantize (validation) --------------------------------------------------------------------
struct Nvfp4DequantizeParams {
  const uint8_t* packed = nullptr;  // [n_rows, n_cols/2]; launcher: 8-byte aligned
  const uint8_t* scale = nullptr;   // [n_rows, n_cols/16]
  const float* scale_2 = nullptr;   // [1]
  int64_t n_rows = 0;
  int64_t n_cols = 0;  // multiple of 16
  Nvfp4ScaleLayout layout = Nvfp4ScaleLayout::kLinear;
  float* y = nullptr;  // [n_rows, n_cols] out: code * (scale * scale_2); launcher: 16-byte aligned
};

// ---- lossless MXFP4 -> NVFP4 cast ---------------------------------------------------------------
// Max E8M0 byte of a scale tensor (k_max source, see numerics/mxfp4_to_nvfp4.hpp).
struct Mxfp4E8m0MaxParams {
  const uint8_t* e8m0 = nullptr;  // [n_scales]; launcher: 16-byte aligned
  int64_t n_scales = 0;
  uint32_t* e8m0_max = nullptr;  // [1] out
  bool accumulate = false;       // true: max into e8m0_max
};

// Slots of Mxfp4ToNvfp4Params::counts.
enum Mxfp4CastCount : int {
  kMxfp4CountLossless = 0,   // 32-blocks with k >= k_max - 17 or e8m0 == 0 (ModelOpt n_lossless)
  kMxfp4CountFallback = 1,   // 32-blocks whose amax is data-derived (outside the local window)
  kMxfp4CountNonfinite = 2,  // elements whose MXFP4 dequantization is NaN/Inf (e8m0 255, overflow)
  kMxfp4CountSlots = 3,
};

struct Mxfp4ToNvfp4Params {
  const uint8_t* packed =
      nullptr;                    // [n_rows, n_cols/2] source E2M1, low nibble first; 16-B aligned
  const uint8_t* e8m0 = nullptr;  // [n_rows, n_cols/32] source UE8M0 scales
  int64_t n_rows = 0;
  int64_t n_cols = 0;                       // multiple of 32
  const uint32_t* e8m0_max = nullptr;       // [1] max byte of e8m0 (mxfp4_e8m0_max_*)
  const uint32_t* e8m0_max_pair = nullptr;  // [1] or null: the w1/w3 sibling's; k_max is shared
  uint8_t* out_packed = nullptr;            // [n_rows, n_cols/2]; 16-byte aligned
  uint8_t* out_scale = nullptr;  // [n_rows, n_cols/16] E4M3 (linear layout); 2-byte aligned
  float* out_scale_2 = nullptr;  // [1] 2^(k_max - 8)
  uint64_t* counts = nullptr;    // [kMxfp4CountSlots] out (overwritten)
};

// ---- CPU references: plain loops, the spec in code (nvfp4_quantize_ref.cpp) ---------------------
void nvfp4_amax_ref(const Nvfp4AmaxParams& p);
void nvfp4_quantize_ref(const Nvfp4QuantizeParams& p);
void nvfp4_dequantize_ref(const Nvfp4DequantizeParams& p);
void mxfp4_e8m0_max_ref(const Mxfp4E8m0MaxParams& p);
void mxfp4_to_nvfp4_ref(const Mxfp4ToNvfp4Params& p);

// Shape checks shared by the references and the launchers (QF_CHECK with the values).
void nvfp4_check_shape(int64_t n_rows, int64_t n_cols, Nvfp4ScaleLayout layout);
void mxfp4_check_shape(int64_t n_rows, int64_t n_cols);

#ifdef QF_HAVE_CUDA
// ---- launchers: device pointers, validate, launch on stream; no allocation, no sync -------------
void launch_nvfp4_amax(const Nvfp4AmaxParams& p, cudaStream_t stream);
// scale_2[0] = nvfp4_scale_from_amax(amax[0], division), on the device (no host round trip).
void launch_nvfp4_scale_2(const float* amax, float* scale_2, numerics::Nvfp4ScaleDivision division,
                          cudaStream_t stream);
void launch_nvfp4_quantize(const Nvfp4QuantizeParams& p, cudaStream_t stream);
void launch_nvfp4_dequantize(const Nvfp4DequantizeParams& p, cudaStream_t stream);
void launch_mxfp4_e8m0_max(const Mxfp4E8m0MaxParams& p, cudaStream_t stream);
void launch_mxfp4_to_nvfp4(const Mxfp4ToNvfp4Params& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
