// The `dequant` job (see dequant.hpp): plan on every rank, stage files on rank 0, convert and
// pwrite owned tensors on every rank, then index/config/commit on rank 0.
#include "dequant/dequant.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/progress.hpp"
#include "core/progress_stream.hpp"
#include "core/stop_signal.hpp"
#include "dist/collective_step.hpp"
#include "dist/ownership_plan.hpp"
#include "formats/async_writer.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/path_overlap.hpp"
#include "formats/posix_file.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/shard_index.hpp"
#include "formats/staged_output.hpp"
#include "gpu/block_dequantizer.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"
#include "source/native_tensors.hpp"

namespace qf::pipeline {
namespace {

using formats::TensorSpec;

struct OutputShard {
  std::string file;
  std::vector<TensorSpec> specs;
  formats::SafetensorsLayout layout;
};

struct DequantPlan {
  std::vector<NativeTensor> tensors;
  std::vector<OutputShard> shards;
  std::map<std::string, size_t> shard_of;  // tensor name -> index into shards
  dist::OwnershipPlan ownership;
  nlohmann::json config;  // config.json of the output
};

TensorSpec output_spec(const NativeTensor& t) {
  if (t.kind == StorageKind::kPlain) return t.stored;
  return TensorSpec{t.name, DType::kBF16, {t.n_rows, t.n_cols}};
}

// config.json of the BF16 result: the same rule as make-tiny --format bf16 (no
// quantization_config, so transformers and engines load plain BF16 weights).
nlohmann::json bf16_config(const formats::CheckpointDir& source) {
  const std::string path = source.dir() + "/config.json";
  const auto config = model::ModelConfig::from_json(source.read_json("config.json"), path);
  return model::config_json_for_format(config, model::WeightFormat::kBf16);
}

// --out (and OUT.partial, OUT.partial.lock) must not be --in or inside it, nor --in inside them:
// the output would be written into the source (and copied by every later run over it).
void check_dequant_paths(const DequantOptions& options) {
  const formats::NamedPath in{"--in", options.in_dir};
  for (const auto& written : formats::StagedOutput::written_paths(options.out_dir)) {
    formats::check_not_inside(written, in,
                              "the output would be written into the source checkpoint (and "
                              "copied into every later output made from it)");
    formats::check_not_inside(in, written, "dequant creates, replaces or deletes that path");
  }
}

// Deterministic from the source alone, so every rank builds the same plan without talking.
DequantPlan build_plan(const formats::CheckpointDir& source, int world_size) {
  DequantPlan plan;
  plan.config = bf16_config(source);  // validates config.json before any work
  plan.tensors = classify_native_tensors(source);
  std::map<std::string, size_t> shard_index;
  for (const auto& file : source.shard_files()) {
    shard_index[file] = plan.shards.size();
    plan.shards.push_back(OutputShard{file, {}, {}});
  }
  std::vector<dist::PlanItem> items;
  for (const auto& t : plan.tensors) {
    const size_t shard = shard_index.at(t.shard);
    plan.shards[shard].specs.push_back(output_spec(t));
    plan.shard_of[t.name] = shard;
    // Balance by bytes moved: source read + BF16 written.
    const uint64_t n_bytes = t.stored.n_bytes() + t.scale.n_bytes() + output_spec(t).n_bytes();
    items.push_back(dist::PlanItem{t.name, n_bytes, t.layer, t.expert});
  }
  for (auto& shard : plan.shards) shard.layout = formats::layout_safetensors(shard.specs);
  plan.ownership = dist::build_ownership_plan(items, world_size);
  return plan;
}

// Rank 0: the staging dir with every shard pre-sized for the ranks' pwrites.
void stage_output_files(const DequantPlan& plan, formats::StagedOutput& staged) {
  staged.create_staging();
  for (const auto& shard : plan.shards)
    formats::create_presized_shard(staged.staging_dir() + "/" + shard.file, shard.layout);
}

// Rank 0 after every rank has written and fsynced: index, config, other files, final rename.
void finish_output(const DequantPlan& plan, const formats::CheckpointDir& source,
                   formats::StagedOutput& staged) {
  QF_NVTX_RANGE("dequant: commit");
  const std::string& staging = staged.staging_dir();
  formats::ShardIndex index;
  uint64_t total_size = 0;
  for (const auto& shard : plan.shards) {
    for (const auto& spec : shard.specs) {
      index.weight_map[spec.name] = shard.file;
      total_size += spec.n_bytes();
    }
  }
  index.metadata = nlohmann::json::object();
  index.metadata["total_size"] = total_size;
  index.write(staging + "/model.safetensors.index.json");
  for (const auto& file : source.other_files()) {
    if (file == "config.json") continue;
    formats::copy_file_into(source.dir() + "/" + file, staging, file);
  }
  formats::write_file_atomic(staging + "/config.json", plan.config.dump(2) + "\n");
  // Re-read what we wrote: every header parses and the index matches the shards.
  formats::CheckpointDir check(staging);
  QF_CHECK(check.tensor_names().size() == index.weight_map.size(),
           "output check failed:", check.tensor_names().size(), "tensors in the shards but",
           index.weight_map.size(), "in the index");
  staged.commit();
}

// Streams one owned tensor from the source into its place in the output shard.
class TensorStreamer {
 public:
  TensorStreamer(const formats::CheckpointDir& source, gpu::BlockDequantizer& dequantizer,
                 formats::AsyncWriter& writer, uint64_t chunk_bytes)
      : source_(source), dequantizer_(dequantizer), writer_(writer), chunk_bytes_(chunk_bytes) {}

