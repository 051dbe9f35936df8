// X^T X of linear inputs for --weight-scale gptq | hessian: the observer that accumulates it
// during the CPU calibration forward, and the "hessian" stage record that carries it to the
// quantizer through the rank store. Owns: the accumulation order, the input sharing between
// linears, the record layout. Does not own the reduction over ranks or the commits
// (calibrate.cpp) or what the quantizer does with it (quantize_weights.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/layer_record.hpp"
#include "model/config.hpp"
#include "model/linear_observer.hpp"

namespace qf::pipeline {

constexpr const char* kStageHessian = "hessian";

// ============================ hessian record (stage "hessian") ===================================
// One LayerRecord per regular layer L on every rank (possibly without tensors), holding X^T X of
// the inputs of the recorded linears that this rank owns, summed over every calibration token of
// all ranks:
//   layer                 L
//   tensors "<c>.xtx"     F64 [n_groups, n, n], symmetric per group, for each input c (named by
//                         the first linear that reads it, in forward order); n = the linear's
//                         in_features, n_groups = model::linear_input_groups (4 for a grouped
//                         attn.wo_a: group g holds the rows of its g-th input slice)
//   attrs["input_of"]     '\n'-joined "<linear>=<c>" for every kept linear: linears that read
//                         the same tensor (attn.wq_a and attn.wkv, shared_experts w1 and w3, ...)
//                         share one "<c>.xtx"
//   attrs["n_tokens"]     calibration tokens of the set (all ranks)
// Sums are in double, sequence by sequence in sample order, 64-row chunks within a sequence,
// then over ranks (MPI SUM): bit-identical for a given world size, whatever the batch size or
// thread count; other world sizes differ in the last bits (the summation order over ranks).
// Memory: 8 * n_groups * n^2 bytes per distinct input, during the layer's forward on every rank
// and in each owner's store (README "Weight scales": ~0.4 GB per hidden-size input at 7168).
// ================================================================================================

// One linear whose input is recorded: name (calib name, no `.weight`), in_features, groups.
struct HessianSlot {
  std::string name;
  int64_t n = 0;
  int n_groups = 1;
};

// The slots of layer `layer` for which wanted(name) holds, in calib order (calib_linear_names),
// shapes from the config's tensor table.
std::vector<HessianSlot> hessian_slots(const model::ModelConfig& config, int layer,
                                       const std::vector<std::string>& linear_names,
                                       const std::vector<bool>& wanted);

// Accumulates X^T X per slot; linears fed the same tensor share one sum. Observe calls come in
// the forward's fixed order from one thread (linear_observer.hpp); begin_batch separates forward
// calls. A linear is an alias of an earlier one when, in the first batch that shows it, its
// input has the same shape and bytes as that linear's input of the same batch; every later batch
// must confirm it (else an error: an alias is a property of the forward, never of the data).
class HessianRecorder : public model::LinearInputObserver {
 public:
  explicit HessianRecorder(std::vector<HessianSlot> slots);
  // The next observe calls belong to a forward over n_seqs sequences (rows split evenly).
  void begin_batch(int n_seqs);
  void observe(const std::string& linear_name, const float* x, int64_t n_rows,
               int64_t n_cols) override;

  const std::vector<HessianSlot>& slots() const { return slots_; }
  // Per slot: the slot whose sum it uses (itself, an earlier slot, or -1 when never observed).
  const std::vector<int>& input_of() const { return input_of_; }
  void set_input_of(std::vector<int> input_of);  // after the ranks agreed (calibrate.cpp)
  // Slot s's sums, [n_groups, n, n] full symmetric (zeros when it is an alias or unseen).
  std::vector<double>& sums(size_t s) { return sums_[s]; }

 private:
  std::vector<HessianSlot> slots_;
  std::vector<int> input_of_;
  std::vector<std::vector<double>> sums_;
  std::vector<uint64_t> batch_hash_;  // per slot: hash of its input in the current batch
  std::vector<int64_t> batch_of_;     // per slot: the batch that hash is from (-1: none)
  int64_t batch_ = -1;
  int n_seqs_ = 1;
};

// Adds rows [n_rows, n] of x (row-major) into the upper triangle of sum [n, n]: sequence by
// sequence (n_rows / n_seqs rows each), 64-row chunks, sum[i][j] += sum_k x[k][i] * x[k][j]
// for j >= i. `stride` and `offset` select rows offset, offset + stride, ... (a group of the
// grouped wo_a input). Threads split i; results do not depend on them.
void accumulate_xtx(const float* x, int64_t n_rows, int64_t n, int n_seqs, int64_t stride,
                    int64_t offset, double* sum);
void mirror_upper(double* sum, int64_t n);  // sum[j][i] = sum[i][j] for j > i

// The record this rank commits: the sums needed by the slots keep(slot index) selects.
formats::LayerRecord hessian_record(int layer, const HessianRecorder& recorder,
                                    const std::vector<bool>& keep, int64_t n_tokens);

// The X^T X of `linear` in a hessian record; false when the record has none for it.
struct Hessian {
  std::vector<double> data;  // [n_groups, n, n]
  int64_t n = 0;
  int n_groups = 1;
};
bool find_hessian(const formats::LayerRecord& record, const std::string& linear, Hessian* out);

}  // namespace qf::pipeline
