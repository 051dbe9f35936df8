// make-tiny driver: shard placement, the atomic output directory, the thread count and progress
// (see make_tiny.hpp). Tensors are generated in parallel by pipeline/synthetic_weights.
#include "synthetic/make_tiny.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <system_error>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "formats/atomic_file.hpp"
#include "formats/path_overlap.hpp"
#include "formats/posix_file.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/shard_index.hpp"
#include "model/forward_linear.hpp"
#include "synthetic/synthetic_weights.hpp"

namespace qf::pipeline {
namespace {

namespace fs = std::filesystem;

std::string mib(uint64_t n_bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", static_cast<double>(n_bytes) / (1024.0 * 1024.0));
  return buf;
}

// Generator threads: thread_count(), at most 1024. Output bytes do not depend on it.
int generator_threads() { return static_cast<int>(std::min<int64_t>(thread_count(), 1024)); }

// Removes the temp directory unless released (failure paths leave nothing behind).
class TempDirGuard {
 public:
  explicit TempDirGuard(fs::path dir) : dir_(std::move(dir)) {}
  ~TempDirGuard() {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
    if (ec) log_warn("make-tiny: could not remove ", dir_.string(), ": ", ec.message());
  }
  void release() { dir_.clear(); }

 private:
  fs::path dir_;
};

// Checks the output directory before any work: absent, empty, or replaced with --force.
void check_out_dir(const fs::path& out, bool force) {
  std::error_code ec;
  if (!fs::exists(out, ec)) {
    QF_CHECK(!ec, "make-tiny: cannot access", out.string() + ":", ec.message());
    return;
  }
  QF_CHECK(fs::is_directory(out), "make-tiny: --out", out.string(),
           "exists and is not a directory");
  QF_CHECK(force || fs::is_empty(out), "make-tiny: --out", out.string(),
           "is not empty; refusing to overwrite it (use --force to replace it)");
  if (force) {
    formats::check_not_inside({"the current directory", fs::current_path(ec).string()},
                              {"--out", out.string()},
                              "--force would delete it (and everything in it)");
  }
}

}  // namespace

std::vector<int> assign_shards(const std::vector<model::ModelTensor>& tensors, int n_shards) {
  QF_CHECK(n_shards >= 1, "make-tiny: shard count must be >= 1, got", n_shards);
  // Placement units: a weight and its scale (the next tensor) are one unit.
  struct Unit {
    size_t begin, end;
    uint64_t n_bytes;
  };
  std::vector<Unit> units;
  uint64_t total = 0;
  for (size_t i = 0; i < tensors.size();) {
    size_t end = i + 1;
    if (!tensors[i].scale_name.empty()) {
      QF_CHECK(end < tensors.size() && tensors[end].spec.name == tensors[i].scale_name,
               "tensor table: scale of", tensors[i].spec.name, "does not follow it");
      ++end;
    }
    uint64_t n_bytes = 0;
    for (size_t j = i; j < end; ++j) n_bytes += tensors[j].spec.n_bytes();
    units.push_back({i, end, n_bytes});
    total += n_bytes;
    i = end;
  }
  std::vector<int> shard_of(tensors.size(), 0);
  if (units.empty()) return shard_of;
  const int64_t n_units = static_cast<int64_t>(units.size());
  const int64_t n = std::min<int64_t>(n_shards, n_units);
  int64_t prev = 0;
  uint64_t before = 0;
  for (int64_t u = 0; u < n_units; ++u) {
    // Shard of the unit's byte midpoint, then: no gaps, never decreasing, and enough units
    // left for the remaining shards (so every shard gets at least one).
    const unsigned __int128 mid = before + units[static_cast<size_t>(u)].n_bytes / 2;
    int64_t s = total ? static_cast<int64_t>(mid * static_cast<unsigned __int128>(n) / total)
                      : u * n / n_units;
    s = u == 0 ? 0 : std::min(std::max(s, prev), prev + 1);
    s = std::max(s, n - (n_units - u));
    s = std::min(s, n - 1);
    for (size_t j = units[static_cast<size_t>(u)].begin; j < units[static_cast<size_t>(u)].end;
         ++j) {
      shard_of[j] = static_cast<int>(s);
    }
    prev = s;
    before += units[static_cast<size_t>(u)].n_bytes;
  }
  return shard_of;
}

namespace {

// Writes the tensors into their shards in `dir` as generate_tensors hands them over, in table
// order: shards are contiguous in it, so one is open at a time. Fills the index and the result's
// shard list and byte count; a shard left uncommitted is removed with its writer.
class ShardFiles {
 public:
  ShardFiles(const std::vector<model::ModelTensor>& tensors, const std::vector<int>& shard_of,
             int n_shards, fs::path dir, formats::ShardIndex& index, MakeTinyResult& result)
      : tensors_(tensors),
        shard_of_(shard_of),
        n_shards_(n_shards),
        dir_(std::move(dir)),
        index_(index),
        result_(result),
        shard_begin_(static_cast<size_t>(n_shards) + 1, tensors.size()) {
    for (size_t i = tensors.size(); i-- > 0;) shard_begin_[static_cast<size_t>(shard_of[i])] = i;
  }

  void append(size_t i, const void* data, uint64_t n_bytes) {
    if (shard_of_[i] != current_) {
      if (writer_) commit_shard();
      open_shard(shard_of_[i]);
    }
    writer_->append(data, n_bytes);
  }
  void finish() {
    if (writer_) commit_shard();
  }

