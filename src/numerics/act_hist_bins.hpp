// The fixed log2 binning of |x| for activation histograms, host and device (QF_HD): calibration
// adds histograms over ranks, batches and backends as integer counts, so every producer (the CPU
// observer, the CUDA kernel) must put each float in the same bin, read from its bits.
// Owns: the bin layout and the bin of a value. Does not own: histogram storage, reductions or
// what is chosen from the counts (pipeline/act_histogram.hpp, pipeline/act_scale.hpp).
#pragma once
#include <cstdint>

#include "numerics/host_device.hpp"

namespace qf::numerics {

// Bin 0 counts exact zeros (either sign). Bins 1..kActHistLogBins cover [2^-24, 2^24) with
// kActHistSubBins bins per octave, split linearly in the mantissa (edges 2^e * (1 + j/8)): read
// from the float's bits, so the bin of a value never depends on a libm. Values below 2^-24
// (denormals included) go to bin 1, values >= 2^24 (and +-Inf) to the last bin.
constexpr int kActHistMinExp = -24;
constexpr int kActHistMaxExp = 24;
constexpr int kActHistSubBins = 8;
constexpr int kActHistLogBins = (kActHistMaxExp - kActHistMinExp) * kActHistSubBins;
constexpr int kActHistBins = 1 + kActHistLogBins;
// Written into the calib record (attrs["input_hist_bins"]) so that a reader can refuse a
// histogram binned some other way.
constexpr const char* kActHistBinning = "zero+log2[-24,24)x8";

// Bin of the float with these bits (NaN: the last bin; the amax check reports NaN separately).
QF_HD inline int act_hist_bin_of_bits(uint32_t bits) {
  static_assert(kActHistSubBins == 8, "sub-bins are the top 3 mantissa bits");
  bits &= 0x7FFFFFFFu;
  if (bits == 0) return 0;
  const int biased = static_cast<int>(bits >> 23);
  if (biased == 0xFF) return kActHistLogBins;  // Inf / NaN
  const int exp = biased - 127;                // denormals: -127, below the range anyway
  if (exp < kActHistMinExp) return 1;
  if (exp >= kActHistMaxExp) return kActHistLogBins;
  const int sub = static_cast<int>((bits >> (23 - 3)) & 7u);  // top 3 mantissa bits
  return 1 + (exp - kActHistMinExp) * kActHistSubBins + sub;
}

QF_HD inline int act_hist_bin(float x) { return act_hist_bin_of_bits(float_to_bits(x)); }

// Adds |x| of n values to hist (kActHistBins counts). Host only.
inline void act_hist_add(int64_t* hist, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ++hist[act_hist_bin(x[i])];
}

}  // namespace qf::numerics