  // Returns source bytes read.
  uint64_t stream(const NativeTensor& t, const formats::FileDescriptor& out, uint64_t offset) {
    switch (t.kind) {
      case StorageKind::kPlain:
        return copy_plain(t, out, offset);
      case StorageKind::kFp8Block:
        return convert_fp8(t, out, offset);
      case StorageKind::kFp4Block:
        return convert_fp4(t, out, offset);
    }
    QF_FAIL("unhandled storage kind for", t.name);
  }

 private:
  const formats::SafetensorsReader& shard_of(const std::string& name,
                                             const formats::TensorInfo** info) {
    const formats::SafetensorsReader* shard = nullptr;
    *info = &source_.tensor(name, &shard);
    return *shard;
  }

  uint64_t copy_plain(const NativeTensor& t, const formats::FileDescriptor& out, uint64_t offset) {
    const formats::TensorInfo* info = nullptr;
    const auto& shard = shard_of(t.name, &info);
    const uint64_t n_bytes = info->n_bytes();
    for (uint64_t done = 0; done < n_bytes;) {
      const uint64_t n = std::min(chunk_bytes_, n_bytes - done);
      auto buffer = writer_.acquire();
      buffer.resize(n);
      shard.read(*info, done, n, buffer.data());
      writer_.submit(out, offset + done, std::move(buffer), n);
      done += n;
    }
    return n_bytes;
  }

  uint64_t convert_fp8(const NativeTensor& t, const formats::FileDescriptor& out, uint64_t offset) {
    const formats::TensorInfo *info = nullptr, *scale_info = nullptr;
    const auto& shard = shard_of(t.name, &info);
    const auto& scale_shard = shard_of(t.scale_name, &scale_info);
    const int64_t tile = numerics::kFp8TileRows;
    const int64_t scale_cols = t.scale.shape[1];
    const uint64_t scale_elem = dtype_n_bytes(t.scale.dtype, 1);
    // Whole 128-row tile stripes per step, at least one.
    const int64_t stripe_rows =
        std::max<int64_t>(tile, int64_t(chunk_bytes_ / uint64_t(t.n_cols)) / tile * tile);
    std::vector<uint8_t> codes, scales;
    uint64_t n_read = 0;
    for (int64_t row = 0; row < t.n_rows; row += stripe_rows) {
      const int64_t n_rows = std::min(stripe_rows, t.n_rows - row);
      const int64_t n_tile_rows = (n_rows + tile - 1) / tile;
      codes.resize(uint64_t(n_rows * t.n_cols));
      scales.resize(uint64_t(n_tile_rows * scale_cols) * scale_elem);
      shard.read(*info, uint64_t(row * t.n_cols), codes.size(), codes.data());
      scale_shard.read(*scale_info, uint64_t(row / tile * scale_cols) * scale_elem, scales.size(),
                       scales.data());
      auto buffer = writer_.acquire();
      buffer.resize(codes.size() * 2);
      dequantizer_.fp8_block(codes.data(), scales.data(), t.scale.dtype, n_rows, t.n_cols,
                             reinterpret_cast<uint16_t*>(buffer.data()));
      writer_.submit(out, offset + uint64_t(row * t.n_cols) * 2, std::move(buffer),
                     codes.size() * 2);
      n_read += codes.size() + scales.size();
    }
    return n_read;
  }