 private:
  void commit_shard() {
    writer_->commit();
    writer_.reset();
    const double dt =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_shard_).count();
    const size_t s = static_cast<size_t>(current_);
    const std::string file = formats::shard_file_name(current_ + 1, n_shards_);
    char counter[32];
    std::snprintf(counter, sizeof(counter), "[%3d/%d]", current_ + 1, n_shards_);
    log_line(shard_line_level_, false,
             str_cat(counter, " ", file, "  ", shard_begin_[s + 1] - shard_begin_[s], " tensors  ",
                     mib(shard_bytes_), "  ", dt, " s"));
    result_.shard_files.push_back(file);
    result_.n_bytes += shard_bytes_;
  }
  void open_shard(int s) {
    const std::string file = formats::shard_file_name(s + 1, n_shards_);
    std::vector<formats::TensorSpec> specs;
    shard_bytes_ = 0;
    for (size_t i = shard_begin_[static_cast<size_t>(s)]; i < shard_begin_[s + 1u]; ++i) {
      specs.push_back(tensors_[i].spec);
      shard_bytes_ += tensors_[i].spec.n_bytes();
      index_.weight_map[tensors_[i].spec.name] = file;
    }
    t_shard_ = std::chrono::steady_clock::now();
    writer_ = std::make_unique<formats::SafetensorsWriter>((dir_ / file).string(), specs);
    current_ = s;
  }

  const std::vector<model::ModelTensor>& tensors_;
  const std::vector<int>& shard_of_;
  const int n_shards_;
  const fs::path dir_;
  formats::ShardIndex& index_;
  MakeTinyResult& result_;
  std::vector<size_t> shard_begin_;  // first tensor of each shard; [n_shards]: tensors.size()
  // Shard lines would break a live bar: on a terminal they are debug lines.
  const LogLevel shard_line_level_ = ::isatty(STDERR_FILENO) ? LogLevel::kDebug : LogLevel::kInfo;
  std::unique_ptr<formats::SafetensorsWriter> writer_;  // of shard current_
  int current_ = -1;
  uint64_t shard_bytes_ = 0;
  std::chrono::steady_clock::time_point t_shard_ = std::chrono::steady_clock::now();
};

// Replaces `out` by the complete directory `tmp`: the final name appears only now.
void publish(const fs::path& tmp, const fs::path& out) {
  std::error_code ec;
  if (fs::exists(out)) {
    fs::remove_all(out, ec);
    QF_CHECK(!ec, "make-tiny: cannot remove", out.string() + ":", ec.message());
  }
  formats::rename_file(tmp.string(), out.string());
  formats::fsync_parent_dir(out.string());
}

}  // namespace

MakeTinyResult make_tiny(const MakeTinyOptions& options) {
  const auto t_start = std::chrono::steady_clock::now();
  QF_CHECK(!options.out_dir.empty(), "make-tiny: --out is required");
  fs::path out = fs::path(options.out_dir).lexically_normal();
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  check_out_dir(out, options.force);

  const std::vector<model::ModelTensor> tensors =
      model::checkpoint_tensors(options.config, options.format);
  const std::vector<int> shard_of = assign_shards(tensors, options.n_shards);
  const int n_shards = tensors.empty() ? 0 : shard_of.back() + 1;
  if (n_shards < options.n_shards) {
    log_warn("make-tiny: only ", n_shards, " placement units; writing ", n_shards, " shards");
  }

  const fs::path tmp = out.string() + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  QF_CHECK(!ec, "make-tiny: cannot create", tmp.string() + ":", ec.message());
  TempDirGuard guard(tmp);

  GenerateOptions generate;
  generate.n_threads = generator_threads();
  log_info("make-tiny: ", tensors.size(), " tensors, ", mib(model::total_bytes(tensors)), ", ",
           model::weight_formats().name(options.format), " format, seed ", options.seed, ", ",
           n_shards, " shards, ", generate.n_threads, " threads -> ", out.string());
  MakeTinyResult result;
  formats::ShardIndex index;
  {
    ShardFiles shards(tensors, shard_of, n_shards, tmp, index, result);
    ProgressMeter progress("make-tiny", model::total_bytes(tensors), "B");
    generate_tensors(options.config, options.format, options.seed, tensors, generate,
                     [&](size_t i, const void* data, uint64_t n_bytes) {
                       shards.append(i, data, n_bytes);
                       progress.advance(n_bytes);
                     });
    shards.finish();
  }
  QF_CHECK(static_cast<int>(result.shard_files.size()) == n_shards, "make-tiny: wrote",
           result.shard_files.size(), "of", n_shards, "shards");
  result.n_tensors = tensors.size();
  index.metadata = nlohmann::json{{"total_size", result.n_bytes}};
  index.write((tmp / formats::kShardIndexFileName).string());
  formats::write_file_atomic(
      (tmp / "config.json").string(),
      model::config_json_for_format(options.config, options.format).dump(2) + "\n");

  publish(tmp, out);
  guard.release();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  log_info("make-tiny: wrote ", result.n_tensors, " tensors, ", mib(result.n_bytes), " in ",
           result.seconds, " s");
  return result;
}

}  // namespace qf::pipeline
