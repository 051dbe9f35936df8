// The phase model (see plan_phases.hpp).
#include "plan/plan_phases.hpp"

#include <algorithm>

#include "model/forward_flops.hpp"

namespace qf::pipeline {

PhaseTimes rank_phase_times(const model::ModelConfig& config,
                            const std::map<int, LayerBytes>& layers, const PhaseModelInputs& in) {
  const auto bytes_of = [&](int layer) {
    const auto it = layers.find(layer);
    return it == layers.end() ? LayerBytes{} : it->second;
  };
  const auto read_s = [&](int layer) { return double(bytes_of(layer).read) / in.read_bps; };
  const auto write_s = [&](int layer) { return double(bytes_of(layer).write) / in.write_bps; };
  const auto busy_s = [&](int layer) {  // the forward plus the host work it does not hide
    double forward = 0;
    if (in.linear_tflops > 0) {
      const model::LayerFlops f = model::layer_flops_per_token(config, layer, in.seq_len);
      const double attention_rate =
          in.attention_tflops > 0 ? in.attention_tflops : in.linear_tflops;
      forward = in.tokens_per_rank *
                (f.linears / (in.linear_tflops * 1e12) + f.attention / (attention_rate * 1e12));
    }
    return forward + double(bytes_of(layer).read) / kPlanHostStagingBps;
  };
  // Reads and writes in flight together: the longer plus the share of the shorter that does not
  // overlap it (kPlanReadWriteSerialShare).
  const auto together = [](double read, double write) {
    return std::max(read, write) + kPlanReadWriteSerialShare * std::min(read, write);
  };
  PhaseTimes t;
  t.start = kPlanStartSeconds;
  t.export_ = kPlanExportSeconds;
  const int n_layers = config.num_hidden_layers;
  const double first_start = std::max(kPlanCalibSetupSeconds, n_layers > 0 ? read_s(0) : 0.0);
  t.calibration = first_start + together(read_s(-1), write_s(-1));
  // Layer 1's read follows layer 0's during the setup: what the setup outlasts R(0) by is read.
  double read_ahead_s = n_layers > 0 ? first_start - read_s(0) : 0.0;
  for (int l = 0; l + 1 < n_layers; ++l) {
    const double next_read = std::max(0.0, read_s(l + 1) - read_ahead_s);
    t.calibration += std::max(busy_s(l), together(next_read, write_s(l)));
    read_ahead_s = 0.0;
  }
  if (n_layers > 0) {
    t.calibration += busy_s(n_layers - 1);
    t.quantization = write_s(n_layers - 1);
  }
  for (const auto& [layer, bytes] : layers) {
    if (layer >= n_layers) t.quantization += read_s(layer) + write_s(layer);
  }
  return t;
}

PhaseTimes job_phase_times(const std::vector<PhaseTimes>& ranks) {
  PhaseTimes job;
  for (const PhaseTimes& r : ranks) {
    job.start = std::max(job.start, r.start);
    job.calibration = std::max(job.calibration, r.calibration);
    job.quantization = std::max(job.quantization, r.quantization);
    job.export_ = std::max(job.export_, r.export_);
  }
  return job;
}

}  // namespace qf::pipeline