  uint64_t convert_fp4(const NativeTensor& t, const formats::FileDescriptor& out, uint64_t offset) {
    const formats::TensorInfo *info = nullptr, *scale_info = nullptr;
    const auto& shard = shard_of(t.name, &info);
    const auto& scale_shard = shard_of(t.scale_name, &scale_info);
    const int64_t packed_cols = t.n_cols / 2;
    const int64_t scale_cols = t.n_cols / numerics::kFp4GroupCols;
    const int64_t step_rows = std::max<int64_t>(1, int64_t(chunk_bytes_ / uint64_t(packed_cols)));
    std::vector<uint8_t> packed, scales;
    uint64_t n_read = 0;
    for (int64_t row = 0; row < t.n_rows; row += step_rows) {
      const int64_t n_rows = std::min(step_rows, t.n_rows - row);
      packed.resize(uint64_t(n_rows * packed_cols));
      scales.resize(uint64_t(n_rows * scale_cols));
      shard.read(*info, uint64_t(row * packed_cols), packed.size(), packed.data());
      scale_shard.read(*scale_info, uint64_t(row * scale_cols), scales.size(), scales.data());
      auto buffer = writer_.acquire();
      const uint64_t n_out = uint64_t(n_rows * t.n_cols) * 2;
      buffer.resize(n_out);
      dequantizer_.fp4_block(packed.data(), scales.data(), n_rows, t.n_cols,
                             reinterpret_cast<uint16_t*>(buffer.data()));
      writer_.submit(out, offset + uint64_t(row * t.n_cols) * 2, std::move(buffer), n_out);
      n_read += packed.size() + scales.size();
    }
    return n_read;
  }

  const formats::CheckpointDir& source_;
  gpu::BlockDequantizer& dequantizer_;
  formats::AsyncWriter& writer_;
  uint64_t chunk_bytes_;
};

// Every rank: converts the tensors it owns. Returns the per-rank report.
DequantReport convert_owned(const DequantPlan& plan, const formats::CheckpointDir& source,
                            const DequantOptions& options, int rank) {
  QF_NVTX_RANGE("dequant: convert");
  DequantReport report;
  const std::string staging = formats::StagedOutput::staging_dir_for(options.out_dir);
  uint64_t owned_out_bytes = 0;
  for (const auto& t : plan.tensors) {
    if (plan.ownership.owner_of(t.name) == rank) owned_out_bytes += output_spec(t).n_bytes();
  }
  auto dequantizer = gpu::make_block_dequantizer(options.backend, options.chunk_bytes);
  std::map<size_t, formats::FileDescriptor> outputs;  // shard index -> open file
  ProgressMeter progress("dequant (rank 0's share)", owned_out_bytes, "B");
  {
    formats::AsyncWriter writer(2);
    TensorStreamer streamer(source, *dequantizer, writer, options.chunk_bytes);
    for (const auto& t : plan.tensors) {
      if (plan.ownership.owner_of(t.name) != rank) continue;
      check_stop_requested("between tensors");
      const size_t shard = plan.shard_of.at(t.name);
      auto it = outputs.find(shard);
      if (it == outputs.end()) {
        it = outputs
                 .emplace(shard, formats::open_for_pwrite(staging + "/" + plan.shards[shard].file))
                 .first;
      }
      const uint64_t offset = plan.shards[shard].layout.file_offset.at(t.name);
      report.bytes_read += streamer.stream(t, it->second, offset);
      const uint64_t n_out = output_spec(t).n_bytes();
      report.bytes_written += n_out;
      (t.kind == StorageKind::kPlain ? report.n_tensors_copied : report.n_tensors_converted)++;
      log_debug("[r", rank, "] ", t.name, " ", dtype_name(t.stored.dtype), " -> ",
                dtype_name(output_spec(t).dtype), " ", n_out, " bytes");
      progress.advance(n_out);
    }
    writer.drain();
  }
  progress.finish();
  for (auto& [shard, fd] : outputs) {
    formats::fsync_file(fd);
    fd.close();
  }
  return report;
}

}  // namespace

DequantReport run_dequant(const DequantOptions& options, dist::Communicator& comm) {
  QF_NVTX_RANGE("dequant");
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<formats::CheckpointDir> source;
  DequantPlan plan;
  dist::run_on_all_ranks(comm, "reading the source checkpoint", [&] {
    check_dequant_paths(options);
    formats::StagedOutput::check_final_dir(options.out_dir);
    source = std::make_unique<formats::CheckpointDir>(options.in_dir);
    plan = build_plan(*source, comm.world_size());
  });
  log_info("dequant: ", plan.tensors.size(), " tensors in ", plan.shards.size(), " shards, ",
           comm.world_size(), " rank(s), backend ", dist::backend_name(options.backend));
  std::optional<formats::StagedOutput> staged;  // rank 0: owns the output until it is complete
  dist::run_on_root(comm, 0, "preparing the output directory", [&] {
    staged.emplace(formats::StagedOutput::claim(options.out_dir));
    stage_output_files(plan, *staged);
  });
  DequantReport report;
  try {
    progress_stream::phase("convert");
    dist::run_on_all_ranks(comm, "converting tensors",
                           [&] { report = convert_owned(plan, *source, options, comm.rank()); });
    progress_stream::phase("finish");
    dist::run_on_root(comm, 0, "writing index and config",
                      [&] { finish_output(plan, *source, *staged); });
  } catch (const CollectiveError&) {
    // Every rank stopped together; leave nothing behind but the error.
    if (staged) staged->discard();
    throw;
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace qf::pipeline
