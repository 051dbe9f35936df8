// The phase model (see plan_phases.hpp).
#include "plan/plan_phases.hpp"

#include <algorithm>

#include "model/forward_flops.hpp"

namespace qf::pipeline {

PhaseTimes rank_phase_times(const model::ModelConfig& config,
                            const std::map<int, LayerBytes>& layers, const PhaseModelInputs& in) {
  const auto io = [&](const LayerBytes& b) {
    return double(b.read) / in.read_bps + double(b.write) / in.write_bps;
  };
  PhaseTimes t;
  t.start = kPlanStartSeconds;
  t.calibration = kPlanCalibSetupSeconds;
  t.export_ = kPlanExportSeconds;
  for (const auto& [layer, bytes] : layers) {
    if (layer < 0) {
      t.calibration += io(bytes);  // embedding read; the outside copies beside layer 0 on
    } else if (layer >= config.num_hidden_layers) {
      t.quantization += io(bytes);
    }
  }
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const auto it = layers.find(l);
    const LayerBytes bytes = it == layers.end() ? LayerBytes{} : it->second;
    double forward = 0;
    if (in.linear_tflops > 0) {
      const model::LayerFlops f = model::layer_flops_per_token(config, l, in.seq_len);
      const double attention_rate =
          in.attention_tflops > 0 ? in.attention_tflops : in.linear_tflops;
      forward = in.tokens_per_rank *
                (f.linears / (in.linear_tflops * 1e12) + f.attention / (attention_rate * 1e12));
    }
    const double host = double(bytes.read) / kPlanHostStagingBps;
    t.calibration += std::max(io(bytes), forward + host);
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
